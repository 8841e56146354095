"""A plugin built on the in-memory store that overrides a write without ``owner`` is not
handed one: ``supports_owner_guard`` follows what its writes take (the shipped example
failed with a TypeError on ``fork_session(owner=)`` before it passed ``owner`` on)."""

from __future__ import annotations

from typing import Any

from lexigram.contracts.ai.session import SessionState

from lexigram.ai.session import BranchManager, InMemorySessionStore
from lexigram.ai.session.stores.base import SessionRecord
from lexigram.ai.session.testing.support import make_state


class OldPlugin(InMemorySessionStore):
    """Overrides ``fork_session`` with the signature from before ``owner``."""

    async def fork_session(  # type: ignore[override]
        self,
        source_id: str,
        branch: SessionState,
        *,
        from_checkpoint: str | None = None,
        max_branches: int | None = None,
        max_live_per_user: int | None = None,
    ) -> SessionRecord:
        return await super().fork_session(
            source_id,
            branch,
            from_checkpoint=from_checkpoint,
            max_branches=max_branches,
            max_live_per_user=max_live_per_user,
        )


async def test_an_override_without_owner_turns_the_guard_off_and_forks_still_work() -> None:
    assert InMemorySessionStore().supports_owner_guard
    store = OldPlugin()
    assert not store.supports_owner_guard
    await store.create_session(make_state("alice", session_id="s"))
    branch: Any = await BranchManager(store).fork("s", "idea")
    assert branch.parent_session_id == "s"
