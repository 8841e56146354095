"""A fork racing the deletion of its source and a re-creation of that id by another
user copies nothing of the new session (found by an outside audit: the branch held
the other user's variables and system prompt)."""

from __future__ import annotations

from typing import Any

import pytest

from lexigram.ai.session import BranchManager, InMemorySessionStore
from lexigram.ai.session.exceptions import SessionNotFoundError
from lexigram.ai.session.stores.base import SessionRecord
from lexigram.ai.session.testing.support import make_state


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
