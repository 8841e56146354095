"""The checkpoint and branch services resolved from a booted application."""

from __future__ import annotations

import pytest

from lexigram import Application
from lexigram.ai.session import (
    BranchManager,
    CheckpointManager,
    SessionManagerProtocol,
    SessionModule,
)
from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.exceptions import SessionCapacityError

from ..checkpointing.harness import turn


async def test_services_from_the_container_share_the_config_and_store() -> None:
    config = SessionConfig(
        auto_checkpoint_interval=2, max_checkpoints_per_session=2, max_branches_per_session=1
    )
    async with Application.boot(modules=[SessionModule.stub(config)]) as app:
        manager = await app.container.resolve(SessionManagerProtocol)
        checkpoints = await app.container.resolve(CheckpointManager)
        branches = await app.container.resolve(BranchManager)
        assert checkpoints.max_checkpoints_per_session == 2
        sid = (await manager.create("alice")).session_id
        for n in range(6):
            await manager.add_turn(sid, turn(n))
        listed = await checkpoints.list(sid)
        assert [c.state.turn_count for c in listed] == [4, 6]  # auto every 2, 2 retained
        branch = await branches.fork(sid, "only", from_checkpoint=listed[0].checkpoint_id)
        assert branch.turn_count == 4
        with pytest.raises(SessionCapacityError):
            await branches.fork(sid, "second")
        await manager.add_turn(branch.session_id, turn(50))
        merged = await branches.merge(sid, branch.session_id)
        assert merged.turn_count == 7
        state = await manager.get_state(sid)
        assert state is not None and state.turns[-1].content == "message 50"


async def test_the_containers_branch_manager_leaves_cancelled_announcements_to_shutdown() -> (
    None
):
    """A fork cancelled while its announcement runs: the container's BranchManager (built
    from the bare store) kept it in a set nobody waited for; the hook never ran."""
    import asyncio

    from lexigram.hooks import HookRegistry

    from lexigram.ai.session.hooks import HOOK_SESSION_FORKED

    seen: list[str] = []
    started = asyncio.Event()

    async def slow_hook(*, payload: object, **_: object) -> None:
        started.set()
        await asyncio.sleep(0.2)
        seen.append(getattr(payload, "branch_name", "?"))

    registry = HookRegistry("test")
    registry.register_action(HOOK_SESSION_FORKED, slow_hook)
    async with Application.boot(modules=[SessionModule.stub(SessionConfig())]) as app:
        manager = await app.container.resolve(SessionManagerProtocol)
        branches = await app.container.resolve(BranchManager)
        branches.notifier._hooks = registry  # the manager's notifier, which it shares
        sid = (await manager.create("alice")).session_id
        call = asyncio.ensure_future(branches.fork(sid, "alt"))
        await asyncio.wait_for(started.wait(), 5)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert await manager.wait_for_background(5) == 0
        assert seen == ["alt"]
