"""``finish``: the steps that follow a stored write, run to their end despite a cancellation.

Once an append is stored, what the manager does next (the automatic checkpoint, the
``turn_added`` hook, working memory, the close a turn cap caused) belongs to that
write. A caller cancelled meanwhile (a client hanging up on a streamed response, a
timeout) would otherwise stop them half-way: the turn stored, its checkpoint never
taken, nothing logged. Here they run as a task of their own; the caller's first
cancellation waits for it and is then re-raised, a second one leaves it running in
the background (kept referenced, its failure logged).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from lexigram.logging import get_logger

__all__ = ["finish"]

logger = get_logger(__name__)


async def finish(steps: Coroutine[Any, Any, None], background: set[asyncio.Task[None]]) -> None:
    """Await ``steps``; when cancelled, let them end first (see the module docstring)."""
    task = asyncio.ensure_future(steps)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            background.add(task)
            task.add_done_callback(lambda done: _ended(done, background))
            # Cancelled again: the steps go on by themselves.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({task})
        raise


def _ended(task: asyncio.Task[None], background: set[asyncio.Task[None]]) -> None:
    background.discard(task)
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.warning("ai_session.after_write_failed", error=repr(error))
