"""Fixtures shared by the store tests."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from lexigram.ai.session.stores.database import drop_schema
from tests.services import MARIADB_URL, POSTGRES_URL, require_mariadb, require_postgres


@pytest.fixture
def sqlite_url() -> Iterator[str]:
    """A SQLite file of this test alone."""
    with tempfile.TemporaryDirectory(prefix="lexi-sqltest-") as tmp:
        yield f"sqlite+aiosqlite:///{Path(tmp) / 'sessions.db'}"


@pytest.fixture(params=["redis", pytest.param("redis_cluster", marks=pytest.mark.cluster)])
def cluster(request: pytest.FixtureRequest) -> bool:
    """True for the local Redis Cluster, False for the single Redis server."""
    return bool(request.param == "redis_cluster")


async def _own_prefix(url: str) -> AsyncIterator[str]:
    """A table prefix of one test alone on ``url``, its tables dropped afterwards."""
    name = f"t{uuid.uuid4().hex[:12]}_"
    try:
        yield name
    finally:
        await drop_schema(url, table_prefix=name)


@pytest.fixture
async def mariadb_prefix() -> AsyncIterator[str]:
    """A MariaDB table prefix of this test alone, its tables dropped afterwards."""
    require_mariadb()
    async for name in _own_prefix(MARIADB_URL):
        yield name


@pytest.fixture
async def postgres_prefix() -> AsyncIterator[str]:
    """A PostgreSQL table prefix of this test alone, its tables dropped afterwards."""
    require_postgres()
    async for name in _own_prefix(POSTGRES_URL):
        yield name
