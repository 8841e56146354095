"""Ctrl-C stops a CLI command even when a library swallows the first cancellation.

``asyncio.run`` cancels the main task once on Ctrl-C. On Python 3.11
``asyncio.wait_for`` (inside redis-py) can swallow that cancellation when its inner
call finishes at the same moment, and ``keys rotate`` on a Redis Cluster then ran on
to its end after Ctrl-C (1 run in 6). The commands now run through
``run_interruptible``, which cancels again until the command stops.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from lexigram.ai.session.cli.interrupt import run_interruptible


async def _swallows_one_cancellation(steps: int) -> int:
    """Press Ctrl-C, swallow the cancellation that follows, then go on working."""
    asyncio.get_running_loop().call_later(0.1, os.kill, os.getpid(), signal.SIGINT)
    swallowed = False
    done = 0
    for _ in range(steps):
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed = True  # as wait_for does when its inner call finished meanwhile
        done += 1
    return done


def test_ctrl_c_stops_a_command_that_swallowed_the_first_cancellation() -> None:
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_interruptible(_swallows_one_cancellation(steps=1000))  # about 10 s of work
    assert time.monotonic() - start < 4.0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_commands_cleanup_after_ctrl_c_is_not_cut_short() -> None:
    """One cancellation per Ctrl-C: a cleanup of a second (closing a store) finishes."""
    cleaned: list[str] = []

    async def command() -> None:
        asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), signal.SIGINT)
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(1.0)
            cleaned.append("closed")

    with pytest.raises(KeyboardInterrupt):
        run_interruptible(command())
    assert cleaned == ["closed"]


def test_a_command_without_ctrl_c_returns_its_result() -> None:
    async def work() -> str:
        await asyncio.sleep(0.01)
        return "done"

    assert run_interruptible(work()) == "done"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_cancellation_not_from_ctrl_c_stays_a_cancellation() -> None:
    async def cancelled() -> None:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().call_soon(task.cancel)
        await asyncio.sleep(1)

    with pytest.raises(asyncio.CancelledError):
        run_interruptible(cancelled())
