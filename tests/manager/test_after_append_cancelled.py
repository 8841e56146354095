"""What follows a stored append when the caller is cancelled meanwhile.

A client hanging up on a streamed response cancels the request's task; the turn is
stored by then, so its automatic checkpoint must not be lost with the cancellation.
The cancellation still reaches the caller at once (a caller's timeout bounds the
call), the checkpoint is taken in the background, and shutting the manager down waits
for it.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest
from lexigram.hooks import HookRegistry

from lexigram.ai.session import InMemorySessionStore, SessionConfig, SessionManagerImpl
from lexigram.ai.session.hooks import HOOK_TURN_ADDED

SEEN: contextvars.ContextVar[str | None] = contextvars.ContextVar("seen", default=None)


class SlowCheckpoints(InMemorySessionStore):
    """The real in-memory store; a checkpoint waits for ``release`` once it starts."""

    def __init__(self) -> None:
        super().__init__()
        self.started, self.release = asyncio.Event(), asyncio.Event()

    async def create_checkpoint(self, session_id: str, **kwargs: Any) -> Any:
        self.started.set()
        await self.release.wait()
        return await super().create_checkpoint(session_id, **kwargs)


async def _settled(call: asyncio.Task[Any]) -> None:
    """The caller's task has ended (bounded: a few loop turns)."""
    for _ in range(50):
        if call.done():
            return
        await asyncio.sleep(0)
    raise AssertionError("the cancelled caller did not end")


async def test_a_checkpoint_in_flight_is_finished_after_the_caller_is_cancelled() -> None:
    store = SlowCheckpoints()
    manager = SessionManagerImpl(store, SessionConfig(auto_checkpoint_interval=1))
    sid = (await manager.create("u")).session_id
    call = asyncio.create_task(manager.add_message(sid, "user", "one"))
    await store.started.wait()  # the turn is stored; its checkpoint is being taken
    call.cancel()
    await _settled(call)  # the cancellation is not held up by the checkpoint
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await manager.checkpoints.list(sid) == []
    store.release.set()
    assert await manager.wait_for_background(timeout_s=5) == 0
    checkpoints = await manager.checkpoints.list(sid)
    assert [c.metadata.get("turn_count") for c in checkpoints] == [1]


async def test_a_caller_cancelled_in_a_hook_still_gets_its_checkpoint_taken() -> None:
    hooks = HookRegistry("test")
    entered = asyncio.Event()

    async def hangs(**_: Any) -> None:
        entered.set()
        await asyncio.Event().wait()  # never set: a hook that hangs

    hooks.register_action(HOOK_TURN_ADDED, hangs)
    manager = SessionManagerImpl(
        InMemorySessionStore(), SessionConfig(auto_checkpoint_interval=1), hooks=hooks
    )
    sid = (await manager.create("u")).session_id
    call = asyncio.create_task(manager.add_message(sid, "user", "one"))
    await entered.wait()
    call.cancel()
    await _settled(call)
    assert await manager.wait_for_background(timeout_s=5) == 0
    assert len(await manager.checkpoints.list(sid)) == 1


async def test_a_timeout_bounds_an_append_whose_hook_hangs() -> None:
    """The first version waited for the steps: a hanging hook made the timeout never
    fire (found by a regression audit)."""
    hooks = HookRegistry("test")

    async def hangs(**_: Any) -> None:
        await asyncio.Event().wait()

    hooks.register_action(HOOK_TURN_ADDED, hangs)
    manager = SessionManagerImpl(InMemorySessionStore(), SessionConfig(), hooks=hooks)
    sid = (await manager.create("u")).session_id

    async def bounded() -> None:
        async with asyncio.timeout(0.05):
            await manager.add_message(sid, "user", "one")

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(bounded(), timeout=5)


async def test_a_hook_runs_in_the_callers_context() -> None:
    """A context variable a hook sets is seen by the caller, as before (the first
    version ran the steps in a task of their own)."""
    hooks = HookRegistry("test")

    async def marks(**_: Any) -> None:
        SEEN.set("set-by-hook")

    hooks.register_action(HOOK_TURN_ADDED, marks)
    manager = SessionManagerImpl(InMemorySessionStore(), SessionConfig(), hooks=hooks)
    sid = (await manager.create("u")).session_id
    await manager.add_message(sid, "user", "one")
    assert SEEN.get() == "set-by-hook"
