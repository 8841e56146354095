"""The branch cap's refusal on SQLite, PostgreSQL and MariaDB says what the in-memory
reference says: the session has reached ``max_branches_per_session`` (it said "already
has N branches" with N the limit, also when the session had more branches than that)."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionState, SessionStatus

from lexigram.ai.session.exceptions import SessionCapacityError
from lexigram.ai.session.stores.base import SessionStore
from lexigram.ai.session.stores.database import DatabaseSessionStore, drop_schema
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from tests.services import MARIADB_URL, POSTGRES_URL, require_mariadb, require_postgres

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def state(sid: str, **extra: Any) -> SessionState:
    return SessionState(
        session_id=sid,
        user_id="alice",
        status=SessionStatus.ACTIVE,
        created_at=T0,
        updated_at=T0,
        **extra,
    )


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    if request.param == "memory":
        yield InMemorySessionStore(clock=lambda: T0)
        return
    prefix = f"t{uuid.uuid4().hex[:12]}_"
    with tempfile.TemporaryDirectory(prefix="lexi-audit47-") as tmp:
        if request.param == "sqlite":
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'sessions.db'}"
        elif request.param == "postgres":
            require_postgres()
            url = POSTGRES_URL
        else:
            require_mariadb()
            url = MARIADB_URL
        sql = DatabaseSessionStore(url, table_prefix=prefix, pool_size=2, clock=lambda: T0)
        try:
            await sql.initialize()
            yield sql
        finally:
            await sql.close()
            if request.param != "sqlite":
                await drop_schema(url, table_prefix=prefix)


async def test_the_branch_cap_names_the_limit_not_a_count(store: SessionStore) -> None:
    await store.create_session(state("src"))
    for n in range(3):
        await store.fork_session(
            "src", state(f"b{n}", parent_session_id="src", branch_name=f"b{n}")
        )
    with pytest.raises(SessionCapacityError) as info:  # 3 branches, the limit lowered to 1
        await store.fork_session(
            "src", state("b9", parent_session_id="src", branch_name="b9"), max_branches=1
        )
    assert info.value.message == "session 'src' has reached max_branches_per_session=1"
