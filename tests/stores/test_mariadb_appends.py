"""MariaDB: appends of one or two turns through the stored procedure, and without it.

The procedure (``stores/sql/mysql_routines.py``) is created and dropped with the
tables; an append of one or two turns calls it, and runs the compound statement it
stands for when the procedure is missing, may not be executed, or could not be
created. Both paths are held to the same outcomes here (``path`` parameter): costs
added turn by turn, the cap closing the session, deadlines and ``updated_at`` that
never move backwards, a deadline judged after a lock wait, a live duplicate that
leaves nothing written, and the tables of the right prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncmy
import pytest
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.exceptions import (
    DuplicateTurnError,
    SessionExpiredError,
    TurnLimitReachedError,
)
from lexigram.ai.session.stores.database import DatabaseSessionStore, drop_schema
from lexigram.ai.session.stores.sql.mysql import translate
from lexigram.ai.session.stores.sql.mysql_routines import (
    APPEND_SLOTS,
    append_procedure,
    create_append_procedure,
)
from lexigram.ai.session.testing.support import FakeClock, make_state
from tests.services import MARIADB_URL, require_mariadb

pytestmark = pytest.mark.mariadb

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TTL = 60


def turn(n: int, **extra: Any) -> SessionTurn:
    """A turn numbered ``n``."""
    fields: dict[str, Any] = {
        "turn_id": f"t{n}",
        "role": "user",
        "content": f"message {n} ünïcødé '\\\" %s",
        "timestamp": T0 + timedelta(seconds=n),
        "tokens_used": 2,
        "cost": 0.25,
    }
    fields.update(extra)
    return SessionTurn(**fields)


def header() -> SessionState:
    """A new ACTIVE session at T0."""
    return make_state(created_at=T0, updated_at=T0)


def _prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}_"


def _url(user: str = "root", password: str = "") -> str:
    auth = f"{user}:{password}" if password else user
    return MARIADB_URL.replace("root@", f"{auth}@", 1)


async def _driver(url: str = MARIADB_URL) -> Any:
    """A plain asyncmy connection in autocommit mode (the server's default sql_mode)."""
    from lexigram.ai.session.stores.sql.urls import normalise_url

    u = normalise_url(url).url
    return await asyncmy.connect(
        host=u.host,
        port=u.port or 3306,
        user=u.username,
        password=u.password or "",
        db=u.database,
        autocommit=True,
    )


async def _sql(sql: str, *args: Any) -> list[Any]:
    conn = await _driver()
    try:
        async with conn.cursor() as cur:
            await cur.execute(sql, args or None)
            return list(await cur.fetchall())
    finally:
        conn.close()


async def procedure_exists(name: str) -> bool:
    """Whether the test database has a procedure called ``name``."""
    rows = await _sql(
        "SELECT 1 FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE() "
        "AND ROUTINE_NAME = %s",
        name,
    )
    return bool(rows)


async def _routine_exists(prefix: str) -> bool:
    return await procedure_exists(append_procedure(prefix))


def _calls(store: DatabaseSessionStore) -> bool:
    """Whether appends of 1..APPEND_SLOTS turns still call the procedure in this process."""
    turns = store._ctx().q.turns
    return all(
        translate(turns.append_rows(n, False)).kind == "call" for n in range(1, APPEND_SLOTS + 1)
    )


@contextlib.asynccontextmanager
async def opened(
    prefix: str,
    clock: FakeClock | None = None,
    *,
    url: str = MARIADB_URL,
    ttl: int = TTL,
    path: str = "procedure",
) -> AsyncIterator[DatabaseSessionStore]:
    """An initialised store on ``prefix`` with a test clock.

    ``path="statement"``: the procedure is dropped once the store is initialised, so
    the store's appends find it missing and run the compound statement.
    """
    store = DatabaseSessionStore(
        url, table_prefix=prefix, pool_size=3, session_ttl=ttl, clock=clock or FakeClock(T0)
    )
    await store.initialize()
    if path == "statement":
        await _sql(f"DROP PROCEDURE IF EXISTS {append_procedure(prefix)}")
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A table prefix of this test alone, dropped afterwards."""
    require_mariadb()
    name = _prefix()
    try:
        yield name
    finally:
        await drop_schema(MARIADB_URL, table_prefix=name)


@pytest.fixture(params=["procedure", "statement"])
def path(request: pytest.FixtureRequest) -> str:
    """Which way the appends go (see :func:`opened`)."""
    param: str = request.param
    return param


def _expect_path(store: DatabaseSessionStore, path: str) -> None:
    assert _calls(store) == (path == "procedure")


# --------------------------------------------------------------- the routine
def test_case_distinct_prefixes_get_distinct_procedures() -> None:
    names = {append_procedure(p) for p in ("ab_", "Ab_", "AB_", "aB_")}
    assert len({n.lower() for n in names}) == 4
    assert all(len(n) <= 64 for n in map(append_procedure, ["a" * 31]))


async def test_the_procedure_is_created_with_the_tables_and_dropped_with_them(
    prefix: str,
) -> None:
    assert not await _routine_exists(prefix)
    async with opened(prefix) as store:
        assert await _routine_exists(prefix)
        await store.initialize()  # again: the procedure is kept, no error
        state = header()
        await store.create_session(state)
        await store.append_turns(state.session_id, [turn(1)])
        await store.append_turns(state.session_id, [turn(2), turn(3)])
        assert _calls(store)
    await drop_schema(MARIADB_URL, table_prefix=prefix)
    assert not await _routine_exists(prefix)


async def test_tables_of_case_distinct_prefixes_are_kept_apart() -> None:
    require_mariadb()
    lower = _prefix()
    upper = lower[0].upper() + lower[1:]
    try:
        async with opened(lower) as a, opened(upper) as b:
            sa, sb = header(), header()
            await a.create_session(sa)
            await b.create_session(sb)
            await a.append_turns(sa.session_id, [turn(1), turn(2)])
            await b.append_turns(sb.session_id, [turn(3)])
            assert [t.turn_id for t in await a.get_turns(sa.session_id)] == ["t1", "t2"]
            assert [t.turn_id for t in await b.get_turns(sb.session_id)] == ["t3"]
            assert _calls(a) and _calls(b)
    finally:
        await drop_schema(MARIADB_URL, table_prefix=lower)
        await drop_schema(MARIADB_URL, table_prefix=upper)


async def test_the_procedure_does_not_depend_on_the_sql_mode_it_was_created_with(
    prefix: str,
) -> None:
    async with opened(prefix):
        pass
    # Created again from a connection without SIMULTANEOUS_ASSIGNMENT.
    await _sql(f"DROP PROCEDURE {append_procedure(prefix)}")
    await _sql(create_append_procedure(prefix))
    async with opened(prefix) as store:
        state = header()
        await store.create_session(state)
        await store.append_turns(state.session_id, [turn(1)])
        result = await store.append_turns(state.session_id, [turn(2), turn(3)], max_turns=3)
        assert _calls(store)
        assert result.closed_by_cap and result.first_seq == 2
        record = result.record
        assert record.state.status == SessionStatus.CLOSED and record.expires_at is None
        assert (record.state.turn_count, record.last_seq, record.state.total_tokens) == (3, 3, 6)


# ------------------------------------------------------------------ outcomes
async def test_costs_are_added_turn_by_turn(prefix: str, path: str) -> None:
    # 1e16 + 1 rounds back to 1e16 (twice); 1e16 + (1 + 1) would not.
    async with opened(prefix, path=path) as store:
        state = header()
        await store.create_session(state)
        await store.append_turns(state.session_id, [turn(1, cost=1e16)])
        result = await store.append_turns(state.session_id, [turn(2, cost=1.0), turn(3, cost=1.0)])
        assert result.record.state.total_cost == 1e16
        assert result.first_seq == 2 and result.record.last_seq == 3
        record = await store.load_record(state.session_id)
        assert record is not None and record.state.total_cost == 1e16
        stored = await store.get_turns(state.session_id)
        assert [t.cost for t in stored] == [1e16, 1.0, 1.0]
        assert stored[0].content == turn(1).content
        _expect_path(store, path)


async def test_the_cap_closes_the_session(prefix: str, path: str) -> None:
    async with opened(prefix, path=path) as store:
        state = header()
        await store.create_session(state)
        first = await store.append_turns(state.session_id, [turn(1)], max_turns=3)
        assert not first.closed_by_cap and first.record.expires_at is not None
        result = await store.append_turns(state.session_id, [turn(2), turn(3)], max_turns=3)
        assert result.closed_by_cap
        assert result.record.state.status == SessionStatus.CLOSED
        assert result.record.expires_at is None
        with pytest.raises(TurnLimitReachedError, match="max_turns_per_session=3"):
            await store.append_turns(state.session_id, [turn(4)], max_turns=3)
        record = await store.load_record(state.session_id)
        assert record is not None and record.state.turn_count == 3
        assert [t.turn_id for t in await store.get_turns(state.session_id)] == ["t1", "t2", "t3"]
        _expect_path(store, path)


async def test_updated_at_and_the_deadline_never_move_backwards(prefix: str, path: str) -> None:
    ahead, behind = FakeClock(T0 + timedelta(seconds=30)), FakeClock(T0 + timedelta(seconds=10))
    async with opened(prefix, ahead, path=path) as first, opened(prefix, behind, path=path) as late:
        state = header()
        await first.create_session(state)
        await first.append_turns(state.session_id, [turn(1)])
        result = await late.append_turns(state.session_id, [turn(2), turn(3)])
        assert result.record.state.updated_at == T0 + timedelta(seconds=30)
        assert result.record.expires_at == T0 + timedelta(seconds=30 + TTL)
        ahead.advance(5)
        moved = await first.append_turns(state.session_id, [turn(4)])
        assert moved.record.state.updated_at == T0 + timedelta(seconds=35)
        assert moved.record.expires_at == T0 + timedelta(seconds=35 + TTL)
        _expect_path(first, path)


async def test_a_live_duplicate_leaves_nothing_written(prefix: str, path: str) -> None:
    async with opened(prefix, path=path) as store:
        state = header()
        await store.create_session(state)
        await store.append_turns(state.session_id, [turn(1)])
        for batch in ([turn(1)], [turn(2), turn(1)]):
            with pytest.raises(DuplicateTurnError):
                await store.append_turns(state.session_id, batch)
        record = await store.load_record(state.session_id)
        assert record is not None
        assert (record.state.turn_count, record.last_seq, record.state.total_cost) == (1, 1, 0.25)
        assert [t.turn_id for t in await store.get_turns(state.session_id)] == ["t1"]
        await store.append_turns(state.session_id, [turn(2)])
        assert [t.turn_id for t in await store.get_turns(state.session_id)] == ["t1", "t2"]
        _expect_path(store, path)


@contextlib.asynccontextmanager
async def held_header(prefix: str, session_id: str) -> AsyncIterator[None]:
    """Hold the header row of ``session_id`` locked from another connection."""
    conn = await _driver()
    try:
        async with conn.cursor() as cur:
            await cur.execute("START TRANSACTION")
            await cur.execute(
                f"SELECT 1 FROM {prefix}sessions WHERE session_id = %s FOR UPDATE", (session_id,)
            )
            await cur.fetchall()
        try:
            yield
        finally:
            async with conn.cursor() as cur:
                await cur.execute("ROLLBACK")
    finally:
        conn.close()


async def _queued(prefix: str, task: asyncio.Task[Any]) -> None:
    """Until the append waits for the held header: a transaction in ``LOCK WAIT``, or a
    statement on the prefix's headers running for a second (``INNODB_TRX`` does not
    always list a waiting prepared statement's transaction).

    ``INNODB_TRX`` is a cache that InnoDB refreshes at most every 0.1 s, so it can
    still show a lock wait that ended a moment ago (the earlier append of the same
    test): a wait counts once it is seen again more than 0.1 s later. This query is
    left out of the statements it counts (its own text holds the pattern, and
    ``TIME`` counts whole seconds).
    """
    seen = False
    for _ in range(250):
        assert not task.done(), "the append did not wait for the held header"
        rows = await _sql(
            "SELECT (SELECT count(*) FROM information_schema.INNODB_TRX "
            "WHERE trx_state = 'LOCK WAIT') + (SELECT count(*) FROM "
            "information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() "
            "AND COMMAND IN ('Query', 'Execute') AND TIME >= 1 AND INFO LIKE %s)",
            f"%{prefix}sessions%",
        )
        if rows[0][0] > 0 and seen:
            return
        seen = rows[0][0] > 0
        await asyncio.sleep(0.15 if seen else 0.02)
    pytest.fail("the append never waited for the held header")


async def test_a_held_header_is_waited_for_and_the_deadline_judged_after(
    prefix: str, path: str
) -> None:
    clock = FakeClock(T0)
    async with opened(prefix, clock, path=path) as store:
        late, in_time = header(), header()
        for state in (late, in_time):
            await store.create_session(state)
            await store.append_turns(state.session_id, [turn(1)])
        clock.advance(TTL - 1)
        async with held_header(prefix, in_time.session_id):
            task = asyncio.create_task(store.append_turns(in_time.session_id, [turn(2)]))
            await _queued(prefix, task)
        result = await task  # one second before its deadline: applied
        assert result.record.state.turn_count == 2
        assert result.record.expires_at == T0 + timedelta(seconds=2 * TTL - 1)
        async with held_header(prefix, late.session_id):
            task = asyncio.create_task(store.append_turns(late.session_id, [turn(2), turn(3)]))
            await _queued(prefix, task)
            clock.advance(2)  # the deadline passes while the append waits
        with pytest.raises(SessionExpiredError):
            await task
        assert [t.turn_id for t in await store.get_turns(late.session_id)] == ["t1"]
        record = await store.load_record(late.session_id)
        assert record is not None and record.state.status == SessionStatus.EXPIRED
        assert record.state.turn_count == 1 and record.state.updated_at == T0
        _expect_path(store, path)


async def test_an_update_held_past_the_deadline_is_refused(prefix: str, path: str) -> None:
    """An update queued on a held header judges the deadline after the wait, as appends do."""
    from lexigram.ai.session.stores.base import SessionPatch

    clock = FakeClock(T0)
    async with opened(prefix, clock, path=path) as store:
        late = header()
        await store.create_session(late)
        clock.advance(TTL - 1)
        async with held_header(prefix, late.session_id):
            patch = SessionPatch(variables={"late": 1})
            task = asyncio.create_task(store.update_session(late.session_id, patch))
            await _queued(prefix, task)
            clock.advance(2)  # the deadline passes while the update waits
        with pytest.raises(SessionExpiredError):
            await task
        record = await store.load_record(late.session_id)
        assert record is not None and record.state.status == SessionStatus.EXPIRED
        assert record.state.variables == {} and record.state.updated_at == T0


# ------------------------------------------------------------------ refusals
@contextlib.asynccontextmanager
async def database_user(*privileges: str) -> AsyncIterator[str]:
    """A user with ``privileges`` on the test database; its URL."""
    name = f"lx{uuid.uuid4().hex[:10]}"
    password = uuid.uuid4().hex
    rows = await _sql("SELECT DATABASE()")
    await _sql(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'")
    await _sql(f"CREATE USER '{name}'@'localhost' IDENTIFIED BY '{password}'")
    try:
        for host in ("%", "localhost"):
            await _sql(f"GRANT {', '.join(privileges)} ON `{rows[0][0]}`.* TO '{name}'@'{host}'")
        yield _url(name, password)
    finally:
        await _sql(f"DROP USER IF EXISTS '{name}'@'%'")
        await _sql(f"DROP USER IF EXISTS '{name}'@'localhost'")


TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "INDEX", "ALTER")


async def test_a_user_who_may_not_create_routines_appends_without_one(prefix: str) -> None:
    async with database_user(*TABLE_PRIVILEGES) as url, opened(prefix, url=url) as store:
        assert not await _routine_exists(prefix)
        state = header()
        await store.create_session(state)
        await store.append_turns(state.session_id, [turn(1)])
        result = await store.append_turns(state.session_id, [turn(2), turn(3)])
        assert result.first_seq == 2 and result.record.state.turn_count == 3
        assert not _calls(store)


async def test_a_user_who_may_not_execute_the_procedure_appends_without_it(prefix: str) -> None:
    async with opened(prefix):
        pass
    assert await _routine_exists(prefix)
    async with database_user(*TABLE_PRIVILEGES) as url, opened(prefix, url=url) as store:
        state = header()
        await store.create_session(state)
        result = await store.append_turns(state.session_id, [turn(1), turn(2)])
        assert result.record.state.turn_count == 2
        assert [t.turn_id for t in await store.get_turns(state.session_id)] == ["t1", "t2"]
        assert not _calls(store)
