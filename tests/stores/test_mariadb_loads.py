"""MariaDB: ``get_state`` (``load``) through the load procedure, and without it.

The procedure (``stores/sql/mysql_routines.py``) runs the snapshot read on the server
(header, then the live turns, in one consistent snapshot) and returns both to one
``CALL``. Held here: it is created and dropped with the tables and added to tables
made before it existed; what it returns equals the snapshot read the client sends
itself; a damaged turn is named; a session that is gone reads as None; and when the
procedure is missing or may not be executed, ``load`` reads as before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from lexigram.ai.session.exceptions import CorruptRecordError
from lexigram.ai.session.stores.database import DatabaseSessionStore, drop_schema
from lexigram.ai.session.stores.sql import mysql
from lexigram.ai.session.stores.sql import ops_sessions as ses
from lexigram.ai.session.stores.sql.mysql_routines import (
    create_load_procedure,
    load_call,
    load_procedure,
)
from tests.services import MARIADB_URL, require_mariadb
from tests.stores.test_mariadb_appends import (
    TABLE_PRIVILEGES,
    _prefix,
    _sql,
    database_user,
    header,
    opened,
    procedure_exists,
    turn,
)

pytestmark = pytest.mark.mariadb


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A table prefix of this test alone, dropped afterwards."""
    require_mariadb()
    name = _prefix()
    try:
        yield name
    finally:
        await drop_schema(MARIADB_URL, table_prefix=name)


async def _load_exists(prefix: str) -> bool:
    return await procedure_exists(load_procedure(prefix))


def _called(store: DatabaseSessionStore, prefix: str) -> bool:
    """Whether ``store`` still calls the load procedure of ``prefix`` (in this process)."""
    return store._runner.may_call(load_call(prefix))


async def _snapshot_read(store: DatabaseSessionStore, session_id: str) -> Any:
    """The read the client sends itself (five statements in one snapshot)."""
    return await store._read(ses.load, session_id, snapshot=True)


class _Statements:
    """Counts what the store sends besides procedure calls (transaction control included)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[str] = []
        exec_, raw = mysql.MyTx._exec, mysql.MyTx.raw

        async def counted_exec(tx: Any, sql: str, params: Any, fetch: bool) -> Any:
            self.sent.append(sql)
            return await exec_(tx, sql, params, fetch)

        async def counted_raw(tx: Any, sql: str) -> None:
            self.sent.append(sql)
            await raw(tx, sql)

        monkeypatch.setattr(mysql.MyTx, "_exec", counted_exec)
        monkeypatch.setattr(mysql.MyTx, "raw", counted_raw)


async def test_the_load_procedure_is_created_with_the_tables_and_dropped_with_them(
    prefix: str,
) -> None:
    assert not await _load_exists(prefix)
    async with opened(prefix) as store:
        assert await _load_exists(prefix)
        await store.initialize()  # again: kept, no error
    await drop_schema(MARIADB_URL, table_prefix=prefix)
    assert not await _load_exists(prefix)


async def test_tables_made_before_the_load_procedure_get_it_on_initialize(prefix: str) -> None:
    async with opened(prefix):
        pass
    await _sql(f"DROP PROCEDURE {load_procedure(prefix)}")
    async with opened(prefix) as store:
        assert await _load_exists(prefix)
        state = header()
        await store.create_session(state)
        await store.append_turns(state.session_id, [turn(1)])
        loaded = await store.load(state.session_id)
        assert loaded is not None and [t.turn_id for t in loaded.turns] == ["t1"]
        assert _called(store, prefix)


async def test_get_state_is_one_call_and_equals_the_snapshot_read(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with opened(prefix) as store:
        empty, full = header(), header()
        await store.create_session(empty)
        await store.create_session(full)
        await store.append_turns(full.session_id, [turn(n) for n in range(1, 8)])
        await store.pop_turn(full.session_id)  # a turn that is no longer live
        sent = _Statements(monkeypatch)
        for sid in (empty.session_id, full.session_id):
            loaded = await store.load(sid)
            assert loaded is not None
            assert sent.sent == []  # no START TRANSACTION, SELECT or COMMIT of ours
            assert loaded == await _snapshot_read(store, sid)
            sent.sent.clear()
        loaded = await store.load(full.session_id)
        assert loaded is not None
        assert [t.turn_id for t in loaded.turns] == [f"t{n}" for n in range(1, 7)]
        assert loaded.turn_count == 6
        assert await store.load("no-such-session") is None
        assert sent.sent == []
        assert _called(store, prefix)


async def test_a_damaged_turn_is_named(prefix: str) -> None:
    async with opened(prefix) as store:
        state = header()
        await store.create_session(state)
        await store.append_turns(state.session_id, [turn(1), turn(2)])
        await _sql(
            f"UPDATE {prefix}turns SET data = '{{\"turn_id\": 7' WHERE session_id = %s AND seq = 2",
            state.session_id,
        )
        with pytest.raises(CorruptRecordError) as info:
            await store.load(state.session_id)
        assert state.session_id in str(info.value)
        assert _called(store, prefix)


async def test_without_the_procedure_get_state_reads_as_before(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with opened(prefix) as store:
        state = header()
        await store.create_session(state)
        await store.append_turns(state.session_id, [turn(1), turn(2)])
        await _sql(f"DROP PROCEDURE {load_procedure(prefix)}")
        loaded = await store.load(state.session_id)
        assert loaded is not None and [t.turn_id for t in loaded.turns] == ["t1", "t2"]
        assert not _called(store, prefix)  # not asked again in this process
        calls: list[str] = []
        call_sets = mysql.MyTx.call_sets

        async def counted(tx: Any, sql: str, params: Any = None) -> Any:
            calls.append(sql)
            return await call_sets(tx, sql, params)

        monkeypatch.setattr(mysql.MyTx, "call_sets", counted)
        assert await store.load(state.session_id) == loaded
        assert calls == []  # no connection taken for a call known to fail


async def test_a_user_who_may_not_execute_the_procedure_reads_without_it(prefix: str) -> None:
    async with opened(prefix):
        pass
    assert await _load_exists(prefix)
    async with database_user(*TABLE_PRIVILEGES) as url, opened(prefix, url=url) as store:
        state = header()
        await store.create_session(state)
        await store.append_turns(state.session_id, [turn(1)])
        loaded = await store.load(state.session_id)
        assert loaded is not None and [t.turn_id for t in loaded.turns] == ["t1"]
        assert not _called(store, prefix)


def test_the_procedure_reads_in_one_snapshot() -> None:
    body = create_load_procedure("p_")
    start = body.index("START TRANSACTION WITH CONSISTENT SNAPSHOT")
    assert body.index("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ") < start
    assert start < body.index("FROM p_sessions") < body.index("FROM p_turns")
    assert body.index("FROM p_turns") < body.index("COMMIT")
