"""Chat throughput at scale: N worker processes x M tasks, ours beside the raw driver.

Run::

    python benchmarks/scale.py [--backends sqlite,postgres,mariadb,redis,redis-cluster]
        [--processes 2] [--tasks 32] [--history 200] [--duration 5] [--rounds 3]
        [--pin] [--gc-freeze]

The workload is a busy chat service: every task owns one session that starts with
``--history`` turns, and repeats a *chat exchange* for ``--duration`` seconds — read
the newest 20 turns, then append a user turn and an assistant turn atomically.

* **ours**: the public manager API, ``get_turns(sid, last=20)`` then
  ``add_turns(sid, [user, assistant])`` (``SessionManagerImpl`` over the backend's
  store; no auto-checkpoint, no listeners).
* **raw**: the driver alone with the best one-round-trip code we know:

  - SQLite: ``sqlite3`` on one worker thread per process (the hop aiosqlite makes),
    WAL + ``synchronous=NORMAL`` + busy timeout like the store; a read is one
    ``SELECT … ORDER BY id DESC LIMIT 20`` + ``orjson.loads`` of each row, a write
    one hop running ``BEGIN IMMEDIATE; INSERT x2; UPDATE counters; COMMIT``.
  - PostgreSQL: an asyncpg pool of the same size as the store's; the same read, and
    the write as *one* statement (a CTE inserting both rows and bumping the counters).
  - MariaDB: an asyncmy pool of the same size; the same read, and the write as one
    ``INSERT`` of both rows, one ``UPDATE`` and ``COMMIT`` (``scale_mariadb.py``).
  - Redis / Redis Cluster: ``LRANGE -20 -1`` + ``orjson.loads``, then one Lua script
    (``RPUSH`` both turns, ``HINCRBY`` the counters, the touch time) by ``EVALSHA``.

Rounds alternate ours and raw (ours, raw, ours, raw, …) so both see the same machine
load; each round starts fresh worker processes that wait on a barrier, so only the
exchanges are timed. Printed per backend: exchanges/s of each round, the medians, the
ratio ours/raw, the load average (1 min) during each round, and the share of the timed
wall time each worker spent in Python's cyclic garbage collector (``gc.callbacks``) with
the number of full collections.

``--gc-freeze``: every worker, ours and raw alike, calls ``gc.collect(); gc.freeze()``
after its warm-up (as ``stores.py`` does in its one process), so full collections no
longer walk the objects the process built at start-up (the imported modules: about
72,000 objects in ours on Redis and 100,000 on the SQL stores, which import SQLAlchemy,
against about 37,000 in raw's). Without it, those walks are most of the difference between the
two sides (see docs/performance.md, "The garbage collector in the chat workload").

``--pin``: worker *i*, ours and raw alike, runs on CPU *i* (its driver threads
inherit the CPU). Unpinned, the kernel places each worker's event loop and its
aiosqlite thread where it likes, and on a 2-vCPU VM that placement decides much of a
SQLite round: on 2026-12-04 ours measured 2,685 / 3,028 / 3,011 / 5,161 exchanges/s in
four unpinned rounds of one run (raw 3,676-4,501), and 5,128-5,614 pinned (raw
5,400-5,660). Both sides run faster pinned; the ratio stops depending on the draw.

After the run every session is checked: its header's ``turn_count`` must equal the
number of turns stored, and the turns stored must add up to the history plus two per
acknowledged exchange. Any mismatch is printed and the exit status is 1.

Redis Cluster is started on loopback ports 7101-7103 (or 7104-7106) with
``tests/stores/redis_cluster.py`` under its machine-wide lock, and stopped at exit.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(HERE), str(ROOT)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from lexigram.contracts.ai.session import SessionTurn  # noqa: E402

POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
LAST = 20
T0 = datetime(2026, 1, 1, tzinfo=UTC)
USER_TEXT = ("How do I rotate the API keys of the staging project safely? " * 4)[:200]
ASSISTANT_TEXT = ("First create the new key, deploy it beside the old one, then revoke. " * 9)[:600]


# ------------------------------------------------------------------ settings
@dataclass
class Spec:
    """Everything a worker process needs to reach one backend's data."""

    backend: str
    url: str
    prefix: str
    pool_size: int
    history: int
    sqlite_dir: str = ""
    gc_freeze: bool = False
    pin: bool = False
    sessions: list[str] = field(default_factory=list)


def _config() -> Any:
    from lexigram.ai.session.config import SessionConfig

    return SessionConfig(
        session_ttl=0,
        max_turns_per_session=10_000_000,
        max_sessions_per_user=100_000,
        auto_checkpoint_interval=None,
    )


def _turn(n: int, role: str, text: str, prefix: str) -> SessionTurn:
    return SessionTurn(
        turn_id=f"{prefix}{n}",
        role=role,
        content=text,
        timestamp=T0 + timedelta(seconds=n),
        metadata={"n": n},
        tokens_used=12,
        cost=0.0001,
        model="gpt-x",
    )


def exchange_turns(tag: str, n: int) -> list[SessionTurn]:
    """The user and the assistant turn one chat exchange appends."""
    now = datetime.now(UTC)
    return [
        SessionTurn(
            turn_id=f"{tag}u{n}",
            role="user",
            content=USER_TEXT,
            timestamp=now,
            tokens_used=12,
            cost=0.0001,
        ),
        SessionTurn(
            turn_id=f"{tag}a{n}",
            role="assistant",
            content=ASSISTANT_TEXT,
            timestamp=now,
            tokens_used=140,
            cost=0.0021,
            model="gpt-x",
        ),
    ]


def _turn_dict(turn_id: str, role: str, text: str, now: float) -> dict[str, Any]:
    return {
        "turn_id": turn_id,
        "role": role,
        "content": text,
        "timestamp": now,
        "metadata": {},
        "tokens_used": 12,
        "cost": 0.0001,
        "model": "gpt-x",
    }


def _history_payloads(history: int) -> list[bytes]:
    return [
        orjson.dumps(_turn_dict(f"h{i}", "user" if i % 2 else "assistant", USER_TEXT, i))
        for i in range(history)
    ]


# -------------------------------------------------------------------- ours
async def _make_store(spec: Spec) -> Any:
    if spec.backend in ("sqlite", "postgres", "mariadb"):
        from lexigram.ai.session.stores.database import DatabaseSessionStore

        return DatabaseSessionStore(spec.url, table_prefix=spec.prefix, pool_size=spec.pool_size)
    from lexigram.ai.session.stores.cache import CacheSessionStore

    return CacheSessionStore(
        spec.url,
        key_prefix=spec.prefix,
        pool_size=spec.pool_size,
        cluster=spec.backend == "redis-cluster",
    )


class OursStack:
    """The manager over the backend's store, in one worker process."""

    def __init__(self, store: Any) -> None:
        from lexigram.ai.session.manager.core import SessionManagerImpl

        self.store = store
        self.manager = SessionManagerImpl(store, _config())

    @classmethod
    async def open(cls, spec: Spec) -> OursStack:
        """Connect (the schema exists already)."""
        store = await _make_store(spec)
        await store.initialize()
        return cls(store)

    async def exchange(self, sid: str, n: int, tag: str) -> int:
        """Read the newest 20 turns, append a user and an assistant turn."""
        recent = await self.manager.get_turns(sid, last=LAST)
        await self.manager.add_turns(sid, exchange_turns(tag, n))
        return len(recent)

    async def close(self) -> None:
        """Release connections."""
        await self.store.close()


async def seed_ours(spec: Spec) -> None:
    """Create every session with ``spec.history`` turns (not timed)."""
    store = await _make_store(spec)
    await store.initialize()
    stack = OursStack(store)
    sem = asyncio.Semaphore(16)

    async def one(i: int, sid: str) -> None:
        async with sem:
            await stack.manager.create(f"bench-user-{i % 4}", session_id=sid)
            for start in range(0, spec.history, 100):
                batch = [
                    _turn(n, "user" if n % 2 else "assistant", USER_TEXT, "h")
                    for n in range(start, min(spec.history, start + 100))
                ]
                await store.append_turns(sid, batch, max_turns=10_000_000)

    await asyncio.gather(*(one(i, sid) for i, sid in enumerate(spec.sessions)))
    await store.close()


async def check_ours(spec: Spec, acknowledged: int) -> list[str]:
    """Every session's turn_count against its stored turns; the grand total."""
    store = await _make_store(spec)
    await store.initialize()
    problems: list[str] = []
    total = 0
    for sid in spec.sessions:
        record = await store.load_record(sid)
        turns = await store.get_turns(sid)
        if record is None:
            problems.append(f"{sid}: header missing")
            continue
        total += len(turns)
        if record.state.turn_count != len(turns):
            problems.append(f"{sid}: turn_count={record.state.turn_count} stored={len(turns)}")
    expected = spec.history * len(spec.sessions) + 2 * acknowledged
    if total != expected:
        problems.append(f"turns stored {total} != history + 2 x acknowledged = {expected}")
    await store.close()
    return problems


async def drop_ours(spec: Spec) -> None:
    """Delete the namespace of our store."""
    if spec.backend in ("postgres", "mariadb"):
        from lexigram.ai.session.stores.sql.schema import drop_all

        store = await _make_store(spec)
        await store.initialize()
        async with store.engine.begin() as conn:
            await conn.run_sync(drop_all, store.schema)
        await store.close()
    elif spec.backend.startswith("redis"):
        await _redis_drop(spec, spec.prefix)


# --------------------------------------------------------------- raw SQLite
class RawSqlite:
    """sqlite3 on one worker thread: one hop per read, one hop per write."""

    def __init__(self, path: str) -> None:
        import sqlite3

        self._pool = ThreadPoolExecutor(1)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")

    @classmethod
    async def open(cls, spec: Spec) -> RawSqlite:
        """One connection with the store's pragmas."""
        return cls(str(Path(spec.sqlite_dir) / "raw.db"))

    def _read(self, sid: str) -> list[Any]:
        rows = self._conn.execute(
            "SELECT data FROM raw_turns WHERE session_key = ? ORDER BY id DESC LIMIT ?",
            (sid, LAST),
        ).fetchall()
        return [orjson.loads(r[0]) for r in reversed(rows)]

    def _write(self, sid: str, user: str, assistant: str, tokens: int) -> None:
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.executemany(
                "INSERT INTO raw_turns (session_key, data) VALUES (?, ?)",
                ((sid, user), (sid, assistant)),
            )
            c.execute(
                "UPDATE raw_sessions SET turn_count = turn_count + 2, "
                "total_tokens = total_tokens + ?, updated_at = ? WHERE session_key = ?",
                (tokens, time.time(), sid),
            )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    async def exchange(self, sid: str, n: int, tag: str) -> int:
        """Read 20 (one hop), write both turns and the counters (one hop)."""
        loop = asyncio.get_running_loop()
        recent = await loop.run_in_executor(self._pool, self._read, sid)
        now = time.time()
        user = orjson.dumps(_turn_dict(f"{tag}u{n}", "user", USER_TEXT, now)).decode()
        assistant = orjson.dumps(
            _turn_dict(f"{tag}a{n}", "assistant", ASSISTANT_TEXT, now)
        ).decode()
        await loop.run_in_executor(self._pool, self._write, sid, user, assistant, 152)
        return len(recent)

    async def close(self) -> None:
        """Close the connection and the thread."""
        self._conn.close()
        self._pool.shutdown()


def _sqlite_raw_seed(spec: Spec) -> None:
    import sqlite3

    conn = sqlite3.connect(str(Path(spec.sqlite_dir) / "raw.db"), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(
        "CREATE TABLE raw_turns (id INTEGER PRIMARY KEY, session_key TEXT NOT NULL,"
        " data TEXT NOT NULL);"
        "CREATE INDEX raw_turns_session ON raw_turns (session_key, id);"
        "CREATE TABLE raw_sessions (session_key TEXT PRIMARY KEY, turn_count INTEGER,"
        " total_tokens INTEGER, updated_at REAL);"
    )
    payloads = [p.decode() for p in _history_payloads(spec.history)]
    conn.execute("BEGIN")
    for sid in spec.sessions:
        conn.execute("INSERT INTO raw_sessions VALUES (?, ?, 0, 0)", (sid, spec.history))
        conn.executemany(
            "INSERT INTO raw_turns (session_key, data) VALUES (?, ?)",
            [(sid, p) for p in payloads],
        )
    conn.execute("COMMIT")
    conn.close()


def _sqlite_raw_counts(spec: Spec) -> list[tuple[str, int, int]]:
    import sqlite3

    conn = sqlite3.connect(str(Path(spec.sqlite_dir) / "raw.db"))
    rows = conn.execute(
        "SELECT s.session_key, s.turn_count, (SELECT count(*) FROM raw_turns t"
        " WHERE t.session_key = s.session_key) FROM raw_sessions s"
    ).fetchall()
    conn.close()
    return [(r[0], r[1], r[2]) for r in rows]


# ----------------------------------------------------------- raw PostgreSQL
def _pg_dsn() -> str:
    from lexigram.ai.session.stores.sql.urls import normalise_url

    url = normalise_url(POSTGRES_URL).url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


class RawPostgres:
    """asyncpg: the read as one SELECT, the write as one CTE statement."""

    def __init__(self, pool: Any, prefix: str) -> None:
        self._pool = pool
        self._read_sql = (
            f"SELECT data FROM {prefix}turns WHERE session_key = $1 ORDER BY id DESC LIMIT {LAST}"
        )
        self._write_sql = (
            f"WITH ins AS (INSERT INTO {prefix}turns (session_key, data)"
            f" VALUES ($1, $2), ($1, $3) RETURNING 1)"
            f" UPDATE {prefix}sessions SET turn_count = turn_count + (SELECT count(*) FROM ins),"
            f" total_tokens = total_tokens + $4, updated_at = now() WHERE session_key = $1"
        )

    @classmethod
    async def open(cls, spec: Spec) -> RawPostgres:
        """A pool of ``spec.pool_size`` connections."""
        import asyncpg

        pool = await asyncpg.create_pool(_pg_dsn(), min_size=1, max_size=spec.pool_size)
        return cls(pool, spec.prefix + "raw_")

    async def exchange(self, sid: str, n: int, tag: str) -> int:
        """One SELECT, one CTE."""
        rows = await self._pool.fetch(self._read_sql, sid)
        recent = [orjson.loads(r[0]) for r in reversed(rows)]
        now = time.time()
        await self._pool.execute(
            self._write_sql,
            sid,
            orjson.dumps(_turn_dict(f"{tag}u{n}", "user", USER_TEXT, now)).decode(),
            orjson.dumps(_turn_dict(f"{tag}a{n}", "assistant", ASSISTANT_TEXT, now)).decode(),
            152,
        )
        return len(recent)

    async def close(self) -> None:
        """Close the pool."""
        await self._pool.close()


async def _pg_raw_seed(spec: Spec) -> None:
    import asyncpg

    p = spec.prefix + "raw_"
    conn = await asyncpg.connect(_pg_dsn())
    await conn.execute(
        f"CREATE TABLE {p}turns (id BIGSERIAL PRIMARY KEY, session_key TEXT NOT NULL,"
        f" data TEXT NOT NULL);"
        f"CREATE INDEX ON {p}turns (session_key, id);"
        f"CREATE TABLE {p}sessions (session_key TEXT PRIMARY KEY, turn_count BIGINT,"
        f" total_tokens BIGINT, updated_at TIMESTAMPTZ)"
    )
    payloads = [x.decode() for x in _history_payloads(spec.history)]
    for sid in spec.sessions:
        await conn.execute(f"INSERT INTO {p}sessions VALUES ($1, $2, 0, now())", sid, spec.history)
        await conn.executemany(
            f"INSERT INTO {p}turns (session_key, data) VALUES ($1, $2)",
            [(sid, x) for x in payloads],
        )
    await conn.close()


async def _pg_raw_counts(spec: Spec) -> list[tuple[str, int, int]]:
    import asyncpg

    p = spec.prefix + "raw_"
    conn = await asyncpg.connect(_pg_dsn())
    rows = await conn.fetch(
        f"SELECT s.session_key, s.turn_count, (SELECT count(*) FROM {p}turns t"
        f" WHERE t.session_key = s.session_key) FROM {p}sessions s"
    )
    await conn.execute(f"DROP TABLE IF EXISTS {p}turns, {p}sessions")
    await conn.close()
    return [(r[0], r[1], r[2]) for r in rows]


# ---------------------------------------------------------------- raw Redis
_RAW_APPEND = """
redis.call('RPUSH', KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], 'turn_count', 2)
redis.call('HINCRBY', KEYS[2], 'total_tokens', ARGV[3])
redis.call('HSET', KEYS[2], 'updated_at', ARGV[4])
return 1
"""


def _redis_client(spec: Spec) -> Any:
    if spec.backend == "redis-cluster":
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(spec.url, max_connections=spec.pool_size)
    from redis.asyncio import Redis

    return Redis.from_url(spec.url, max_connections=spec.pool_size)


def _redis_keys(prefix: str, sid: str) -> tuple[str, str]:
    base = f"{prefix}raw:{{{sid}}}"
    return base + ":t", base + ":h"


class RawRedis:
    """redis-py: LRANGE of the newest 20, then one script for the write."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_RAW_APPEND)

    @classmethod
    async def open(cls, spec: Spec) -> RawRedis:
        """A client with the store's pool size, the script loaded (as the store does)."""
        raw = cls(_redis_client(spec), spec.prefix)
        raw._script.sha = await raw._client.script_load(_RAW_APPEND)
        return raw

    async def exchange(self, sid: str, n: int, tag: str) -> int:
        """LRANGE + orjson; EVALSHA of the append script."""
        turns, header = _redis_keys(self._prefix, sid)
        items = await self._client.lrange(turns, -LAST, -1)
        recent = [orjson.loads(x) for x in items]
        now = time.time()
        await self._script(
            keys=[turns, header],
            args=[
                orjson.dumps(_turn_dict(f"{tag}u{n}", "user", USER_TEXT, now)),
                orjson.dumps(_turn_dict(f"{tag}a{n}", "assistant", ASSISTANT_TEXT, now)),
                152,
                now,
            ],
        )
        return len(recent)

    async def close(self) -> None:
        """Close the client."""
        await self._client.aclose()


async def _redis_raw_seed(spec: Spec) -> None:
    client = _redis_client(spec)
    payloads = _history_payloads(spec.history)
    for sid in spec.sessions:
        turns, header = _redis_keys(spec.prefix, sid)
        await client.rpush(turns, *payloads)
        await client.hset(header, mapping={"turn_count": spec.history, "total_tokens": 0})
    await client.aclose()


async def _redis_raw_counts(spec: Spec) -> list[tuple[str, int, int]]:
    client = _redis_client(spec)
    out = []
    for sid in spec.sessions:
        turns, header = _redis_keys(spec.prefix, sid)
        count = int(await client.hget(header, "turn_count") or -1)
        out.append((sid, count, int(await client.llen(turns))))
    await client.aclose()
    return out


async def _redis_drop(spec: Spec, prefix: str) -> None:
    client = _redis_client(spec)
    if spec.backend == "redis-cluster":
        nodes = client.get_nodes()
        for node in nodes:
            async for key in client.scan_iter(match=f"{prefix}*", count=1000, target_nodes=node):
                await client.delete(key)
    else:
        batch: list[Any] = []
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                await client.delete(*batch)
                batch.clear()
        if batch:
            await client.delete(*batch)
    await client.aclose()


# ------------------------------------------------------------------ workers
Opener = Callable[[Spec], Awaitable[Any]]
RAW: dict[str, Opener] = {
    "sqlite": RawSqlite.open,
    "postgres": RawPostgres.open,
    "redis": RawRedis.open,
    "redis-cluster": RawRedis.open,
    "mariadb": lambda spec: _raw_mariadb().open(spec),
}


def _raw_mariadb() -> Any:
    """``scale_mariadb.RawMariadb`` (imported when a MariaDB round runs)."""
    from scale_mariadb import RawMariadb

    return RawMariadb


async def _work(kind: str, spec: Spec, sids: list[str], duration: float, barrier: Any) -> Any:
    stack = await (OursStack.open(spec) if kind == "ours" else RAW[spec.backend](spec))
    tag = uuid.uuid4().hex[:6]
    # Warm-up: one exchange per session (connections, statement caches, scripts).
    await asyncio.gather(*(stack.exchange(sid, 0, tag) for sid in sids))
    if spec.gc_freeze:  # the same for ours and raw: the heap built so far is never walked
        gc.collect()
        gc.freeze()
    collector = _GcClock()
    await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
    start = time.perf_counter()
    end = start + duration
    errors: list[str] = []

    async def task(sid: str) -> int:
        done = 0
        while time.perf_counter() < end:
            try:
                await stack.exchange(sid, done + 1, tag)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return done
            done += 1
        return done

    counts = await asyncio.gather(*(task(sid) for sid in sids))
    elapsed = time.perf_counter() - start
    gc_time, full = collector.stop()
    await stack.close()
    return sum(counts), len(sids), elapsed, errors[:3], gc_time / elapsed, full


class _GcClock:
    """Time the cyclic garbage collector takes in this process (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._start = 0.0
        gc.callbacks.append(self._on)

    def _on(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
            return
        self.seconds += time.perf_counter() - self._start
        self.full += info["generation"] == 2

    def stop(self) -> tuple[float, int]:
        """Seconds spent collecting and full collections, since construction."""
        gc.callbacks.remove(self._on)
        return self.seconds, self.full


def _worker(
    kind: str, spec: Spec, sids: list[str], duration: float, barrier: Any, out: Any, cpu: int
) -> None:
    if spec.pin and hasattr(os, "sched_setaffinity"):
        # Before any thread starts: the driver's threads (aiosqlite) inherit the CPU.
        os.sched_setaffinity(0, {cpu})
    try:
        out.put(asyncio.run(_work(kind, spec, sids, duration, barrier)))
    except BaseException as exc:
        barrier.abort()
        detail = "".join(traceback.format_exception(exc)[-3:])
        out.put(RuntimeError(detail))  # driver errors do not always pickle


@dataclass
class RoundResult:
    """One round of one kind."""

    rate: float
    exchanges: int
    warmups: int
    load: float
    errors: list[str]
    gc_share: float = 0.0
    """Mean share of each worker's timed wall time spent in the cyclic collector."""
    gc_full: int = 0
    """Full (oldest-generation) collections in all workers while timed."""


def run_round(kind: str, spec: Spec, processes: int, duration: float) -> RoundResult:
    """Start ``processes`` workers on disjoint sessions; exchanges per second of all."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(processes + 1)
    out = ctx.Queue()
    per = len(spec.sessions) // processes
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    procs = [
        ctx.Process(
            target=_worker,
            args=(
                kind,
                spec,
                spec.sessions[i * per : (i + 1) * per],
                duration,
                barrier,
                out,
                cpus[i % len(cpus)],
            ),
        )
        for i in range(processes)
    ]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=300)
    except threading.BrokenBarrierError:
        failure = out.get(timeout=60)  # the worker that broke the barrier says why
        for p in procs:
            p.join(timeout=60)
        raise RuntimeError(f"a {kind} worker failed: {failure!r}") from None
    time.sleep(duration * 0.8)
    load = os.getloadavg()[0]
    results = [out.get(timeout=duration + 300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    total = warm = full = 0
    rate = share = 0.0
    errors: list[str] = []
    for r in results:
        if isinstance(r, BaseException):
            raise r
        count, nwarm, elapsed, errs, gc_share, gc_full = r
        total += count
        warm += nwarm
        rate += count / elapsed
        errors.extend(errs)
        share += gc_share / len(results)
        full += gc_full
    return RoundResult(rate, total, warm, load, errors, share, full)


# ------------------------------------------------------------------ backends
@dataclass
class Backend:
    """How to set up, check and drop one backend's data (ours and raw)."""

    name: str
    spec: Spec
    seed_raw: Callable[[Spec], Awaitable[None]]
    raw_counts: Callable[[Spec], Awaitable[list[tuple[str, int, int]]]]
    cleanup: Callable[[], None] = lambda: None


def _sessions(processes: int, tasks: int) -> list[str]:
    return [f"chat-{p}-{t}" for p in range(processes) for t in range(tasks)]


def make_backend(name: str, args: argparse.Namespace, cluster_url: str | None) -> Backend:
    """The spec of ``name`` on a fresh namespace."""
    sessions = _sessions(args.processes, args.tasks)
    tag = uuid.uuid4().hex[:8]
    if name == "sqlite":
        directory = tempfile.mkdtemp(prefix="lexi-scale-")
        spec = Spec(
            name,
            f"sqlite+aiosqlite:///{directory}/sessions.db",
            "ai_session_",
            args.pool,
            args.history,
            sqlite_dir=directory,
            sessions=sessions,
        )

        async def seed(s: Spec) -> None:
            _sqlite_raw_seed(s)

        async def counts(s: Spec) -> list[tuple[str, int, int]]:
            return _sqlite_raw_counts(s)

        return Backend(
            name, spec, seed, counts, lambda: shutil.rmtree(directory, ignore_errors=True)
        )
    if name == "postgres":
        spec = Spec(name, POSTGRES_URL, f"scale_{tag}_", args.pool, args.history, sessions=sessions)
        return Backend(name, spec, _pg_raw_seed, _pg_raw_counts)
    if name == "mariadb":
        from scale_mariadb import MARIADB_URL, mariadb_raw_counts, mariadb_raw_seed

        spec = Spec(name, MARIADB_URL, f"scale_{tag}_", args.pool, args.history, sessions=sessions)
        return Backend(name, spec, mariadb_raw_seed, mariadb_raw_counts)
    if name in ("redis", "redis-cluster"):
        url = REDIS_URL if name == "redis" else str(cluster_url)
        spec = Spec(name, url, f"lxscale:{tag}:", 50, args.history, sessions=sessions)

        async def rcounts(s: Spec) -> list[tuple[str, int, int]]:
            found = await _redis_raw_counts(s)
            await _redis_drop(s, s.prefix + "raw:")
            return found

        return Backend(name, spec, _redis_raw_seed, rcounts)
    raise SystemExit(f"unknown backend {name!r}")


def bench_backend(backend: Backend, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """Seed, alternate rounds, check; returns the figures and any mismatch."""
    spec = backend.spec
    asyncio.run(seed_ours(spec))
    asyncio.run(backend.seed_raw(spec))
    rounds: dict[str, list[RoundResult]] = {"ours": [], "raw": []}
    try:
        for i in range(args.rounds):
            order = ("ours", "raw") if i % 2 == 0 else ("raw", "ours")
            for kind in order:
                result = run_round(kind, spec, args.processes, args.duration)
                rounds[kind].append(result)
                print(
                    f"  {backend.name:<13} round {i + 1} {kind:<4} {result.rate:9.0f} exchanges/s"
                    f"  load {result.load:5.2f}  gc {result.gc_share:5.1%} ({result.gc_full} full)"
                    + (f"  ERRORS {result.errors}" if result.errors else ""),
                    flush=True,
                )
        acknowledged = sum(r.exchanges + r.warmups for r in rounds["ours"])
        problems = asyncio.run(check_ours(spec, acknowledged))
        raw_ack = sum(r.exchanges + r.warmups for r in rounds["raw"])
        raw_rows = asyncio.run(backend.raw_counts(spec))
        raw_total = sum(stored for _, _, stored in raw_rows)
        problems += [f"raw {sid}: count={c} stored={s}" for sid, c, s in raw_rows if c != s]
        if raw_total != spec.history * len(spec.sessions) + 2 * raw_ack:
            problems.append(f"raw: turns stored {raw_total} != expected")
        for kind in rounds:
            problems += [f"{kind}: {e}" for r in rounds[kind] for e in r.errors]
    finally:
        asyncio.run(drop_ours(spec))
        backend.cleanup()
    ours = statistics.median(r.rate for r in rounds["ours"])
    raw = statistics.median(r.rate for r in rounds["raw"])
    loads = [r.load for k in rounds for r in rounds[k]]
    return {
        "backend": backend.name,
        "ours": ours,
        "raw": raw,
        "ratio": ours / raw if raw else float("nan"),
        "load": statistics.mean(loads),
        "gc_ours": statistics.mean(r.gc_share for r in rounds["ours"]),
        "gc_raw": statistics.mean(r.gc_share for r in rounds["raw"]),
        "sessions": len(spec.sessions),
    }, problems


def main() -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgres,redis,redis-cluster")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=32, help="concurrent tasks per process")
    parser.add_argument("--history", type=int, default=200, help="turns per session at start")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each (alternated)")
    parser.add_argument("--pool", type=int, default=10, help="SQL pool size (ours and raw)")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="worker i (ours and raw alike) and its threads on CPU i (mod the CPUs)",
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="every worker (ours and raw) calls gc.collect(); gc.freeze() after its warm-up",
    )
    args = parser.parse_args()
    names = [b.strip() for b in args.backends.split(",") if b.strip()]
    cluster_url = None
    if "redis-cluster" in names:
        from tests.stores.redis_cluster import shared_cluster

        cluster_url = shared_cluster().url
    print(
        f"{args.processes} processes x {args.tasks} tasks, {args.history} turns of history,"
        f" {args.duration:g} s x {args.rounds} rounds each; load average at start"
        f" {os.getloadavg()[0]:.2f}; cores {os.cpu_count()}",
        flush=True,
    )
    summary: list[dict[str, Any]] = []
    failed = False
    for name in names:
        backend = make_backend(name, args, cluster_url)
        backend.spec.gc_freeze = args.gc_freeze
        backend.spec.pin = args.pin
        figures, problems = bench_backend(backend, args)
        summary.append(figures)
        for p in problems[:20]:
            print(f"  MISMATCH {name}: {p}")
        if problems:
            failed = True
            print(f"  {name}: {len(problems)} problem(s)")
        else:
            print(f"  {name}: every session's turn_count equals its stored turns")
    print(
        "\n| backend | ours (exchanges/s) | raw (exchanges/s) | ours / raw | load avg (1 min)"
        " | time in gc, ours / raw |"
    )
    print("|---|---|---|---|---|---|")
    for s in summary:
        print(
            f"| {s['backend']} | {s['ours']:,.0f} | {s['raw']:,.0f} | {s['ratio']:.2f}"
            f" | {s['load']:.2f} | {s['gc_ours']:.1%} / {s['gc_raw']:.1%} |"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
