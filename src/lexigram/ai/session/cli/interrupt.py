"""``run_interruptible``: ``asyncio.run`` for a command, where Ctrl-C always stops it.

``asyncio.run`` answers the first Ctrl-C by cancelling the main task once. A library
may swallow that one cancellation: on Python 3.11, ``asyncio.wait_for`` (which
redis-py's connections use) returns its inner call's result instead of raising
when the call finishes at the moment the task is cancelled. The command then ran on
to its end, a long ``keys rotate`` on a Redis Cluster included (one run in six; the
Redis store now gives such a cancellation back itself). Here each Ctrl-C cancels the
command, and a command still running :data:`_AGAIN_S` after the first is cancelled
once more; a cancellation that came from Ctrl-C ends as ``KeyboardInterrupt``, which
the CLI reports in one line. (Cancelled again every half second, a command's own
cleanup, closing its store, was cut short.)
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_interruptible"]

T = TypeVar("T")

#: How long a cancelled command may go on (its cleanup included) before it is
#: cancelled once more.
_AGAIN_S = 2.0


def run_interruptible(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``; ``KeyboardInterrupt`` soon after Ctrl-C, whatever ``main`` awaits."""
    return asyncio.run(_until_interrupted(main))


async def _until_interrupted(main: Coroutine[Any, Any, T]) -> T:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    pressed = False

    def cancel() -> None:
        if task is not None and not task.done():
            task.cancel()

    def on_interrupt() -> None:
        nonlocal pressed
        if not pressed:
            loop.call_later(_AGAIN_S, cancel)  # in case something swallowed the first
        pressed = True
        cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
    except (NotImplementedError, RuntimeError, ValueError):  # Windows, or not the main thread
        return await main
    try:
        return await main
    except asyncio.CancelledError:
        if pressed:
            raise KeyboardInterrupt from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGINT)
