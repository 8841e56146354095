"""Steps that follow a stored write and must not be lost with a cancelled caller.

Once an append is stored, its automatic checkpoint and the close a turn cap caused
belong to that write. A caller cancelled meanwhile (a client hanging up on a streamed
response, a timeout) would otherwise stop them half-way: the turn stored, its
checkpoint never taken, nothing logged. :func:`finish` runs such steps as a task of
their own: the caller awaits it; when the caller is cancelled the cancellation is
raised at once (a caller's timeout still bounds the call) and the task goes on in the
background, kept in ``background`` (so :func:`drain` can wait for it before the store
closes) and its failure logged.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from lexigram.logging import get_logger

__all__ = ["Background", "detach", "drain", "finish", "track"]

logger = get_logger(__name__)

Steps = Callable[[], Coroutine[Any, Any, None]]
#: The tasks cancelled callers left running, per manager.
Background = set[asyncio.Future[Any]]
# Event loops in several threads add and drop tasks of one manager's set.
_LOCK = threading.Lock()


async def finish(steps: Steps, background: Background) -> None:
    """Run ``steps()``; a cancelled caller leaves them running (see the module doc)."""
    task = asyncio.ensure_future(steps())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            track(task, background)
        raise


def detach(steps: Steps, background: Background) -> None:
    """Start ``steps()`` in the background (the caller is being cancelled)."""
    track(asyncio.ensure_future(steps()), background)


async def drain(background: Background, timeout_s: float) -> int:
    """Wait up to ``timeout_s`` for the steps this event loop left in the background;
    how many remain. Steps of other loops run (and end) on their own loop: waiting
    for them here would not wake this one."""
    loop = asyncio.get_running_loop()
    with _LOCK:
        pending = {t for t in background if not t.done() and t.get_loop() is loop}
    if pending:
        _, pending = await asyncio.wait(pending, timeout=timeout_s)
    return len(pending)


def track(task: asyncio.Future[Any], background: Background) -> None:
    """Keep ``task`` (a write a caller left running) in ``background`` until it ends;
    a failure or a cancellation of it is logged."""
    with _LOCK:
        background.add(task)
    task.add_done_callback(lambda done: _ended(done, background))


def _ended(task: asyncio.Future[Any], background: Background) -> None:
    with _LOCK:
        background.discard(task)
    if task.cancelled():
        logger.warning("ai_session.after_write_cancelled")
    elif (error := task.exception()) is not None:
        logger.warning("ai_session.after_write_failed", error=repr(error))
