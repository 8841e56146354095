"""Group sessions: cost of a group turn, and of a resume, per backend.

Run:  python benchmarks/group_sessions.py [--quick]

Backends: in-memory, and SQLite (a temporary file) through ``DatabaseSessionStore``.
Agents answer instantly, so the numbers are the group's own overhead plus the store.

* ``plain append``: ``SessionManagerImpl.add_message`` per turn (the baseline);
* ``group turn``: one agent turn of a round-robin run of three agents once the run is
  going (isolation view, termination check, next-speaker choice, append with the
  turn-taking state), on a fresh session and on a session holding 5,000 turns;
* ``resume``: ``stream(..., resume=True)`` up to the first new turn on a 5,000-turn
  session, loading every turn for the agents (default) and with ``history_limit=50``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("LEX_QUIET", "1")
os.environ.setdefault("LEX_LOGGING__LEVEL", "WARNING")

from lexigram.logging import configure_logging

configure_logging(level="WARNING")

from lexigram.contracts.ai.session import SessionTurn  # noqa: E402
from lexigram.result import Ok, Result  # noqa: E402

from lexigram.ai.session.config import SessionConfig  # noqa: E402
from lexigram.ai.session.manager.core import SessionManagerImpl  # noqa: E402
from lexigram.ai.session.multi_agent import GroupSession  # noqa: E402
from lexigram.ai.session.stores.base import SessionStore  # noqa: E402
from lexigram.ai.session.stores.registry import create_store  # noqa: E402

BIG = 5_000


class Echo:
    """Answers at once."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def execute(self, *, message: str, history: Sequence[SessionTurn]) -> Result[Any, Any]:
        return Ok(f"{self.name}: ok")


def group(manager: SessionManagerImpl, **kwargs: Any) -> GroupSession:
    g = GroupSession(manager, **kwargs)
    for name in ("writer", "critic", "editor"):
        g.add_agent(Echo(name))
    return g


async def fill(manager: SessionManagerImpl, sid: str, n: int) -> None:
    batch = 500
    for start in range(0, n, batch):
        turns = [
            SessionTurn(
                turn_id=f"f{i}", role="user", content=f"turn {i}", timestamp=datetime.now(UTC)
            )
            for i in range(start, min(n, start + batch))
        ]
        await manager.add_turns(sid, turns)


async def per_turn(manager: SessionManagerImpl, n: int, *, prefill: int) -> float:
    """Seconds per agent turn once the run is going (history load and views excluded)."""
    sid = (await manager.create("bench")).session_id
    await fill(manager, sid, prefill)
    stream = group(manager).stream(sid, "go", max_rounds=n // 3 + 1)
    for _ in range(4):  # opening + one round: every agent's view is built
        await anext(stream)
    t0 = time.perf_counter()
    count = sum([1 async for _ in stream])
    return (time.perf_counter() - t0) / count


async def bench(name: str, make: Callable[[], Awaitable[SessionStore]], quick: bool) -> None:
    store = await make()
    config = SessionConfig(auto_checkpoint_interval=None, max_turns_per_session=1_000_000)
    manager = SessionManagerImpl(store, config)
    n = 60 if quick else 300
    try:
        sid = (await manager.create("bench")).session_id
        t0 = time.perf_counter()
        for i in range(n):
            await manager.add_message(sid, "user", f"m{i}")
        plain = (time.perf_counter() - t0) / n

        fresh = await per_turn(manager, n, prefill=0)
        big = await per_turn(manager, n, prefill=BIG)

        resumes: dict[str, float] = {}
        for label, limit in (("all turns", None), ("history_limit=50", 50)):
            samples = []
            for _ in range(3 if quick else 7):
                sid = (await manager.create("bench")).session_id
                await fill(manager, sid, BIG)
                stream = group(manager).stream(sid, "go", max_rounds=100)
                await anext(stream)
                await anext(stream)
                await stream.aclose()  # interrupted: next speaker recorded
                g = group(manager, history_limit=limit)
                t0 = time.perf_counter()
                resumed = g.stream(sid, resume=True)
                await anext(resumed)
                samples.append(time.perf_counter() - t0)
                await resumed.aclose()
                await manager.delete(sid)
            resumes[label] = statistics.median(samples)

        print(
            f"{name:>9}: plain append {plain * 1e3:6.2f} ms | group turn {fresh * 1e3:6.2f} ms "
            f"(on {BIG:,} turns: {big * 1e3:6.2f} ms) | resume to first turn on {BIG:,} turns: "
            + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in resumes.items())
        )
    finally:
        await store.close()


async def main(quick: bool) -> None:
    async def memory() -> SessionStore:
        store = create_store(SessionConfig(backend="memory"))
        await store.initialize()
        return store

    await bench("memory", memory, quick)
    with tempfile.TemporaryDirectory() as tmp:

        async def sqlite() -> SessionStore:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
            store = create_store(SessionConfig(backend="database", database_url=url))
            await store.initialize()
            return store

        await bench("sqlite", sqlite, quick)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args().quick))
