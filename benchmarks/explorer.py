"""Explorer benchmark: how fast its pages answer over a large store.

Run::

    python benchmarks/explorer.py [--backend sqlite|memory|postgres|redis] [--runs 5]

It seeds one store with a **10,000-turn group session** (two agents, two models, a
checkpoint every 1,000 turns, two branches, one merged back) and a **user with 10,000
sessions**, then requests the explorer's pages and API through ``httpx``'s
``ASGITransport`` (the whole app: access guard, routing, queries, HTML rendering; no
network) and prints the median and worst time of each over ``--runs`` runs. Target:
every page under one second. PostgreSQL and Redis use a random table/key prefix,
dropped at the end (``BENCH_POSTGRES_URL``, ``BENCH_REDIS_URL`` point elsewhere).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ.setdefault("LEX_QUIET", "1")
os.environ.setdefault("LEX_LOGGING__LEVEL", "WARNING")

import httpx
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.branching import BranchManager
from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.explorer import ExplorerSettings, create_app
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.stores.base import SessionStore

TURNS = 10_000
SESSIONS = 10_000
BATCH = 500
T0 = datetime(2026, 1, 1, tzinfo=UTC)
POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
CONFIG = SessionConfig(
    session_ttl=0,
    max_turns_per_session=1_000_000,
    max_sessions_per_user=1_000_000,
    auto_checkpoint_interval=None,
    max_checkpoints_per_session=100,
)


def _turn(n: int) -> SessionTurn:
    agent = ("planner", "critic")[n % 2]
    return SessionTurn(
        turn_id=f"t{n}",
        role="user" if n % 10 == 0 else "assistant",
        content=f"Turn {n}: " + "a fairly ordinary sentence of a long conversation. " * 4,
        timestamp=T0 + timedelta(seconds=n),
        metadata={"agent": agent, "round": n // 2 + 1},
        tokens_used=20 + n % 50,
        cost=0.0001 * (1 + n % 3),
        model=("gpt-small", "claude-mini")[n % 2],
        tool_calls=[{"name": "search", "arguments": {"q": str(n)}}] if n % 25 == 0 else [],
    )


@asynccontextmanager
async def open_store(backend: str) -> AsyncIterator[SessionStore]:
    """An initialised, empty store of ``backend``; dropped afterwards."""
    if backend == "memory":
        from lexigram.ai.session.stores.in_memory import InMemorySessionStore

        memory = InMemorySessionStore()
        await memory.initialize()
        yield memory
        await memory.close()
    elif backend == "sqlite":
        from lexigram.ai.session.stores.database import DatabaseSessionStore

        with tempfile.TemporaryDirectory(prefix="explorer-bench-") as tmp:
            sqlite = DatabaseSessionStore(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
            await sqlite.initialize()
            yield sqlite
            await sqlite.close()
    elif backend == "postgres":
        from lexigram.ai.session.stores.database import DatabaseSessionStore, drop_schema

        prefix = f"xb{uuid.uuid4().hex[:10]}_"
        pg = DatabaseSessionStore(POSTGRES_URL, table_prefix=prefix)
        await pg.initialize()
        try:
            yield pg
        finally:
            await pg.close()
            await drop_schema(POSTGRES_URL, table_prefix=prefix)
    elif backend == "redis":
        from lexigram.ai.session.stores.cache import CacheSessionStore

        redis = CacheSessionStore(REDIS_URL, key_prefix=f"xbench:{uuid.uuid4().hex[:10]}")
        await redis.initialize()
        try:
            yield redis
        finally:
            keys = [k async for k in redis.client.scan_iter(match=redis.keys.pattern, count=1000)]
            for start in range(0, len(keys), 500):
                await redis.client.unlink(*keys[start : start + 500])
            await redis.close()
    else:
        raise SystemExit(f"unknown backend {backend!r}")


async def seed(store: SessionStore) -> dict[str, str]:
    """The big session (with checkpoints and branches) and the user with many sessions."""
    manager = SessionManagerImpl(store, CONFIG)
    branches = BranchManager(store, 10, notifier=manager.notifier)
    big = await manager.create("bench-big", session_id="big")
    checkpoint = ""
    for start in range(0, TURNS, BATCH):
        await store.append_turns("big", [_turn(n) for n in range(start, start + BATCH)])
        if (start + BATCH) % 1000 == 0:
            checkpoint = (await manager.checkpoint("big", {"at": start + BATCH})).checkpoint_id
    fork = await branches.fork("big", "what-if", from_checkpoint=checkpoint)
    await manager.add_message(fork.session_id, "user", "merged back", tokens_used=3)
    await branches.merge("big", fork.session_id)
    await branches.fork("big", "open-branch")
    started = time.perf_counter()
    for n in range(SESSIONS):
        now = T0 + timedelta(seconds=n)
        await store.create_session(SessionState(
            session_id=f"s{n:05d}", user_id="bench-many", status=SessionStatus.ACTIVE,
            created_at=now, updated_at=now, turn_count=0,
        ))
    print(f"seeded {SESSIONS} sessions in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return {"big": big.session_id}


async def measure(store: SessionStore, runs: int) -> list[tuple[str, float, float]]:
    """(name, median ms, worst ms) of each request."""
    app = create_app(SessionManagerImpl(store, CONFIG), ExplorerSettings())
    transport = httpx.ASGITransport(app=app)
    results = []
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8765") as http:
        deep = (await http.get("/api/sessions", params={"user": "bench-many"})).json()
        cursor = deep["next_cursor"]
        for _ in range(99):  # the cursor of page 101 (sessions 5,001-5,050)
            cursor = (await http.get("/api/sessions", params={"user": "bench-many",
                                                              "cursor": cursor})).json()[
                "next_cursor"]
        requests = [
            ("sessions page, user with 10,000 sessions", "/", {"user": "bench-many"}),
            ("sessions page 101 (cursor)", "/", {"user": "bench-many", "cursor": cursor}),
            ("sessions page, status filter", "/", {"user": "bench-many", "status": "active"}),
            ("API sessions (50)", "/api/sessions", {"user": "bench-many"}),
            ("session page, 10,000 turns (first 200)", "/session", {"id": "big"}),
            ("session page, turns 5,001-5,200", "/session",
             {"id": "big", "after": 5000, "pos": 5001}),
            ("session page, newest 200 turns", "/session", {"id": "big", "view": "newest"}),
            ("API turns (200)", "/api/session/turns", {"id": "big", "after": 9000}),
            ("API branch tree", "/api/session/tree", {"id": "big"}),
            ("API checkpoints", "/api/session/checkpoints", {"id": "big"}),
            ("analytics page (reads all 10,000 turns)", "/session/analytics", {"id": "big"}),
        ]
        for name, path, params in requests:
            samples = []
            for _ in range(runs):
                started = time.perf_counter()
                answer = await http.get(path, params=params)
                samples.append((time.perf_counter() - started) * 1000)
                if answer.status_code != 200:
                    raise SystemExit(f"{name}: HTTP {answer.status_code}: {answer.text[:200]}")
            results.append((name, statistics.median(samples), max(samples)))
    return results


async def main() -> None:
    """Seed, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="sqlite",
                        choices=["sqlite", "memory", "postgres", "redis"])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    async with open_store(args.backend) as store:
        await seed(store)
        results = await measure(store, args.runs)
    print(f"backend {args.backend}, {args.runs} runs each (ms)")
    print(f"{'request':<44} {'median':>8} {'worst':>8}  target < 1000 ms")
    failed = 0
    for name, median, worst in results:
        verdict = "PASS" if worst < 1000 else "FAIL"
        failed += verdict == "FAIL"
        print(f"{name:<44} {median:8.1f} {worst:8.1f}  {verdict}")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    asyncio.run(main())
