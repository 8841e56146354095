"""Stores on every durable backend with a raw view of everything they stored.

``RawBackend.dump()`` returns every byte the backend holds for the test: the SQLite
database files (main, WAL, shared memory), every row of every table under the
test's PostgreSQL/MariaDB table prefix, every Redis key and value under the test's
key prefix (read by type, so nothing is compressed out of sight).
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from lexigram.ai.session.stores.base import SessionStore
from lexigram.ai.session.stores.cache import CacheSessionStore
from lexigram.ai.session.stores.database import DatabaseSessionStore, drop_schema
from tests.services import (
    MARIADB_URL,
    POSTGRES_URL,
    REDIS_URL,
    require_mariadb,
    require_postgres,
    require_redis,
)

Maker = Callable[[], Awaitable[SessionStore]]


@dataclass
class RawBackend:
    """A factory of plain stores on one private namespace, and a raw dump of it."""

    name: str
    make: Maker
    dump: Callable[[], Awaitable[bytes]]


async def _sql_rows(store: DatabaseSessionStore) -> bytes:
    out: list[str] = []
    async with store.engine.connect() as conn:
        for table in ("sessions", "turns", "checkpoints", "tombstones"):
            rows = await conn.execute(text(f"SELECT * FROM {store.table_prefix}{table}"))
            out.extend(repr(tuple(row)) for row in rows)
    return "\n".join(out).encode("utf-8", "surrogatepass")


def _files(folder: Path) -> bytes:
    """Every byte of every file in ``folder`` (the database, its WAL and shm files)."""
    return b"".join(path.read_bytes() for path in sorted(folder.iterdir()))


@asynccontextmanager
async def _sql(name: str, url: str | None) -> AsyncIterator[RawBackend]:
    made: list[DatabaseSessionStore] = []
    with tempfile.TemporaryDirectory(prefix="lexi-priv-") as tmp:
        sqlite = url is None
        target = f"sqlite+aiosqlite:///{Path(tmp) / 'sessions.db'}" if sqlite else url
        assert target is not None
        prefix = f"p{uuid.uuid4().hex[:12]}_"

        async def make() -> SessionStore:
            store = DatabaseSessionStore(target, table_prefix=prefix, pool_size=5)
            await store.initialize()
            made.append(store)
            return store

        async def dump() -> bytes:
            if sqlite:
                return _files(Path(tmp))
            return await _sql_rows(made[0])

        try:
            yield RawBackend(name, make, dump)
        finally:
            for store in made:
                await store.close()
            if not sqlite:
                await drop_schema(target, table_prefix=prefix)


@asynccontextmanager
async def _redis(cluster: bool = False) -> AsyncIterator[RawBackend]:
    if cluster:
        from tests.stores.redis_cluster import shared_cluster

        url = shared_cluster().url
    else:
        require_redis()
        url = REDIS_URL
    prefix = f"lxpriv:{uuid.uuid4().hex[:12]}"
    made: list[CacheSessionStore] = []

    async def make() -> SessionStore:
        store = CacheSessionStore(url, key_prefix=prefix, pool_size=10, cluster=cluster)
        await store.initialize()
        made.append(store)
        return store

    async def dump() -> bytes:
        client = made[0].client
        out: list[bytes] = []
        async for key in client.scan_iter(match=f"{prefix}*", count=1000):
            name = key if isinstance(key, bytes) else str(key).encode()
            kind = await client.type(key)
            kind = kind.decode() if isinstance(kind, bytes) else kind
            if kind == "string":
                value: object = await client.get(key)
            elif kind == "hash":
                value = sorted((await client.hgetall(key)).items())
            elif kind == "list":
                value = await client.lrange(key, 0, -1)
            elif kind == "set":
                value = sorted(await client.smembers(key))
            elif kind == "zset":
                value = await client.zrange(key, 0, -1, withscores=True)
            elif kind == "stream":
                value = await client.xrange(key)
            else:
                value = kind
            out.append(name + b"\t" + repr(value).encode())  # one line per key
        # a cluster scans its nodes in no fixed order: compare sorted lines
        return b"\n".join(sorted(out))

    try:
        yield RawBackend("redis_cluster" if cluster else "redis", make, dump)
    finally:
        if made:
            keys = [k async for k in made[0].client.scan_iter(match=f"{prefix}*", count=1000)]
            for key in keys:
                await made[0].client.unlink(key)
        for store in made:
            await store.close()


def open_raw(name: str) -> AbstractAsyncContextManager[RawBackend]:
    """The raw backend called ``name`` (its server required)."""
    if name == "sqlite":
        return _sql("sqlite", None)
    if name == "postgres":
        require_postgres()
        return _sql("postgres", POSTGRES_URL)
    if name == "mariadb":
        require_mariadb()
        return _sql("mariadb", MARIADB_URL)
    return _redis(cluster=name == "redis_cluster")


RAW_BACKENDS = ["sqlite", "postgres", "mariadb", "redis", "redis_cluster"]
_MARKS = {
    "postgres": (pytest.mark.postgres,),
    "mariadb": (pytest.mark.mariadb,),
    "redis": (pytest.mark.redis,),
    "redis_cluster": (pytest.mark.redis,),
}
RAW_PARAMS = [pytest.param(n, id=n, marks=_MARKS.get(n, ())) for n in RAW_BACKENDS]


@pytest.fixture(params=RAW_PARAMS)
async def raw_backend(request: pytest.FixtureRequest) -> AsyncIterator[RawBackend]:
    """One durable backend with its raw dump."""
    async with open_raw(request.param) as backend:
        yield backend
