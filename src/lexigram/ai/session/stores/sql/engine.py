"""Engines for the SQL store: SQLite (aiosqlite) and PostgreSQL (asyncpg) set up for it.

SQLite connections run in autocommit mode (the store emits ``BEGIN IMMEDIATE`` /
``BEGIN`` itself), in WAL mode with ``synchronous=NORMAL`` and a busy timeout, so that
writers in several processes queue instead of failing. PostgreSQL connections carry
``application_name = lexigram-ai-session:<table_prefix>`` and a connect timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, StaticPool

from lexigram.ai.session.stores.loops import drop_transport
from lexigram.ai.session.stores.sql.urls import DatabaseURL

__all__ = [
    "PG_CONNECT_TIMEOUT_S",
    "SQLITE_AUTOCHECKPOINT_PAGES",
    "SQLITE_BUSY_TIMEOUT_S",
    "drop_driver_connection",
    "loop_agnostic",
    "make_engine",
    "track_connections",
]

#: How long a SQLite writer waits for another process's write transaction.
SQLITE_BUSY_TIMEOUT_S = 30.0
#: SQLite: the WAL size (pages) at which a commit checkpoints it (SQLite's default is
#: 1,000). Larger, a checkpoint copies a page that many commits wrote once, and the
#: process's writes wait for one ten times less often (each wait is longer).
SQLITE_AUTOCHECKPOINT_PAGES = 10_000
#: How long connecting to PostgreSQL may take before the store reports it unreachable.
PG_CONNECT_TIMEOUT_S = 10.0


def make_engine(url: DatabaseURL, *, pool_size: int, table_prefix: str) -> AsyncEngine:
    """An engine for ``url`` with a pool of ``pool_size`` (as many again under load)."""
    if url.is_sqlite:
        if url.is_memory:
            engine = create_async_engine(
                url.render(),
                poolclass=StaticPool,
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S},
            )
        else:
            engine = create_async_engine(
                url.render(),
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_reset_on_return=None,  # every operation ends its own transaction
                connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S},
            )
        install_sqlite_hooks(engine, wal=not url.is_memory)
        return engine
    if url.is_mysql:
        from lexigram.ai.session.stores.sql.mysql import make_mysql_engine

        return make_mysql_engine(url, pool_size=pool_size, table_prefix=table_prefix)
    app = f"lexigram-ai-session:{table_prefix}"[:63]
    return create_async_engine(
        url.render(),
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args={
            "timeout": PG_CONNECT_TIMEOUT_S,
            "server_settings": {"application_name": app},
        },
    )


def loop_agnostic(engine: AsyncEngine) -> bool:
    """Whether one engine may serve every event loop of the process.

    True when its pool keeps no connection between checkouts (``NullPool``) or
    holds exactly one and no wait queue (``StaticPool``, SQLite ``:memory:``, whose
    aiosqlite connection answers on whichever loop asks). Other pools keep
    connections bound to the loop that opened them: one engine per loop.
    """
    return isinstance(engine.sync_engine.pool, NullPool | StaticPool)


def track_connections(engine: AsyncEngine) -> weakref.WeakSet[Any]:
    """The driver connections ``engine`` opens from now on (weakly held)."""
    opened: weakref.WeakSet[Any] = weakref.WeakSet()

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        driver = getattr(dbapi_conn, "driver_connection", None)
        if driver is not None:
            opened.add(driver)

    return opened


def drop_driver_connection(driver: Any) -> None:
    """Close a driver connection whose event loop is gone, without touching that loop.

    asyncpg: its socket is closed and the connection marked aborted (so that
    neither asyncpg nor SQLAlchemy later tries to talk to the dead loop).
    aiosqlite: its worker thread closes the database and stops.
    """
    transport = getattr(driver, "_transport", None)
    if transport is not None and hasattr(driver, "thread_id"):  # asyncmy
        drop_transport(transport)
        with contextlib.suppress(Exception):
            driver._connected = False
        return
    if transport is not None:  # asyncpg
        drop_transport(transport)
        with contextlib.suppress(AttributeError):
            driver._aborted = True
        return
    stop = getattr(driver, "stop", None)
    if callable(stop):  # aiosqlite
        with contextlib.suppress(Exception):
            stop()


def install_sqlite_hooks(engine: AsyncEngine, *, wal: bool) -> None:
    """Autocommit driver mode (the store emits BEGIN itself), WAL, busy timeout."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            if wal:
                _ensure_wal(cursor)
                cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT_PAGES}")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Transactions SQLAlchemy itself opens (schema set-up) are write transactions.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _ensure_wal(cursor: Any) -> None:
    """Switch a database file to WAL (persistent; the first connection does it).

    Several connections opening a new file at once race for the switch, and SQLite
    answers the losers "database is locked" without waiting: they check whether the
    winner already switched, and otherwise try again shortly.
    """
    from sqlalchemy.util.concurrency import await_

    for attempt in range(50):
        cursor.execute("PRAGMA journal_mode")
        if str(cursor.fetchone()[0]).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:
            if "locked" not in str(exc).lower() or attempt == 49:
                raise
        await_(asyncio.sleep(0.01 * (attempt + 1)))
