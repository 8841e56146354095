"""Closing a store never waits on a loop that stopped, cancelled calls or not.

``close()`` waited for every connection being opened or closed in the background,
those of a thread's stopped loop too: they could never finish, and closing a SQLite
store took 5 s and logged ``ai_session.loop_close_failed`` (an outside audit).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from pathlib import Path

from lexigram.ai.session.stores.database import DatabaseSessionStore


async def test_close_does_not_wait_for_a_stopped_loops_cancelled_calls(tmp_path: Path) -> None:
    store = DatabaseSessionStore(f"sqlite+aiosqlite:///{tmp_path}/s.db")
    await store.initialize()
    await store.load_record("x")

    def worker() -> None:
        loop = asyncio.new_event_loop()

        async def cancelled_calls() -> None:
            for _ in range(20):
                task = asyncio.ensure_future(store.load_record("x"))
                await asyncio.sleep(0)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        loop.run_until_complete(cancelled_calls())  # the thread ends, its loop left open

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(30)
    started = time.monotonic()
    await store.close()
    assert time.monotonic() - started < 2.0
