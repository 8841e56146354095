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


async def test_sqlite_prefixes_differing_in_case_name_the_same_tables(tmp_path: Path) -> None:
    """SQLite's table and index names are case-insensitive: ``chat_`` and ``Chat_`` are one
    set of tables. Opening the file with the second spelling failed ("index
    Chat_tombstones_until_ix already exists"); it now finds the tables and shares them."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'case.db'}"
    lower = DatabaseSessionStore(url, table_prefix="chat_")
    upper = DatabaseSessionStore(url, table_prefix="Chat_")
    try:
        await lower.initialize()
        state = SessionState(session_id="s1", user_id="u", status=SessionStatus.ACTIVE)
        await lower.create_session(state)
        await upper.initialize()
        await upper.initialize()
        record = await upper.load_record("s1")
        assert record is not None and record.state.user_id == "u"
        await upper.create_session(
            SessionState(session_id="s2", user_id="u", status=SessionStatus.ACTIVE)
        )
        assert await lower.load_record("s2") is not None
        await lower.initialize()  # and back: the first spelling still opens the file
    finally:
        await upper.close()
        async with lower.engine.begin() as conn:
            await conn.run_sync(drop_all, lower.schema)
        await lower.close()


async def test_mariadb_prefixes_differing_in_case_are_separate(mariadb_prefix: str) -> None:
    """MariaDB on Linux (``lower_case_table_names = 0``) keeps table names as written:
    ``t…_`` and ``T…_`` are two sets of tables."""
    from sqlalchemy import text

    upper_prefix = mariadb_prefix.capitalize()
    lower = DatabaseSessionStore(MARIADB_URL, table_prefix=mariadb_prefix)
    upper = DatabaseSessionStore(MARIADB_URL, table_prefix=upper_prefix)
    try:
        async with lower.engine.connect() as conn:
            folding = (await conn.execute(text("SELECT @@lower_case_table_names"))).scalar()
        if folding != 0:
            pytest.skip(f"this server folds table names (lower_case_table_names={folding})")
        await lower.initialize()
        await upper.initialize()
        state = SessionState(session_id="s1", user_id="u", status=SessionStatus.ACTIVE)
        await lower.create_session(state)
        assert await upper.load_record("s1") is None
        await upper.create_session(state)  # the same id: another table
        assert (await upper.load_record("s1")) is not None
    finally:
        async with upper.engine.begin() as conn:
            await conn.run_sync(drop_all, upper.schema)
        await upper.close()
        await lower.close()
