"""Two SQL stores on one table prefix, one through a loopback ``FaultProxy``, for the
lost-reply tests (``test_sql_faults.py``, ``test_sql_audit47_lost_replies.py``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.stores.database import DatabaseSessionStore, drop_schema
from lexigram.ai.session.testing import FakeClock
from tests.faults.proxy import FaultProxy
from tests.services import MARIADB_URL, POSTGRES_URL, require_mariadb, require_postgres

T0 = datetime(2026, 1, 1, tzinfo=UTC)

#: The ``pair`` fixture's parameters: each server, marked for its service.
SERVER_PARAMS = [
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", marks=pytest.mark.mariadb),
]

#: Each server: (URL straight to it, its port, the URL through a proxy on ``{port}``).
SERVERS = {
    "postgres": (POSTGRES_URL, 5432, "postgresql+asyncpg://postgres@127.0.0.1:{port}/test"),
    "mariadb": (MARIADB_URL, 3306, "mysql+asyncmy://root@127.0.0.1:{port}/test"),
}


def COMMIT(request: bytes) -> bool:
    """PostgreSQL's ``COMMIT;`` or MariaDB's ``COMMIT`` query (not ``READ COMMITTED``)."""
    return b"COMMIT;" in request or request.endswith(b"\x03COMMIT")


def turn(n: int) -> SessionTurn:
    """A turn whose id is unique in the whole database (the proxy matches on it)."""
    return SessionTurn(
        turn_id=f"turn-{n}-{uuid.uuid4().hex}",
        role="user",
        content=f"message {n}",
        timestamp=T0 + timedelta(seconds=n),
        tokens_used=2,
        cost=0.25,
    )


def header(user: str | None = None) -> SessionState:
    """A new ACTIVE session at T0 (of a new user unless ``user`` is given)."""
    return SessionState(
        session_id=f"s-{uuid.uuid4().hex}",
        user_id=user or f"u-{uuid.uuid4().hex[:8]}",
        status=SessionStatus.ACTIVE,
        created_at=T0,
        updated_at=T0,
    )


@dataclass
class Pair:
    """A store through the proxy, one straight to the server, the proxy and the clock."""

    proxied: DatabaseSessionStore
    direct: DatabaseSessionStore
    proxy: FaultProxy
    clock: FakeClock
    url: str  # the proxied store's URL


@asynccontextmanager
async def open_pair(server: str, ttl: int) -> AsyncIterator[Pair]:
    """Two stores on one random table prefix; the proxied one goes through a FaultProxy."""
    require_postgres() if server == "postgres" else require_mariadb()
    direct_url, port, proxied_url = SERVERS[server]
    prefix = f"t{uuid.uuid4().hex[:12]}_"
    clock = FakeClock(T0)
    direct = DatabaseSessionStore(
        direct_url, table_prefix=prefix, pool_size=2, session_ttl=ttl, clock=clock
    )
    try:
        await direct.initialize()
        async with FaultProxy("127.0.0.1", port) as proxy:
            url = proxied_url.format(port=proxy.port)
            proxied = DatabaseSessionStore(
                url, table_prefix=prefix, pool_size=2, session_ttl=ttl, clock=clock
            )
            try:
                await proxied.initialize()
                yield Pair(proxied, direct, proxy, clock, url)
            finally:
                await proxied.close()
    finally:
        await direct.close()
        await drop_schema(direct_url, table_prefix=prefix)
