"""A fork or merge racing the deletion of its session and a re-creation of that id by
another user mixes nothing of the two users' data (found by an outside audit: the
branch held the other user's variables and prompt; the merge wrote alice's branch into
bob's session)."""

from __future__ import annotations

from typing import Any

import pytest

from lexigram.ai.session import BranchManager, InMemorySessionStore
from lexigram.ai.session.branching import MergePlan
from lexigram.ai.session.exceptions import SessionNotFoundError
from lexigram.ai.session.stores.base import SessionRecord
from lexigram.ai.session.testing.support import make_state, make_turn


class _RecreatedAfterRead(InMemorySessionStore):
    """The real in-memory store; right after the fork's read of the source, the source
    is deleted and its id taken by bob (what another process may do meanwhile)."""

    armed = False

    async def load_record(self, session_id: str) -> SessionRecord | None:
        record = await super().load_record(session_id)
        if self.armed:
            self.armed = False
            await self.delete(session_id)
            bob = make_state("bob", session_id=session_id, system_prompt="bob's prompt")
            await self.create_session(bob)
        return record


@pytest.mark.parametrize("from_checkpoint", [False, True])
async def test_fork_refuses_a_source_re_created_by_another_user(from_checkpoint: bool) -> None:
    store = _RecreatedAfterRead()
    alice = make_state("alice", session_id="ticket-1")
    await store.create_session(alice)
    kwargs: dict[str, Any] = {}
    if from_checkpoint:
        cp, _ = await store.create_checkpoint("ticket-1", checkpoint_id="cp-1")
        kwargs["from_checkpoint"] = cp.checkpoint_id
    store.armed = True
    with pytest.raises(SessionNotFoundError):
        await BranchManager(store).fork("ticket-1", "idea", **kwargs)
    assert await store.list_branches("ticket-1") == []
    assert await store.count_live_sessions("alice") == 0


class _SlowStrategy:
    """An ``AppendMerge`` during which the parent is deleted and its id taken by bob
    (what another process may do while a slow strategy, an LLM summary, runs)."""

    def __init__(self, store: InMemorySessionStore, parent_id: str) -> None:
        self.store, self.parent_id = store, parent_id

    async def merge(self, parent: Any, branch: Any, new_turns: list[Any]) -> MergePlan:
        await self.store.delete(self.parent_id)
        bob = make_state("bob", session_id=self.parent_id, variables={"who": "bob"})
        await self.store.create_session(bob)
        return MergePlan(turns=list(new_turns), variables={"who": "alice"}, metadata=None)


@pytest.mark.parametrize("with_turns", [True, False])
async def test_merge_refuses_a_parent_re_created_by_another_user(with_turns: bool) -> None:
    store = InMemorySessionStore()
    branches = BranchManager(store)
    await store.create_session(make_state("alice", session_id="ticket-2"))
    branch = await branches.fork("ticket-2", "idea")
    if with_turns:
        await store.append_turns(branch.session_id, [make_turn(1, content="alice private")])
    with pytest.raises(SessionNotFoundError):
        await branches.merge(
            "ticket-2", branch.session_id, strategy=_SlowStrategy(store, "ticket-2")
        )
    bobs = await store.load("ticket-2")
    assert bobs is not None and bobs.user_id == "bob"
    assert bobs.turns == [] and bobs.variables == {"who": "bob"}
