"""The ``backend`` fixture: every store backend, each on a fresh namespace."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from tests.loops.support import Backend, Worker, join, redis_backend, sql_backend
from tests.services import (
    MARIADB_URL,
    POSTGRES_URL,
    REDIS_URL,
    require_mariadb,
    require_postgres,
    require_redis,
)

NAMES = [
    "in_memory", "sqlite", "sqlite_memory", "postgres", "mariadb", "redis", "redis_cluster"
]


def build(name: str, tmp: Path) -> Backend:
    """The backend called ``name`` (skipped or, with CI=true, failed without its server)."""
    prefix = f"lp{uuid.uuid4().hex[:10]}_"
    if name == "in_memory":
        return Backend(name=name, make=InMemorySessionStore)
    if name == "sqlite":
        path = tmp / "sessions.db"
        return sql_backend(name, f"sqlite+aiosqlite:///{path}", prefix, files=path)
    if name == "sqlite_memory":
        return sql_backend(name, "sqlite+aiosqlite:///:memory:", prefix)
    if name == "postgres":
        require_postgres()
        return sql_backend(name, POSTGRES_URL, prefix)
    if name == "mariadb":
        require_mariadb()
        return sql_backend(name, MARIADB_URL, prefix)
    if name == "redis":
        require_redis()
        return redis_backend(name, REDIS_URL, {6379}, cluster=False)
    from tests.stores.redis_cluster import shared_cluster

    cluster = shared_cluster()
    return redis_backend(name, cluster.url, set(cluster.ports), cluster=True)


@pytest.fixture(params=NAMES)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """One backend; its namespace (tables, keys) is dropped afterwards."""
    with tempfile.TemporaryDirectory(prefix="lexi-loops-") as tmp:
        made = build(request.param, Path(tmp))
        try:
            yield made
        finally:
            if made.cleanup is not None:
                # On its own loop and bounded: after a hang, a stuck connection of the
                # test may hold locks that would make dropping the tables wait forever.
                await join(Worker(made.cleanup).start())
