"""The SQL backends of the store benchmarks: SQLite (aiosqlite) and PostgreSQL (asyncpg).

Raw baselines, doing an append's work with the driver alone:

* SQLite: one aiosqlite connection with the store's pragmas (WAL,
  ``synchronous=NORMAL``); an append is ``INSERT`` of the turn's JSON into a turns
  table + ``UPDATE`` of a counter row, then ``COMMIT`` (one transaction, writers
  serialised by an asyncio lock as they must be on one connection); a read is
  ``SELECT`` of a session's rows in order + ``orjson.loads`` of each.
* PostgreSQL: an asyncpg pool; an append is ``INSERT`` + ``UPDATE`` inside
  ``conn.transaction()``; a read as above.

The database URL of PostgreSQL is ``BENCH_POSTGRES_URL`` (default the test server);
each run works under a random table prefix dropped at the end. SQLite works in a
temporary directory.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import BenchBackend, reachable

from lexigram.ai.session.stores.base import SessionStore
from lexigram.ai.session.stores.database import DatabaseSessionStore
from lexigram.ai.session.stores.sql.schema import drop_all
from lexigram.ai.session.stores.sql.urls import normalise_url

POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
_TMP_DIRS: dict[int, str] = {}


# ----------------------------------------------------------------- SQLite raw
class RawSqliteWriter:
    """aiosqlite alone: INSERT + counter UPDATE + COMMIT per append."""

    def __init__(self, conn: Any, directory: str) -> None:
        self._conn = conn
        self._dir = directory
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls) -> RawSqliteWriter:
        """A new database file with the same pragmas as the store."""
        import aiosqlite

        directory = tempfile.mkdtemp(prefix="lexi-bench-raw-")
        conn = await aiosqlite.connect(str(Path(directory) / "raw.db"))
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.executescript(
            "CREATE TABLE raw_turns (id INTEGER PRIMARY KEY, session_key TEXT NOT NULL,"
            " data TEXT NOT NULL);"
            "CREATE INDEX raw_turns_session ON raw_turns (session_key, id);"
            "CREATE TABLE raw_sessions (session_key TEXT PRIMARY KEY, turn_count INTEGER,"
            " total_tokens INTEGER, header TEXT);"
        )
        await conn.commit()
        return cls(conn, directory)

    async def create(self, session_key: str) -> None:
        """INSERT of a session header row, committed."""
        async with self._lock:
            await self._conn.execute(
                "INSERT INTO raw_sessions VALUES (?, 0, 0, ?)", (session_key, '{"user":"bench"}')
            )
            await self._conn.commit()

    async def append(self, session_key: str, payload: bytes, tokens: int) -> None:
        """INSERT the turn, UPDATE the counters, COMMIT."""
        async with self._lock:
            await self._conn.execute(
                "INSERT INTO raw_turns (session_key, data) VALUES (?, ?)",
                (session_key, payload.decode()),
            )
            await self._conn.execute(
                "UPDATE raw_sessions SET turn_count = turn_count + 1, "
                "total_tokens = total_tokens + ? WHERE session_key = ?",
                (tokens, session_key),
            )
            await self._conn.commit()

    async def seed(self, session_key: str, payloads: list[bytes], tokens: int) -> None:
        """Bulk-load history (not measured)."""
        async with self._lock:
            await self._conn.execute(
                "INSERT OR IGNORE INTO raw_sessions VALUES (?, 0, 0, '{}')", (session_key,)
            )
            await self._conn.executemany(
                "INSERT INTO raw_turns (session_key, data) VALUES (?, ?)",
                [(session_key, p.decode()) for p in payloads],
            )
            await self._conn.commit()

    async def read_all(self, session_key: str) -> list[Any]:
        """SELECT the session's rows in order and parse each with orjson."""
        rows = await self._conn.execute_fetchall(
            "SELECT data FROM raw_turns WHERE session_key = ? ORDER BY id", (session_key,)
        )
        return [orjson.loads(r[0]) for r in rows]

    async def close(self) -> None:
        """Close and delete the database file."""
        await self._conn.close()
        shutil.rmtree(self._dir, ignore_errors=True)


# ------------------------------------------------------------- PostgreSQL raw
class RawPostgresWriter:
    """asyncpg alone: INSERT + counter UPDATE in one transaction per append."""

    def __init__(self, pool: Any, prefix: str) -> None:
        self._pool = pool
        self._turns = f"{prefix}turns"
        self._sessions = f"{prefix}sessions"

    @classmethod
    async def open(cls) -> RawPostgresWriter:
        """Tables under a random prefix on the benchmark server."""
        import asyncpg

        url = normalise_url(POSTGRES_URL).url.set(drivername="postgresql")
        pool = await asyncpg.create_pool(
            url.render_as_string(hide_password=False), min_size=2, max_size=20
        )
        prefix = f"rawbench_{uuid.uuid4().hex[:8]}_"
        writer = cls(pool, prefix)
        await pool.execute(
            f"CREATE TABLE {writer._turns} (id BIGSERIAL PRIMARY KEY, session_key TEXT NOT NULL,"
            f" data TEXT NOT NULL);"
            f"CREATE INDEX ON {writer._turns} (session_key, id);"
            f"CREATE TABLE {writer._sessions} (session_key TEXT PRIMARY KEY,"
            f" turn_count BIGINT, total_tokens BIGINT, header TEXT)"
        )
        return writer

    async def create(self, session_key: str) -> None:
        """INSERT of a session header row (autocommit)."""
        await self._pool.execute(
            f"INSERT INTO {self._sessions} VALUES ($1, 0, 0, $2)", session_key, '{"user":"bench"}'
        )

    async def append(self, session_key: str, payload: bytes, tokens: int) -> None:
        """BEGIN; INSERT the turn; UPDATE the counters; COMMIT."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"INSERT INTO {self._turns} (session_key, data) VALUES ($1, $2)",
                session_key,
                payload.decode(),
            )
            await conn.execute(
                f"UPDATE {self._sessions} SET turn_count = turn_count + 1, "
                "total_tokens = total_tokens + $1 WHERE session_key = $2",
                tokens,
                session_key,
            )

    async def seed(self, session_key: str, payloads: list[bytes], tokens: int) -> None:
        """Bulk-load history (not measured)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"INSERT INTO {self._sessions} VALUES ($1, 0, 0, '{{}}') ON CONFLICT DO NOTHING",
                session_key,
            )
            await conn.executemany(
                f"INSERT INTO {self._turns} (session_key, data) VALUES ($1, $2)",
                [(session_key, p.decode()) for p in payloads],
            )

    async def read_all(self, session_key: str) -> list[Any]:
        """SELECT the session's rows in order and parse each with orjson."""
        rows = await self._pool.fetch(
            f"SELECT data FROM {self._turns} WHERE session_key = $1 ORDER BY id", session_key
        )
        return [orjson.loads(r[0]) for r in rows]

    async def close(self) -> None:
        """Drop the tables and close the pool."""
        await self._pool.execute(f"DROP TABLE IF EXISTS {self._turns}, {self._sessions}")
        await self._pool.close()


# -------------------------------------------------------------------- stores
async def _make_sqlite() -> SessionStore:
    directory = tempfile.mkdtemp(prefix="lexi-bench-")
    store = DatabaseSessionStore(f"sqlite+aiosqlite:///{directory}/sessions.db")
    _TMP_DIRS[id(store)] = directory
    await store.initialize()
    return store


async def _make_postgres() -> SessionStore:
    url = normalise_url(POSTGRES_URL).url
    if not reachable(url.host or "127.0.0.1", url.port or 5432):
        raise ConnectionError(f"PostgreSQL is not reachable at {url.host}:{url.port or 5432}")
    store = DatabaseSessionStore(POSTGRES_URL, table_prefix=f"bench_{uuid.uuid4().hex[:8]}_")
    await store.initialize()
    return store


async def _drop_store(store: SessionStore) -> None:
    assert isinstance(store, DatabaseSessionStore)
    try:
        if store.dialect == "postgresql":
            async with store.engine.begin() as conn:
                await conn.run_sync(drop_all, store.schema)
    finally:
        await store.close()
        directory = _TMP_DIRS.pop(id(store), None)
        if directory:
            shutil.rmtree(directory, ignore_errors=True)


async def _raw_sqlite() -> RawSqliteWriter:
    return await RawSqliteWriter.open()


async def _raw_postgres() -> RawPostgresWriter:
    return await RawPostgresWriter.open()


BACKENDS = [
    BenchBackend(
        name="sqlite",
        make_store=_make_sqlite,
        drop_store=_drop_store,
        make_raw=_raw_sqlite,
        notes={
            "url": "sqlite+aiosqlite:///<tmp>/sessions.db (WAL, synchronous=NORMAL)",
            "baseline": "aiosqlite INSERT + UPDATE + COMMIT / SELECT + orjson",
            "sdk": True,
        },
    ),
    BenchBackend(
        name="postgres",
        make_store=_make_postgres,
        drop_store=_drop_store,
        make_raw=_raw_postgres,
        notes={
            "url": normalise_url(POSTGRES_URL).masked,
            "baseline": "asyncpg BEGIN; INSERT; UPDATE; COMMIT / SELECT + orjson",
        },
    ),
]
