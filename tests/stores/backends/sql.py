"""The SQL backends for the conformance suite: SQLite (temp file), PostgreSQL, MariaDB.

SQLite gets a fresh database file per test; PostgreSQL and MariaDB a random table prefix
per test,
whose tables are dropped at the end. Every store the factory made is closed.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from lexigram.ai.session.stores.base import SessionStore
from lexigram.ai.session.stores.database import DatabaseSessionStore, drop_schema
from tests.services import MARIADB_URL, POSTGRES_URL, require_mariadb, require_postgres

from . import BackendSpec, StoreFactory


@asynccontextmanager
async def _stores(url: str, prefix: str) -> AsyncIterator[tuple[StoreFactory, list[SessionStore]]]:
    made: list[SessionStore] = []

    async def factory() -> DatabaseSessionStore:
        store = DatabaseSessionStore(url, table_prefix=prefix, pool_size=5)
        await store.initialize()
        made.append(store)
        return store

    try:
        yield factory, made
    finally:
        for store in made:
            await store.close()


@asynccontextmanager
async def open_sqlite() -> AsyncIterator[StoreFactory]:
    """Stores on a new SQLite file in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="lexi-sql-") as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'sessions.db'}"
        async with _stores(url, "ai_session_") as (factory, _):
            yield factory


def random_prefix() -> str:
    """A table prefix no other test uses."""
    return f"t{uuid.uuid4().hex[:12]}_"


@asynccontextmanager
async def open_postgres() -> AsyncIterator[StoreFactory]:
    """Stores on the shared PostgreSQL under a random table prefix, dropped afterwards."""
    require_postgres()
    prefix = random_prefix()
    try:
        async with _stores(POSTGRES_URL, prefix) as (factory, _):
            yield factory
    finally:
        await drop_schema(POSTGRES_URL, table_prefix=prefix)


@asynccontextmanager
async def open_mariadb() -> AsyncIterator[StoreFactory]:
    """Stores on the shared MariaDB under a random table prefix, dropped afterwards."""
    require_mariadb()
    prefix = random_prefix()
    try:
        async with _stores(MARIADB_URL, prefix) as (factory, _):
            yield factory
    finally:
        await drop_schema(MARIADB_URL, table_prefix=prefix)


async def corrupt(store: SessionStore, session_id: str) -> None:
    """Damage the stored header (invalid JSON in ``metadata``)."""
    assert isinstance(store, DatabaseSessionStore)
    async with store.engine.begin() as conn:
        table = f"{store.table_prefix}sessions"
        await conn.execute(
            text(f"UPDATE {table} SET metadata = :bad WHERE session_id = :sid"),
            {"bad": "{not json", "sid": session_id},
        )


SPECS = [
    BackendSpec(name="sqlite", open=open_sqlite, corrupt=corrupt),
    BackendSpec(
        name="postgres",
        open=open_postgres,
        marks=(pytest.mark.postgres,),
        corrupt=corrupt,
    ),
    BackendSpec(
        name="mariadb",
        open=open_mariadb,
        marks=(pytest.mark.mariadb,),
        corrupt=corrupt,
    ),
]
