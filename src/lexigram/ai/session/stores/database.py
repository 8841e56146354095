"""``DatabaseSessionStore``: sessions in SQL (SQLite by default, PostgreSQL).

The implementation lives in :mod:`lexigram.ai.session.stores.sql`; this module is the
import point, plus :func:`setup_schema` and :func:`drop_schema` for tooling (the CLI).
"""

from __future__ import annotations

from lexigram.ai.session.stores.sql.schema import SCHEMA_VERSION, drop_all
from lexigram.ai.session.stores.sql.store import DEFAULT_URL, DatabaseSessionStore
from lexigram.ai.session.stores.sql.urls import normalise_url

__all__ = ["DEFAULT_URL", "SCHEMA_VERSION", "DatabaseSessionStore", "drop_schema", "setup_schema"]


async def setup_schema(url: str, *, table_prefix: str = "ai_session_") -> None:
    """Create (or upgrade in place) the session tables of ``table_prefix`` at ``url``."""
    store = DatabaseSessionStore(url, table_prefix=table_prefix, pool_size=1)
    try:
        await store.initialize()
    finally:
        await store.close()


async def drop_schema(url: str, *, table_prefix: str = "ai_session_") -> None:
    """Drop every session table of ``table_prefix`` at ``url``. Destroys the data."""
    normalise_url(url)
    store = DatabaseSessionStore(url, table_prefix=table_prefix, pool_size=1)
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(drop_all, store.schema)
    finally:
        await store.close()
