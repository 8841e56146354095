"""Steps that follow a stored write and must not be lost with a cancelled caller.

Once an append is stored, its automatic checkpoint and the close a turn cap caused
belong to that write. A caller cancelled meanwhile (a client hanging up on a streamed
response, a timeout) would otherwise stop them half-way: the turn stored, its
checkpoint never taken, nothing logged. :func:`finish` runs such steps as a task of
their own: the caller awaits it; when the caller is cancelled the cancellation is
raised at once (a caller's timeout still bounds the call) and the task goes on in the
background, kept in ``background`` (so :func:`drain` can wait for it before the store
closes) and its failure logged.

A caller cancelled *during* the store call is another matter: the store may commit the
write after the cancellation reached it (a SQL ``COMMIT`` on the wire, a Redis script
sent), and nothing would follow it. Where something follows the write (an event, a
hook, an automatic checkpoint, a consolidation), :func:`shielded` runs the store call
as a task of its own and, once the caller is cancelled, waits for it as the SQL stores
do (:data:`SETTLE_S`), then hands a write that succeeded to the steps that follow it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from lexigram.logging import get_logger

__all__ = [
    "SETTLE_S",
    "Background",
    "detach",
    "drain",
    "finish",
    "shielded",
    "track",
    "write_then",
]

logger = get_logger(__name__)

T = TypeVar("T")
Steps = Callable[[], Coroutine[Any, Any, None]]
#: The tasks cancelled callers left running, per manager.
Background = set[asyncio.Future[Any]]
# Event loops in several threads add and drop tasks of one manager's set.
_LOCK = threading.Lock()

#: How long a caller cancelled during a store call waits for that call: the bound of
#: :data:`lexigram.ai.session.stores.sql.settle.SETTLE_S` (a test keeps them equal; that
#: module is not imported here, it loads SQLAlchemy).
SETTLE_S = 1.0


async def finish(steps: Steps, background: Background) -> None:
    """Run ``steps()``; a cancelled caller leaves them running (see the module doc)."""
    task = asyncio.ensure_future(steps())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            track(task, background)
        raise


async def shielded(
    call: Coroutine[Any, Any, T],
    background: Background,
    landed: Callable[[T], None] | None = None,
    lost: Callable[[], None] | None = None,
) -> T:
    """``await call`` (a store call) in a task of its own, which cancelling the caller
    does not stop.

    When the caller is cancelled meanwhile, the call is waited for up to
    :data:`SETTLE_S` (a second cancellation stops the wait at once), so that a read
    after the ``CancelledError`` shows what happened, and the cancellation is raised.
    Then, once the call has ended (now, or later: it is kept in ``background`` until
    then), exactly one of ``landed(result)`` (it succeeded: start what follows the
    write, see :func:`detach`) or ``lost()`` (it failed) is called. Neither is called
    when the caller was not cancelled: the result, or the call's exception, is the
    caller's.
    """
    task = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            # A second cancellation stops the wait: raised at once, below.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({task}, timeout=SETTLE_S)
        if task.done():
            _landed(task, landed, lost)
        else:
            track(task, background)
            task.add_done_callback(lambda done: _landed(done, landed, lost))
        raise


async def write_then(
    call: Coroutine[Any, Any, T],
    background: Background,
    follows: Callable[[T], Steps],
) -> T:
    """``await call`` (a store write), then ``follows(result)()`` (its announcement);
    a caller cancelled during either leaves the rest to run in ``background``: the
    write through :func:`shielded`, what follows it through :func:`finish`."""
    result = await shielded(call, background, lambda done: detach(follows(done), background))
    await finish(follows(result), background)
    return result


def _landed(
    task: asyncio.Future[T],
    landed: Callable[[T], None] | None,
    lost: Callable[[], None] | None,
) -> None:
    """Call ``landed`` with the result of the ended ``task``, or ``lost`` when it failed."""
    try:
        if task.cancelled() or task.exception() is not None:
            if lost is not None:
                lost()
        elif landed is not None:
            landed(task.result())
    except Exception as exc:  # a done-callback: nobody else would hear of it
        logger.warning("ai_session.after_write_failed", error=repr(exc))


def detach(steps: Steps, background: Background) -> None:
    """Start ``steps()`` in the background (the caller is being cancelled)."""
    track(asyncio.ensure_future(steps()), background)


async def drain(background: Background, timeout_s: float) -> int:
    """Wait up to ``timeout_s`` for the steps this event loop left in the background;
    how many remain. Steps of other loops run (and end) on their own loop: waiting
    for them here would not wake this one."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        # A store call that ends starts the steps that follow it (:func:`shielded`):
        # those are waited for too.
        with _LOCK:
            pending = {t for t in background if not t.done() and t.get_loop() is loop}
        remaining = deadline - loop.time()
        if not pending or remaining <= 0:
            return len(pending)
        await asyncio.wait(pending, timeout=remaining)


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
