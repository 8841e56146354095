"""``BranchManager(manager)``: the manager's store, limits and subscribers (an outside
day-one audit: a manager was refused as "expected a SessionStore", and a BranchManager
on ``manager.store`` ignored the config's limits unless they were passed by hand)."""

from __future__ import annotations

import pytest

from lexigram.ai.session import (
    BranchManager,
    InMemorySessionStore,
    SessionConfig,
    SessionManagerImpl,
)
from lexigram.ai.session.exceptions import SessionCapacityError


async def test_a_manager_gives_its_store_and_limits() -> None:
    manager = SessionManagerImpl(
        InMemorySessionStore(),
        SessionConfig(max_branches_per_session=1, auto_checkpoint_interval=0),
    )
    branches = BranchManager(manager)
    assert branches.store is manager.store and branches.max_branches_per_session == 1
    assert branches.max_sessions_per_user == manager.config.max_sessions_per_user
    assert branches.notifier is manager.notifier
    sid = (await manager.create("u")).session_id
    await branches.fork(sid, "one")
    with pytest.raises(SessionCapacityError):
        await branches.fork(sid, "two")
    assert BranchManager(manager, 3).max_branches_per_session == 3  # given here: wins


def test_a_store_keeps_the_old_defaults() -> None:
    branches = BranchManager(InMemorySessionStore())
    assert branches.max_branches_per_session == 10 and branches.max_sessions_per_user is None
