"""What follows a stored append runs to its end when the caller is cancelled meanwhile.

A client hanging up on a streamed response cancels the request's task; the turn is
stored by then, so its automatic checkpoint (and a close the turn cap caused) must not
be lost with the cancellation, and the cancellation still reaches the caller.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lexigram.hooks import HookRegistry

from lexigram.ai.session import InMemorySessionStore, SessionConfig, SessionManagerImpl
from lexigram.ai.session.hooks import HOOK_TURN_ADDED


def _blocking_hook() -> tuple[HookRegistry, asyncio.Event, asyncio.Event]:
    """A ``turn_added`` hook that waits for ``release`` (``entered`` set when it runs)."""
    hooks = HookRegistry("test")
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(**_: Any) -> None:
        entered.set()
        await release.wait()

    hooks.register_action(HOOK_TURN_ADDED, slow)
    return hooks, entered, release


async def test_auto_checkpoint_is_taken_when_the_caller_is_cancelled_after_the_append() -> None:
    hooks, entered, release = _blocking_hook()
    manager = SessionManagerImpl(
        InMemorySessionStore(), SessionConfig(auto_checkpoint_interval=2), hooks=hooks
    )
    state = await manager.create("u")
    sid = state.session_id
    release.set()
    await manager.add_message(sid, "user", "one")
    release.clear()
    entered.clear()
    call = asyncio.create_task(manager.add_message(sid, "assistant", "two"))
    await entered.wait()  # the turn is stored; the hook runs before the checkpoint
    call.cancel()
    await asyncio.sleep(0)
    assert not call.done()  # the caller waits for the steps to finish
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await call
    checkpoints = await manager.checkpoints.list(sid)
    assert [c.metadata.get("turn_count") for c in checkpoints] == [2]
    assert (await manager.get_state(sid)).turn_count == 2  # type: ignore[union-attr]


async def test_a_second_cancellation_leaves_the_steps_running_in_the_background() -> None:
    hooks, entered, release = _blocking_hook()
    manager = SessionManagerImpl(
        InMemorySessionStore(), SessionConfig(auto_checkpoint_interval=1), hooks=hooks
    )
    sid = (await manager.create("u")).session_id
    call = asyncio.create_task(manager.add_message(sid, "user", "one"))
    await entered.wait()
    call.cancel()
    await asyncio.sleep(0)
    call.cancel()  # a second one: the caller goes, the checkpoint is still taken
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await manager.checkpoints.list(sid) == []
    release.set()
    for _ in range(100):  # bounded: the background task needs a few loop turns
        if await manager.checkpoints.list(sid):
            break
        await asyncio.sleep(0.01)
    assert len(await manager.checkpoints.list(sid)) == 1
