"""MariaDB for the store benchmarks: the SQL store on asyncmy beside asyncmy alone.

Raw baseline, doing an append's work with the driver alone: an asyncmy pool
(autocommit); an append is ``START TRANSACTION``; ``INSERT`` of the turn's JSON;
``UPDATE`` of a counter row; ``COMMIT`` on one pooled connection; a read is
``SELECT`` of a session's rows in order + ``orjson.loads`` of each.

The URL is ``BENCH_MARIADB_URL`` (default the test server,
``mysql+asyncmy://root@127.0.0.1:3306/test``); each run works under a random table
prefix dropped at the end.
"""

from __future__ import annotations

import os
import sys
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

MARIADB_URL = os.environ.get("BENCH_MARIADB_URL", "mysql+asyncmy://root@127.0.0.1:3306/test")


class RawMariadbWriter:
    """asyncmy alone: INSERT + counter UPDATE in one transaction per append."""

    def __init__(self, pool: Any, prefix: str) -> None:
        self._pool = pool
        self._turns = f"{prefix}turns"
        self._sessions = f"{prefix}sessions"

    @classmethod
    async def open(cls) -> RawMariadbWriter:
        """Tables under a random prefix on the benchmark server."""
        import asyncmy

        url = normalise_url(MARIADB_URL).url
        pool = await asyncmy.create_pool(
            host=url.host or "127.0.0.1",
            port=url.port or 3306,
            user=url.username or "root",
            password=url.password or "",
            db=url.database,
            charset="utf8mb4",
            autocommit=True,
            minsize=2,
            maxsize=20,
        )
        writer = cls(pool, f"rawbench_{uuid.uuid4().hex[:8]}_")
        await writer._exec(
            f"CREATE TABLE {writer._turns} (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
            "session_key VARCHAR(255) NOT NULL, data LONGTEXT NOT NULL, "
            "KEY (session_key, id)) CHARACTER SET utf8mb4"
        )
        await writer._exec(
            f"CREATE TABLE {writer._sessions} (session_key VARCHAR(255) PRIMARY KEY, "
            "turn_count BIGINT, total_tokens BIGINT, header LONGTEXT) CHARACTER SET utf8mb4"
        )
        return writer

    async def _exec(self, sql: str, args: Any = None) -> list[Any]:
        async with self._pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(sql, args)
            return list(await cur.fetchall())

    async def create(self, session_key: str) -> None:
        """INSERT of a session header row (autocommit)."""
        await self._exec(
            f"INSERT INTO {self._sessions} VALUES (%s, 0, 0, %s)",
            (session_key, '{"user":"bench"}'),
        )

    async def append(self, session_key: str, payload: bytes, tokens: int) -> None:
        """START TRANSACTION; INSERT the turn; UPDATE the counters; COMMIT."""
        async with self._pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute("START TRANSACTION")
            await cur.execute(
                f"INSERT INTO {self._turns} (session_key, data) VALUES (%s, %s)",
                (session_key, payload.decode()),
            )
            await cur.execute(
                f"UPDATE {self._sessions} SET turn_count = turn_count + 1, "
                "total_tokens = total_tokens + %s WHERE session_key = %s",
                (tokens, session_key),
            )
            await cur.execute("COMMIT")

    async def seed(self, session_key: str, payloads: list[bytes], tokens: int) -> None:
        """Bulk-load history (not measured)."""
        async with self._pool.acquire() as conn, conn.cursor() as cur:
            await cur.execute(
                f"INSERT IGNORE INTO {self._sessions} VALUES (%s, 0, 0, '{{}}')", (session_key,)
            )
            await cur.executemany(
                f"INSERT INTO {self._turns} (session_key, data) VALUES (%s, %s)",
                [(session_key, p.decode()) for p in payloads],
            )

    async def read_all(self, session_key: str) -> list[Any]:
        """SELECT the session's rows in order and parse each with orjson."""
        rows = await self._exec(
            f"SELECT data FROM {self._turns} WHERE session_key = %s ORDER BY id", (session_key,)
        )
        return [orjson.loads(r[0]) for r in rows]

    async def close(self) -> None:
        """Drop the tables and close the pool."""
        await self._exec(f"DROP TABLE IF EXISTS {self._turns}, {self._sessions}")
        self._pool.close()
        await self._pool.wait_closed()


async def _make_mariadb() -> SessionStore:
    url = normalise_url(MARIADB_URL).url
    if not reachable(url.host or "127.0.0.1", url.port or 3306):
        raise ConnectionError(f"MariaDB is not reachable at {url.host}:{url.port or 3306}")
    store = DatabaseSessionStore(MARIADB_URL, table_prefix=f"bench_{uuid.uuid4().hex[:8]}_")
    await store.initialize()
    return store


async def _drop_store(store: SessionStore) -> None:
    assert isinstance(store, DatabaseSessionStore)
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(drop_all, store.schema)
    finally:
        await store.close()


async def _raw_mariadb() -> RawMariadbWriter:
    return await RawMariadbWriter.open()


BACKENDS = [
    BenchBackend(
        name="mariadb",
        make_store=_make_mariadb,
        drop_store=_drop_store,
        make_raw=_raw_mariadb,
        notes={
            "url": normalise_url(MARIADB_URL).masked,
            "baseline": "asyncmy START TRANSACTION; INSERT; UPDATE; COMMIT / SELECT + orjson",
        },
    ),
]
