"""``settled``: a write on its way to be committed finishes before a cancellation is raised.

A task cancelled while its ``COMMIT`` (or a write statement that commits by itself)
was on the wire used to get ``CancelledError`` at once, the connection dropped; the
server still committed the write a moment later. A caller that read the session
after the cancellation, saw the write missing and sent it again (``add_message``
makes a new turn id each time) stored it twice: an outside audit saw 3 of 1,000
cancelled PostgreSQL writes land after the caller's read, and 2 on MariaDB. Now the
cancellation reaches the caller once the server has answered (committed, or not):
a read after it shows what happened. The wait is bounded by :data:`SETTLE_S`; a
second cancellation while waiting is raised at once. Either way, a step still running
then raises :class:`StepStillRunning` and its connection is discarded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

__all__ = ["SETTLE_S", "StepStillRunning", "settled"]

T = TypeVar("T")

#: The longest a cancelled write waits for the server's answer before giving up on it: a
#: commit takes milliseconds; a write waiting on another transaction's lock may take
#: longer, and is then given up (it may still be applied once the lock is let go).
SETTLE_S = 1.0


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Consume a finished task's outcome (nobody awaits it any more)."""
    if not task.cancelled():
        task.exception()


class StepStillRunning(asyncio.CancelledError):
    """The caller was cancelled and the step still runs on its connection.

    Raised instead of the cancellation when the wait ran out (or a second cancellation
    cut it): the connection is busy, and must be discarded, never handed to another
    caller (two statements on one asyncpg connection broke its protocol state).
    """


async def settled(step: Awaitable[T]) -> T:
    """``await step``; when cancelled, wait up to :data:`SETTLE_S` for it, then re-raise.

    Raises :class:`StepStillRunning` (a ``CancelledError``) when ``step`` had not
    finished by then.
    """
    task = asyncio.ensure_future(step)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        try:
            if not task.done():
                await asyncio.wait({task}, timeout=SETTLE_S)
        except asyncio.CancelledError:
            pass  # a second cancellation: raised at once, below
        if task.done():
            _retrieve(task)
            raise
        task.add_done_callback(_retrieve)
        raise StepStillRunning from None
