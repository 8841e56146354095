"""Checkpoint, restore and fork of a 5,000-turn session, and what checkpoints cost in bytes.

Run:  python benchmarks/checkpoints.py [--quick] [--backends memory,sqlite,postgres,redis]

Per backend (in-memory always; SQLite when ``stores/database.py`` exists; PostgreSQL
and Redis when, in addition, their server answers on 127.0.0.1), on a 5,000-turn
session built through ``SessionManagerImpl``:

* ``checkpoint``: ``CheckpointManager.create(session_id)`` (returns the full state,
  so it reads the 5,000 turns) and ``create(..., include_turns=False)`` (what the
  automatic checkpoints use: nothing but the snapshot itself), the latter alternated
  with the same call on a 10-turn session and the ratio printed (it must not grow
  with the session);
* ``restore``: alternately to two checkpoints 10 turns apart, and 2,500 turns apart
  (each restore returns the full 5,000-turn state);
* ``fork``: ``BranchManager.fork`` at the end and from a checkpoint (copies the live
  turns into the new branch and returns its full state).

Storage: a 1,000-turn session checkpointed every 20 turns (50 checkpoints). The bytes
of everything the checkpoints keep are compared with the bytes of the turns:

* SQLite / PostgreSQL: the summed ``length()`` / ``pg_column_size()`` of every column
  of the ``<prefix>checkpoints`` rows vs the ``<prefix>turns`` rows (SQLite also
  reports ``dbstat`` pages, table + indexes, when the build has it);
* Redis: ``MEMORY USAGE`` (exact, ``SAMPLES 0``) of the checkpoint keys (``:c``,
  ``:d``, ``:k``, ``:a`` of the session and ``P:c:{cpid}`` per checkpoint) vs the turn
  keys (``:t``, ``:r``, ``:i``).

Each backend works in its own temporary file / table prefix / key prefix, dropped
at the end. ``--quick`` takes fewer samples (the storage measurement is the same).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("LEX_QUIET", "1")
os.environ.setdefault("LEX_LOGGING__LEVEL", "WARNING")

from lexigram.logging import configure_logging

configure_logging(level="WARNING")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import median_ms, p99_ms  # noqa: E402
from lexigram.contracts.ai.session import SessionTurn  # noqa: E402

from lexigram.ai.session.branching import BranchManager  # noqa: E402
from lexigram.ai.session.config import SessionConfig  # noqa: E402
from lexigram.ai.session.manager.core import SessionManagerImpl  # noqa: E402
from lexigram.ai.session.stores.base import SessionStore  # noqa: E402
from lexigram.ai.session.stores.in_memory import InMemorySessionStore  # noqa: E402

BIG = 5_000
STORAGE_TURNS = 1_000
STORAGE_CHECKPOINTS = 50
POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def manager_config(**extra: Any) -> dict[str, Any]:
    """Limits high enough for the benchmark; no automatic checkpoints."""
    return {
        "auto_checkpoint_interval": None,
        "max_turns_per_session": 1_000_000,
        "max_sessions_per_user": 1_000_000,
        "max_checkpoints_per_session": 1_000,
        "max_branches_per_session": 1_000,
        "session_ttl": 0,
        **extra,
    }


def turn(n: int) -> SessionTurn:
    """A typical chat turn: ~200 characters of content, a little metadata."""
    return SessionTurn(
        turn_id=f"turn-{n}-{uuid.uuid4().hex[:8]}",
        role="user" if n % 2 == 0 else "assistant",
        content=f"Turn {n}: " + "the quick brown fox jumps over the lazy dog. " * 4,
        timestamp=T0 + timedelta(seconds=n),
        metadata={"n": n},
        tokens_used=40,
        cost=0.0004,
        model="gpt-x" if n % 2 else None,
    )


# ------------------------------------------------------------------ backends
@dataclass
class Storage:
    """Bytes kept for the checkpoints and for the turns, and how they were counted."""

    checkpoint_bytes: int
    turn_bytes: int
    method: str
    extra: dict[str, int] = field(default_factory=dict)


@dataclass
class Opened:
    """A store on a private namespace, and how to count its bytes (None: not counted)."""

    store: SessionStore
    measure: Callable[[str], Awaitable[Storage]] | None = None


@dataclass
class Backend:
    """One backend: ``open()`` is an async context manager yielding an :class:`Opened`."""

    name: str
    open: Callable[[], AbstractAsyncContextManager[Opened]]


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@asynccontextmanager
async def _memory() -> AsyncIterator[Opened]:
    store = InMemorySessionStore()
    await store.initialize()
    try:
        yield Opened(store)
    finally:
        await store.close()


def _sql_backend(name: str, url_for: Callable[[Path], str]) -> Backend:
    from lexigram.ai.session.stores.registry import create_store
    from lexigram.ai.session.stores.sql.schema import Schema

    @asynccontextmanager
    async def open_store() -> AsyncIterator[Opened]:
        schema = Schema.build(f"bench_{uuid.uuid4().hex[:8]}_")
        with tempfile.TemporaryDirectory(prefix="lexigram-bench-") as tmp:
            url = url_for(Path(tmp))
            store = create_store(
                SessionConfig(backend="database", database_url=url, table_prefix=schema.prefix)
            )
            await store.initialize()

            async def measure(session_id: str) -> Storage:
                return await _sql_storage(url, schema, session_id)

            try:
                yield Opened(store, measure)
            finally:
                await store.close()
                await _drop_sql(url, schema)

    return Backend(name, open_store)


async def _drop_sql(url: str, schema: Any) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    if url.startswith("sqlite"):
        return  # the file goes with the temporary directory
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for name in schema.table_names:
                await conn.execute(text(f'DROP TABLE IF EXISTS "{name}" CASCADE'))
    finally:
        await engine.dispose()


async def _sql_storage(url: str, schema: Any, session_id: str) -> Storage:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    sqlite = url.startswith("sqlite")
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:

            async def payload(table: Any) -> int:
                if sqlite:
                    cols = " + ".join(f'coalesce(length("{c.name}"), 0)' for c in table.columns)
                    sql = (
                        f'SELECT coalesce(sum({cols}), 0) FROM "{table.name}" WHERE session_id = :s'
                    )
                else:
                    sql = (
                        f'SELECT coalesce(sum(pg_column_size(t.*)), 0) FROM "{table.name}" t '
                        "WHERE session_id = :s"
                    )
                return int((await conn.execute(text(sql), {"s": session_id})).scalar_one())

            cp_bytes = await payload(schema.checkpoints)
            turn_bytes = await payload(schema.turns)
            extra: dict[str, int] = {}
            if sqlite:
                try:
                    for label, table in (
                        ("checkpoints", schema.checkpoints),
                        ("turns", schema.turns),
                    ):
                        names = [table.name] + [ix.name for ix in table.indexes]
                        marks = ", ".join(f"'{n}'" for n in names)
                        sql = f"SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE name IN ({marks})"
                        extra[f"dbstat_{label}"] = int((await conn.execute(text(sql))).scalar_one())
                except Exception:  # this SQLite build has no dbstat
                    extra = {}
            method = "sum(length(column))" if sqlite else "sum(pg_column_size(row))"
            return Storage(cp_bytes, turn_bytes, method, extra)
    finally:
        await engine.dispose()


def _redis_backend() -> Backend:
    import redis.asyncio as aioredis

    from lexigram.ai.session.stores.redis.keys import SESSION_KEY_NAMES, KeySpace
    from lexigram.ai.session.stores.registry import create_store

    @asynccontextmanager
    async def open_store() -> AsyncIterator[Opened]:
        keys = KeySpace(f"bench:{uuid.uuid4().hex[:8]}")
        store = create_store(
            SessionConfig(backend="cache", redis_url=REDIS_URL, key_prefix=keys.prefix)
        )
        await store.initialize()
        client = aioredis.from_url(REDIS_URL)

        async def usage(key: str) -> int:
            return int(await client.memory_usage(key, samples=0) or 0)

        async def measure(session_id: str) -> Storage:
            own = dict(zip(SESSION_KEY_NAMES, keys.session(session_id), strict=True))
            cp_ids = [c.decode() for c in await client.zrange(own["c"], 0, -1)]
            cp_keys = [own[s] for s in ("c", "d", "k", "a")]
            cp_keys += [keys.checkpoint(cp) for cp in cp_ids]
            turn_keys = [own[s] for s in ("t", "r", "i")]
            return Storage(
                sum([await usage(k) for k in cp_keys]),
                sum([await usage(k) for k in turn_keys]),
                "MEMORY USAGE (SAMPLES 0)",
                {"checkpoint_ids_listed": len(cp_ids)},
            )

        try:
            yield Opened(store, measure)
        finally:
            await store.close()
            try:
                found = [k async for k in client.scan_iter(match=keys.pattern, count=1000)]
                for i in range(0, len(found), 500):
                    await client.delete(*found[i : i + 500])
            finally:
                await client.aclose()

    return Backend("redis", open_store)


def available_backends(wanted: set[str]) -> tuple[list[Backend], list[str]]:
    """The backends to run, and a note for each one skipped."""
    found: list[Backend] = []
    notes: list[str] = []
    has_sql = importlib.util.find_spec("lexigram.ai.session.stores.database") is not None
    has_redis = importlib.util.find_spec("lexigram.ai.session.stores.cache") is not None
    if "memory" in wanted:
        found.append(Backend("memory", _memory))
    if "sqlite" in wanted:
        if has_sql:
            found.append(_sql_backend("sqlite", lambda tmp: f"sqlite+aiosqlite:///{tmp / 'b.db'}"))
        else:
            notes.append("sqlite: skipped, lexigram.ai.session.stores.database does not exist yet")
    if "postgres" in wanted:
        if not has_sql:
            notes.append(
                "postgres: skipped, lexigram.ai.session.stores.database does not exist yet"
            )
        elif not _reachable("127.0.0.1", 5432):
            notes.append("postgres: skipped, no server on 127.0.0.1:5432")
        else:
            found.append(_sql_backend("postgres", lambda tmp: POSTGRES_URL))
    if "redis" in wanted:
        if not has_redis:
            notes.append("redis: skipped, lexigram.ai.session.stores.cache does not exist yet")
        elif not _reachable("127.0.0.1", 6379):
            notes.append("redis: skipped, no server on 127.0.0.1:6379")
        else:
            found.append(_redis_backend())
    return found, notes


# ------------------------------------------------------------------ measurements
async def _timed(fn: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


async def _grow(manager: SessionManagerImpl, session_id: str, start: int, count: int) -> None:
    for first in range(start, start + count, 100):
        await manager.add_turns(
            session_id, [turn(n) for n in range(first, min(first + 100, start + count))]
        )


@dataclass
class Timings:
    """Samples (seconds) of each operation on one backend."""

    samples: dict[str, list[float]] = field(default_factory=dict)


async def bench_times(store: SessionStore, reps: int) -> Timings:
    """Checkpoint / restore / fork timings on a 5,000-turn session."""
    manager = SessionManagerImpl(store, manager_config())
    config = manager.config
    branches = BranchManager(
        store,
        config.max_branches_per_session,
        max_sessions_per_user=config.max_sessions_per_user,
        max_turns_per_session=config.max_turns_per_session,
    )
    checkpoints = manager.checkpoints
    sid = (await manager.create("bench-user")).session_id
    await _grow(manager, sid, 0, BIG // 2)
    cp_half = await checkpoints.create(sid, include_turns=False)
    await _grow(manager, sid, BIG // 2, BIG // 2 - 10)
    cp_near = await checkpoints.create(sid, include_turns=False)
    await _grow(manager, sid, BIG - 10, 10)
    cp_end = await checkpoints.create(sid, include_turns=False)
    header = await manager.get_header(sid)
    assert header is not None and header.turn_count == BIG, header

    t = Timings()
    t.samples["checkpoint (returns full state)"] = [
        await _timed(lambda: checkpoints.create(sid)) for _ in range(reps)
    ]
    small = (await manager.create("bench-user")).session_id
    await _grow(manager, small, 0, 10)
    big_cp, small_cp = [], []
    for _ in range(reps):  # alternated: both see the same machine load
        big_cp.append(await _timed(lambda: checkpoints.create(sid, include_turns=False)))
        small_cp.append(await _timed(lambda: checkpoints.create(small, include_turns=False)))
    t.samples["checkpoint (include_turns=False)"] = big_cp
    t.samples["checkpoint, 10-turn session (same)"] = small_cp
    near, far = [], []
    for i in range(reps):
        target = cp_near if i % 2 == 0 else cp_end
        near.append(await _timed(lambda target=target: manager.restore(target.checkpoint_id)))
    for i in range(reps):
        target = cp_half if i % 2 == 0 else cp_end
        far.append(await _timed(lambda target=target: manager.restore(target.checkpoint_id)))
    t.samples["restore (10 turns apart)"] = near
    t.samples["restore (2,500 turns apart)"] = far
    restored = await manager.restore(cp_end.checkpoint_id)
    assert restored.turn_count == BIG
    fork_reps = max(2, reps // 4)
    t.samples["fork at the end"] = [
        await _timed(lambda i=i: branches.fork(sid, f"end-{i}")) for i in range(fork_reps)
    ]
    t.samples["fork from a checkpoint"] = [
        await _timed(
            lambda i=i: branches.fork(sid, f"cp-{i}", from_checkpoint=cp_end.checkpoint_id)
        )
        for i in range(fork_reps)
    ]
    listed = await branches.list_branches(sid)
    assert len(listed) == 2 * fork_reps and all(b.turn_count == BIG for b in listed)
    return t


async def bench_storage(opened: Opened) -> tuple[Storage, Storage] | None:
    """50 checkpoints of a 1,000-turn session (one every 20 turns).

    Measured once as built, then again after restoring the checkpoint at turn 500 (the
    500 later turns stop being live but stay named by checkpoints: moved, not copied).
    """
    if opened.measure is None:
        return None
    store = opened.store
    manager = SessionManagerImpl(store, manager_config())
    sid = (await manager.create("storage-user")).session_id
    step = STORAGE_TURNS // STORAGE_CHECKPOINTS
    for start in range(0, STORAGE_TURNS, step):
        await manager.add_turns(sid, [turn(n) for n in range(start, start + step)])
        await manager.checkpoints.create(sid, include_turns=False)
    listed = await manager.list_checkpoints(sid)
    assert len(listed) == STORAGE_CHECKPOINTS, len(listed)
    built = await opened.measure(sid)
    middle = next(c for c in listed if c.state.turn_count == STORAGE_TURNS // 2)
    restored = await manager.restore(middle.checkpoint_id)
    assert restored.turn_count == STORAGE_TURNS // 2
    return built, await opened.measure(sid)


# ------------------------------------------------------------------ report
def report(name: str, timings: Timings, measured: tuple[Storage, Storage] | None) -> None:
    """Print one backend's figures."""
    print(f"\n== {name}")
    for label, samples in timings.samples.items():
        print(
            f"  {label:<36} median {median_ms(samples):9.2f} ms   "
            f"p99 {p99_ms(samples):9.2f} ms   (n={len(samples)})"
        )
    big = timings.samples.get("checkpoint (include_turns=False)")
    small = timings.samples.get("checkpoint, 10-turn session (same)")
    if big and small:
        print(
            f"  checkpoint of {BIG:,} turns / of 10 turns (include_turns=False): "
            f"{median_ms(big) / median_ms(small):.2f}x"
        )
    if measured is None:
        print("  storage: not measured (no byte accounting for this backend)")
        return
    storage, after = measured
    ratio = storage.checkpoint_bytes / storage.turn_bytes if storage.turn_bytes else float("inf")
    verdict = "OK (< 2x)" if ratio < 2 else "OVER 2x"
    print(
        f"  storage, {STORAGE_CHECKPOINTS} checkpoints of a {STORAGE_TURNS}-turn session "
        f"[{storage.method}]:"
    )
    print(f"    checkpoints {storage.checkpoint_bytes:>10,} B")
    print(f"    turns       {storage.turn_bytes:>10,} B")
    print(f"    ratio       {ratio:10.4f}   {verdict}")
    naive = sum(
        storage.turn_bytes * k // STORAGE_CHECKPOINTS for k in range(1, STORAGE_CHECKPOINTS + 1)
    )
    print(
        f"    (a deep copy of the turns in every checkpoint would be ~{naive:,} B, "
        f"{naive / max(storage.turn_bytes, 1):.1f}x)"
    )
    for key, value in storage.extra.items():
        print(f"    {key:<22} {value:>10,}")
    if "dbstat_checkpoints" in storage.extra and storage.extra.get("dbstat_turns"):
        pages = storage.extra["dbstat_checkpoints"] / storage.extra["dbstat_turns"]
        print(f"    dbstat ratio           {pages:10.4f}")
    before_total = storage.checkpoint_bytes + storage.turn_bytes
    after_total = after.checkpoint_bytes + after.turn_bytes
    print(
        f"  after restoring the checkpoint at turn {STORAGE_TURNS // 2}: checkpoints "
        f"{after.checkpoint_bytes:,} B + turns {after.turn_bytes:,} B = {after_total:,} B "
        f"(before: {before_total:,} B; {after_total / max(before_total, 1):.3f}x)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--backends", default="memory,sqlite,postgres,redis")
    args = parser.parse_args()
    reps = 4 if args.quick else 20
    backends, notes = available_backends({b.strip() for b in args.backends.split(",")})
    for note in notes:
        print(f"note: {note}")
    print(f"{BIG}-turn session, {reps} samples per operation (fork: {max(2, reps // 4)})")
    for backend in backends:
        async with backend.open() as opened:
            timings = await bench_times(opened.store, reps)
        async with backend.open() as opened:
            storage = await bench_storage(opened)
        report(backend.name, timings, storage)


if __name__ == "__main__":
    asyncio.run(main())
