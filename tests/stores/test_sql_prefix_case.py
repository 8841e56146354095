"""A table prefix with capitals works on every SQL dialect (PostgreSQL folds it)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from lexigram.contracts.ai.session import SessionState, SessionStatus

from lexigram.ai.session.stores.database import DatabaseSessionStore
from lexigram.ai.session.stores.sql.schema import drop_all
from tests.services import MARIADB_URL, POSTGRES_URL, require_mariadb, require_postgres


async def _round_trip(store: DatabaseSessionStore) -> None:
    await store.initialize()
    await store.initialize()  # a second start finds the tables it made
    try:
        sid = "s-" + uuid.uuid4().hex
        state = SessionState(session_id=sid, user_id="u", status=SessionStatus.ACTIVE)
        await store.create_session(state)
        record = await store.load_record(state.session_id)
        assert record is not None and record.state.user_id == "u"
    finally:
        async with store.engine.begin() as conn:
            await conn.run_sync(drop_all, store.schema)
        await store.close()


async def test_postgres_takes_a_prefix_with_capitals() -> None:
    require_postgres()
    prefix = "Chat" + uuid.uuid4().hex[:6] + "_"
    store = DatabaseSessionStore(POSTGRES_URL, table_prefix=prefix)
    # The statements' unquoted names are folded by PostgreSQL; so are the tables.
    assert store.table_prefix == prefix.lower()
    await _round_trip(store)


async def test_mariadb_and_sqlite_keep_the_prefix_as_written(tmp_path: Path) -> None:
    prefix = "Chat" + uuid.uuid4().hex[:6] + "_"
    sqlite = DatabaseSessionStore(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}", table_prefix=prefix)
    assert sqlite.table_prefix == prefix
    await _round_trip(sqlite)
    require_mariadb()
    mariadb = DatabaseSessionStore(MARIADB_URL, table_prefix=prefix)
    assert mariadb.table_prefix == prefix
    await _round_trip(mariadb)


@pytest.mark.parametrize("prefix", ["1bad_", "bad-prefix", ""])
def test_a_bad_prefix_is_refused_before_any_connection(prefix: str) -> None:
    from lexigram.ai.session.exceptions import SessionValidationError

    with pytest.raises(SessionValidationError) as info:
        DatabaseSessionStore(POSTGRES_URL, table_prefix=prefix)
    assert info.value.field == "table_prefix"
