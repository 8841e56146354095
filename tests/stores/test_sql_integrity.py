"""What the SQL store keeps true at the edges, on SQLite and PostgreSQL.

* Expiry is final: a write that waited for the write lock past the deadline is
  refused, and ``updated_at``/``expires_at`` never move backwards.
* Numbers: tokens within ``0..2**53-1``, costs finite and ``>= 0``, totals exact
  sums over the live turns, refused before anything is written, naming the field.
* A caller's second append of the same turn is a duplicate (only the runner's own
  re-send after a lost commit reply returns the first outcome).
* Damaged records: the sweeper can quarantine them, listings report them.
* Checkpoints are listed by creation time; ids and text that cannot be stored are
  refused naming the field.

Every test asserts what is stored afterwards. The clock is a test clock.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from lexigram.contracts.ai.session import (
    SessionCheckpoint,
    SessionState,
    SessionStatus,
    SessionTurn,
)
from sqlalchemy import text

from lexigram.ai.session.exceptions import (
    CheckpointNotFoundError,
    CorruptRecordError,
    DuplicateTurnError,
    SessionClosedError,
    SessionError,
    SessionExpiredError,
    SessionValidationError,
)
from lexigram.ai.session.stores.base import SessionPatch
from lexigram.ai.session.stores.database import DatabaseSessionStore, drop_schema
from lexigram.ai.session.validation import MAX_SAFE_INT
from tests.services import POSTGRES_URL, require_postgres

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TTL = 60
LIVE = frozenset({SessionStatus.ACTIVE, SessionStatus.SUSPENDED})


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, at: datetime = T0) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


def turn(n: int, **extra: Any) -> SessionTurn:
    """A turn numbered ``n``."""
    fields: dict[str, Any] = {
        "turn_id": f"t{n}",
        "role": "user",
        "content": f"message {n}",
        "timestamp": T0 + timedelta(seconds=n),
        "tokens_used": 2,
        "cost": 0.25,
    }
    fields.update(extra)
    return SessionTurn(**fields)


def header(user: str = "alice", **extra: Any) -> SessionState:
    """A new ACTIVE session header at T0."""
    fields: dict[str, Any] = {
        "session_id": f"s-{uuid.uuid4().hex}",
        "user_id": user,
        "status": SessionStatus.ACTIVE,
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(extra)
    return SessionState(**fields)


@pytest.fixture
def sqlite_path() -> Iterator[Path]:
    """A SQLite file of this test alone."""
    with tempfile.TemporaryDirectory(prefix="lexi-sqlint-") as tmp:
        yield Path(tmp) / "sessions.db"


@pytest.fixture(params=["sqlite", "postgres"])
async def target(request: pytest.FixtureRequest, sqlite_path: Path) -> AsyncIterator[str]:
    """Yields "sqlite" or "postgres"; see :func:`opened`."""
    if request.param == "sqlite":
        request.node.sql_url = f"sqlite+aiosqlite:///{sqlite_path}"
        request.node.sql_prefix = "ai_session_"
        yield "sqlite"
        return
    require_postgres()
    prefix = f"t{uuid.uuid4().hex[:12]}_"
    request.node.sql_url = POSTGRES_URL
    request.node.sql_prefix = prefix
    try:
        yield "postgres"
    finally:
        await drop_schema(POSTGRES_URL, table_prefix=prefix)


@pytest.fixture
def where(request: pytest.FixtureRequest, target: str) -> tuple[str, str]:
    """(url, table prefix) of the current target."""
    return request.node.sql_url, request.node.sql_prefix


@asynccontextmanager
async def opened(
    where: tuple[str, str], clock: Clock | None = None, ttl: int = TTL
) -> AsyncIterator[DatabaseSessionStore]:
    """An initialised store on ``where`` with a test clock."""
    url, prefix = where
    store = DatabaseSessionStore(
        url, table_prefix=prefix, pool_size=3, session_ttl=ttl, clock=clock or Clock()
    )
    await store.initialize()
    try:
        yield store
    finally:
        await store.close()


async def _exec(store: DatabaseSessionStore, sql: str, **params: Any) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(text(sql), params)


async def _scalar(store: DatabaseSessionStore, sql: str, **params: Any) -> Any:
    async with store.engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


# --------------------------------------------------------------------- locks
@asynccontextmanager
async def held_lock(store: DatabaseSessionStore, session_id: str) -> AsyncIterator[None]:
    """Hold the write lock of ``session_id`` from another connection until exit."""
    if store.dialect == "sqlite":
        path = store.database_url.sqlite_path
        assert path is not None
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    pg = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
    try:
        tr = pg.transaction()
        await tr.start()
        await pg.execute(
            f"SELECT 1 FROM {store.table_prefix}sessions WHERE session_id = $1 FOR UPDATE",
            session_id,
        )
        try:
            yield
        finally:
            await tr.rollback()
    finally:
        await pg.close()


async def queued(store: DatabaseSessionStore, task: asyncio.Task[Any]) -> None:
    """Let ``task`` start and reach the lock (PostgreSQL: until the server sees it wait)."""
    for _ in range(3):
        await asyncio.sleep(0)
    if store.dialect == "sqlite":
        await asyncio.sleep(0.1)  # the worker thread is inside BEGIN IMMEDIATE's busy wait
        return
    sql = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE :q"
    for _ in range(200):
        if await _scalar(store, sql, q=f"%{store.table_prefix}sessions%") > 0:
            return
        await asyncio.sleep(0.02)
    pytest.fail("the write never queued behind the held lock")


WRITES = {
    "append_turns": lambda s, sid: s.append_turns(sid, [turn(9)]),
    "update_session": lambda s, sid: s.update_session(sid, SessionPatch(variables={"x": 1})),
    "pop_turn": lambda s, sid: s.pop_turn(sid),
    "clear_turns": lambda s, sid: s.clear_turns(sid),
    "suspend": lambda s, sid: s.transition(
        sid, SessionStatus.SUSPENDED, allowed_from=frozenset({SessionStatus.ACTIVE})
    ),
}


@pytest.mark.parametrize("op", sorted(WRITES))
async def test_a_write_queued_past_the_deadline_is_refused(where: tuple[str, str], op: str) -> None:
    clock = Clock()
    async with opened(where, clock) as store:
        state = header()
        await store.create_session(state)
        await store.append_turns(state.session_id, [turn(1)])
        clock.advance(TTL - 1)  # one second before the deadline
        async with held_lock(store, state.session_id):
            task = asyncio.create_task(WRITES[op](store, state.session_id))
            await queued(store, task)
            clock.advance(2)  # the deadline passes while the write waits
        with pytest.raises(SessionExpiredError):
            await task
        record = await store.load_record(state.session_id)
        assert record is not None
        assert record.state.status == SessionStatus.EXPIRED
        assert record.state.updated_at == T0
        assert record.expires_at == T0 + timedelta(seconds=TTL)
        assert record.state.turn_count == 1 and record.state.variables == {}
        assert [t.turn_id for t in await store.get_turns(state.session_id)] == ["t1"]
        # Once reported EXPIRED it never accepts a write again.
        for again in WRITES.values():
            with pytest.raises(SessionExpiredError):
                await again(store, state.session_id)
        assert await store.find_expired() == [state.session_id]
        assert (await store.mark_expired(state.session_id)) is not None
        stored = await store.load(state.session_id)
        assert stored is not None and stored.status == SessionStatus.EXPIRED
        assert [t.turn_id for t in stored.turns] == ["t1"]


async def test_a_write_that_got_the_lock_in_time_is_applied(where: tuple[str, str]) -> None:
    clock = Clock()
    async with opened(where, clock) as store:
        state = header()
        await store.create_session(state)
        clock.advance(TTL - 2)
        async with held_lock(store, state.session_id):
            task = asyncio.create_task(store.append_turns(state.session_id, [turn(1)]))
            await queued(store, task)
            clock.advance(1)  # still before the deadline when the lock is free
        result = await task
        assert result.record.state.status == SessionStatus.ACTIVE
        assert result.record.state.updated_at == T0 + timedelta(seconds=TTL - 1)
        record = await store.load_record(state.session_id)
        assert record is not None and record.expires_at == T0 + timedelta(seconds=2 * TTL - 1)


async def test_a_delete_waits_for_a_write_in_flight_and_leaves_none_of_its_rows(
    where: tuple[str, str],
) -> None:
    """A transaction holding the header commits a turn row and a checkpoint while the
    session is deleted: the delete waits for it (it locks the header first) and removes
    them, so a session created again under the id starts empty. On PostgreSQL the
    delete's statements used to miss rows committed while they ran (READ COMMITTED)."""
    async with opened(where) as store:
        state = header()
        sid = state.session_id
        await store.create_session(state)
        await store.append_turns(sid, [turn(1)])
        p = store.table_prefix
        late_turn = (
            f"INSERT INTO {p}turns (session_id, seq, live, turn_id, tokens_used, cost, data) "
            "VALUES ({sid}, 2, 1, 'late', 0, 0, '{{}}')"
        )
        late_cp = (
            f"INSERT INTO {p}checkpoints (checkpoint_id, session_id, created_at, metadata, "
            "header) VALUES ('cp-late', {sid}, 0, '{{}}', '{{}}')"
        )
        if store.dialect == "sqlite":
            path = store.database_url.sqlite_path
            assert path is not None
            lite = sqlite3.connect(path, isolation_level=None)
            lite.execute("BEGIN IMMEDIATE")
            lite.execute(late_turn.format(sid="?"), (sid,))
            lite.execute(late_cp.format(sid="?"), (sid,))
            task = asyncio.create_task(store.delete(sid))
            await queued(store, task)
            lite.execute("COMMIT")
            lite.close()
        else:
            pg = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
            try:
                async with pg.transaction():
                    await pg.execute(
                        f"SELECT 1 FROM {p}sessions WHERE session_id = $1 FOR UPDATE", sid
                    )
                    await pg.execute(late_turn.format(sid="$1"), sid)
                    await pg.execute(late_cp.format(sid="$1"), sid)
                    task = asyncio.create_task(store.delete(sid))
                    await queued(store, task)
            finally:
                await pg.close()
        await task
        await store.create_session(replace(state, metadata={"life": 2}))
        for table in ("turns", "checkpoints"):
            count = f"SELECT count(*) FROM {p}{table} WHERE session_id = :s"
            assert await _scalar(store, count, s=sid) == 0, table
        assert await store.get_turns(sid) == []
        assert await store.list_checkpoint_headers(sid) == []


async def test_a_delete_that_finds_no_session_leaves_one_created_since_alone(
    where: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two deletes of one session: the second waits for the first's lock and finds the
    row gone. The session is created again (with a turn) before the second goes on: the
    second deletes nothing of it. On PostgreSQL it used to delete the new session's
    turns and header without holding its lock, leaving rows that an append in flight
    committed (a session created later counted them as its own: turn_count -1)."""
    from lexigram.ai.session.stores.sql import ops_sessions

    async with opened(where) as store:
        state = header()
        sid = state.session_id
        await store.create_session(state)
        await store.append_turns(sid, [turn(1)])
        await store.delete(sid)

        async def create_again() -> None:
            async with opened(where) as other:
                await other.create_session(replace(state, variables={"life": 2}))
                await other.append_turns(sid, [turn(2)])

        if store.dialect == "sqlite":  # one writer at a time: the same moves, in turn
            await create_again()
        else:
            lock = ops_sessions.lock_header

            async def lock_then_create(tx: Any, ctx: Any, session_id: str) -> Any:
                monkeypatch.setattr(ops_sessions, "lock_header", lock)
                found = await lock(tx, ctx, session_id)
                assert found is None  # the first delete took it
                await create_again()  # committed before this delete goes on
                return found

            monkeypatch.setattr(ops_sessions, "lock_header", lock_then_create)
        await store.delete(sid)  # the second delete (the first already took it)
        if store.dialect == "sqlite":
            assert await store.load(sid) is None  # there, the delete came after the create
            return
        now = await store.load(sid)
        assert now is not None and now.variables == {"life": 2}
        assert [t.turn_id for t in now.turns] == ["t2"] and now.turn_count == 1


async def test_a_restore_never_applies_a_checkpoint_of_a_deleted_session_to_a_new_one(
    where: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The restore reads the checkpoint, then locks the session. If the session was
    deleted (with the checkpoint) and created again under its id in between, the
    checkpoint is gone: not found, and the new session is left as it is. On PostgreSQL
    the restore used to apply the old session's header and turn ranges to the new one."""
    from lexigram.ai.session.stores.sql import ops_checkpoints

    async with opened(where) as store:
        state = header(variables={"life": 1})
        sid = state.session_id
        await store.create_session(state)
        await store.append_turns(sid, [turn(1), turn(2)])
        await store.create_checkpoint(sid, checkpoint_id="cp-old")

        async def delete_and_create_again() -> None:
            async with opened(where) as other:
                await other.delete(sid)
                await other.create_session(replace(state, variables={"life": 2}))
                await other.append_turns(sid, [turn(3)])

        if store.dialect == "sqlite":  # one writer at a time: the same moves, in turn
            await delete_and_create_again()
        else:
            lock = ops_checkpoints.lock_header

            async def lock_later(tx: Any, ctx: Any, session_id: str) -> Any:
                monkeypatch.setattr(ops_checkpoints, "lock_header", lock)
                await delete_and_create_again()  # between the read and the lock
                return await lock(tx, ctx, session_id)

            monkeypatch.setattr(ops_checkpoints, "lock_header", lock_later)
        with pytest.raises(CheckpointNotFoundError):
            await store.restore_checkpoint("cp-old")
        now = await store.load(sid)
        assert now is not None and now.variables == {"life": 2}
        assert [t.turn_id for t in now.turns] == ["t3"] and now.turn_count == 1


async def test_updated_at_and_the_deadline_never_move_backwards(
    where: tuple[str, str],
) -> None:
    ahead, behind = Clock(T0 + timedelta(seconds=30)), Clock(T0 + timedelta(seconds=10))
    async with opened(where, ahead) as first, opened(where, behind) as late:
        state = header()
        await first.create_session(state)
        await first.append_turns(state.session_id, [turn(1)])
        await late.append_turns(state.session_id, [turn(2)])
        await late.update_session(state.session_id, SessionPatch(variables={"v": 1}))
        await late.pop_turn(state.session_id)
        for store in (first, late):
            record = await store.load_record(state.session_id)
            assert record is not None
            assert record.state.updated_at == T0 + timedelta(seconds=30)
            assert record.expires_at == T0 + timedelta(seconds=30 + TTL)
            assert record.state.variables == {"v": 1} and record.state.turn_count == 1


# ------------------------------------------------------------------- numbers
async def _totals(store: DatabaseSessionStore, session_id: str) -> tuple[int, int, float]:
    record = await store.load_record(session_id)
    assert record is not None
    state = record.state
    return state.turn_count, state.total_tokens, state.total_cost


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"tokens_used": 2**63 - 1}, "turns[0].tokens_used"),
        ({"tokens_used": 2**53}, "turns[0].tokens_used"),
        ({"tokens_used": 2**70}, "turns[0].tokens_used"),
        ({"tokens_used": -1}, "turns[0].tokens_used"),
        ({"cost": float("inf")}, "turns[0].cost"),
        ({"cost": float("nan")}, "turns[0].cost"),
        ({"cost": -0.5}, "turns[0].cost"),
        ({"cost": 10**400}, "turns[0].cost"),
    ],
)
async def test_a_number_that_cannot_be_stored_is_refused_naming_the_field(
    where: tuple[str, str], bad: dict[str, Any], field: str
) -> None:
    async with opened(where) as store:
        state = header()
        await store.create_session(state)
        await store.append_turns(state.session_id, [turn(1)])
        with pytest.raises(SessionValidationError) as info:
            await store.append_turns(state.session_id, [turn(2, **bad)])
        assert info.value.field == field
        with pytest.raises(SessionValidationError) as info:
            await store.create_session(replace(header(), turns=[turn(3, **bad)]))
        assert info.value.field == f"state.{field}"
        assert await _totals(store, state.session_id) == (1, 2, 0.25)
        assert [t.turn_id for t in await store.get_turns(state.session_id)] == ["t1"]


async def test_totals_past_the_limits_are_refused_before_anything_is_written(
    where: tuple[str, str],
) -> None:
    async with opened(where) as store:
        state = header()
        await store.create_session(state)
        await store.append_turns(state.session_id, [turn(1, tokens_used=MAX_SAFE_INT, cost=1e308)])
        for batch, field in (
            ([turn(2, tokens_used=1, cost=0.0)], "total_tokens"),
            ([turn(2, tokens_used=0, cost=1e308)], "total_cost"),
            ([turn(2, tokens_used=0), turn(3, tokens_used=1)], "total_tokens"),
        ):
            with pytest.raises(SessionValidationError) as info:
                await store.append_turns(state.session_id, batch)
            assert info.value.field == field
        # A batch whose own sum is too large, on a fresh session.
        other = header()
        await store.create_session(other)
        with pytest.raises(SessionValidationError) as info:
            await store.append_turns(
                other.session_id, [turn(1, tokens_used=2**52), turn(2, tokens_used=2**52)]
            )
        assert info.value.field == "total_tokens"
        assert await _totals(store, state.session_id) == (1, MAX_SAFE_INT, 1e308)
        assert await _totals(store, other.session_id) == (0, 0, 0.0)
        assert len(await store.get_turns(state.session_id)) == 1
        assert await store.get_turns(other.session_id) == []
        popped = await store.pop_turn(state.session_id)
        assert popped is not None and popped.tokens_used == MAX_SAFE_INT
        assert await _totals(store, state.session_id) == (0, 0, 0.0)


async def test_a_live_duplicate_is_named_before_the_totals(where: tuple[str, str]) -> None:
    async with opened(where) as store:
        state = header()
        await store.create_session(state)
        await store.append_turns(state.session_id, [turn(1, tokens_used=MAX_SAFE_INT)])
        with pytest.raises(DuplicateTurnError):
            await store.append_turns(state.session_id, [turn(1, tokens_used=5)])
        with pytest.raises(SessionValidationError) as info:
            await store.append_turns(state.session_id, [turn(2, tokens_used=5)])
        assert info.value.field == "total_tokens"
        assert await _totals(store, state.session_id) == (1, MAX_SAFE_INT, 0.25)


async def test_totals_are_the_exact_sums_over_the_live_turns(where: tuple[str, str]) -> None:
    costs = [0.1, 0.2, 0.3, 0.7, 1e-9]
    async with opened(where) as store:
        state = header()
        await store.create_session(state)
        await store.append_turns(state.session_id, [turn(1, cost=costs[0], tokens_used=3)])
        await store.append_turns(
            state.session_id,
            [turn(i + 1, cost=c, tokens_used=3) for i, c in enumerate(costs[1:], start=1)],
        )

        def seq_sum(values: list[float]) -> float:
            total = 0.0
            for value in values:
                total += value
            return total

        assert await _totals(store, state.session_id) == (5, 15, seq_sum(costs))
        checkpoint, _ = await store.create_checkpoint(state.session_id, checkpoint_id="cp-1")
        await store.pop_turn(state.session_id)
        assert await _totals(store, state.session_id) == (4, 12, seq_sum(costs[:4]))
        await store.pop_turn(state.session_id)
        assert await _totals(store, state.session_id) == (3, 9, seq_sum(costs[:3]))
        restored = await store.restore_checkpoint(checkpoint.checkpoint_id)
        assert restored.total_cost == seq_sum(costs) and restored.total_tokens == 15
        assert await _totals(store, state.session_id) == (5, 15, seq_sum(costs))
        await store.clear_turns(state.session_id)
        assert await _totals(store, state.session_id) == (0, 0, 0.0)


async def test_a_batch_near_the_largest_float_is_summed_turn_by_turn(
    where: tuple[str, str],
) -> None:
    """Far from the largest float a batch is one statement on PostgreSQL; near it the
    locked path judges the total exactly: applied when it stays finite, else refused."""
    async with opened(where) as store:
        state = header()
        await store.create_session(state)
        await store.append_turns(state.session_id, [turn(1, cost=1.7e308)])
        await store.append_turns(state.session_id, [turn(2, cost=3e306), turn(3, cost=0.1)])
        expected = 1.7e308 + 3e306 + 0.1
        assert await _totals(store, state.session_id) == (3, 6, expected)
        with pytest.raises(SessionValidationError) as info:
            await store.append_turns(state.session_id, [turn(4, cost=1e307), turn(5)])
        assert info.value.field == "total_cost"
        assert await _totals(store, state.session_id) == (3, 6, expected)


# ------------------------------------------------------------------- retries
async def test_a_callers_second_identical_append_is_a_duplicate(where: tuple[str, str]) -> None:
    """Only the runner's own re-send after a lost commit reply is taken for a retry
    (tests/faults/test_sql_faults.py); a caller appending the same turn again gets
    ``DuplicateTurnError`` as on every backend, and nothing is stored twice."""
    async with opened(where) as store:
        state = header()
        await store.create_session(state)
        await store.append_turns(state.session_id, [turn(1)])
        await store.append_turns(state.session_id, [turn(2), turn(3)])
        with pytest.raises(DuplicateTurnError):
            await store.append_turns(state.session_id, [turn(1)])
        with pytest.raises(DuplicateTurnError):
            await store.append_turns(state.session_id, [turn(2), turn(3)])
        with pytest.raises(DuplicateTurnError):
            await store.append_turns(state.session_id, [turn(3, content="changed")])
        assert await _totals(store, state.session_id) == (3, 6, 0.75)
        stored = await store.get_turns(state.session_id)
        assert [t.turn_id for t in stored] == ["t1", "t2", "t3"]


async def test_an_append_after_the_cap_closed_the_session_is_refused(
    where: tuple[str, str],
) -> None:
    async with opened(where) as store:
        state = header()
        await store.create_session(state)
        first = await store.append_turns(state.session_id, [turn(1)], max_turns=1)
        assert first.closed_by_cap
        with pytest.raises(SessionError):
            await store.append_turns(state.session_id, [turn(1)], max_turns=1)
        record = await store.load_record(state.session_id)
        assert record is not None and record.state.status == SessionStatus.CLOSED
        assert await _totals(store, state.session_id) == (1, 2, 0.25)


# ------------------------------------------------------------------- damage
async def _corrupt(store: DatabaseSessionStore, session_id: str) -> None:
    await _exec(
        store,
        f"UPDATE {store.table_prefix}sessions SET metadata = '{{oops' WHERE session_id = :s",
        s=session_id,
    )


async def test_a_damaged_due_session_is_quarantined_and_the_sweep_goes_on(
    where: tuple[str, str],
) -> None:
    clock = Clock()
    async with opened(where, clock) as store:
        damaged = header()
        await store.create_session(damaged)  # the earliest deadline: sorts first
        # Ten minutes later: a later deadline bucket on PostgreSQL too, where due
        # sessions are ordered by 5-minute bucket only.
        clock.advance(600)
        later = T0 + timedelta(seconds=600)
        healthy = [header() for _ in range(3)]
        for state in healthy:
            await store.create_session(replace(state, updated_at=later))
        await _corrupt(store, damaged.session_id)
        clock.advance(TTL + 1)
        assert await store.count_live_sessions("alice") == 0
        assert (await store.find_expired(limit=1)) == [damaged.session_id]
        with pytest.raises(CorruptRecordError):
            await store.mark_expired(damaged.session_id)
        await store.quarantine(damaged.session_id)
        await store.quarantine(damaged.session_id)  # idempotent
        due = await store.find_expired(limit=10)
        assert sorted(due) == sorted(s.session_id for s in healthy)
        for sid in due:
            assert await store.mark_expired(sid) is not None
        assert await store.find_expired() == []
        older = clock() + timedelta(seconds=1)
        assert sorted(await store.find_purgeable(older_than=older)) == sorted(due)
        with pytest.raises(CorruptRecordError):
            await store.load_record(damaged.session_id)
        stored = await _scalar(
            store,
            f"SELECT status FROM {store.table_prefix}sessions WHERE session_id = :s",
            s=damaged.session_id,
        )
        assert stored == "quarantined:active"
        await store.delete(damaged.session_id)
        assert (
            await _scalar(
                store,
                f"SELECT count(*) FROM {store.table_prefix}sessions WHERE session_id = :s",
                s=damaged.session_id,
            )
            == 0
        )


async def test_listings_return_the_healthy_sessions_and_name_the_damaged(
    where: tuple[str, str],
) -> None:
    async with opened(where, ttl=0) as store:
        states = [header() for _ in range(4)]
        for state in states:
            await store.create_session(state)
            await store.append_turns(state.session_id, [turn(1)])
        await _corrupt(store, states[1].session_id)
        page = await store.list_user_sessions("alice", limit=10)
        assert page.damaged == [states[1].session_id]
        assert [s.session_id for s in page.items] == [
            states[3].session_id,
            states[2].session_id,
            states[0].session_id,
        ]
        first = await store.list_user_sessions("alice", limit=2)
        rest = await store.list_user_sessions("alice", limit=2, cursor=first.next_cursor)
        assert [s.session_id for s in first.items] == [states[3].session_id, states[2].session_id]
        assert rest.damaged == [states[1].session_id]
        assert [s.session_id for s in rest.items] == [states[0].session_id]
        branch = replace(header(), session_id="b-" + states[0].session_id, branch_name="b")
        await store.fork_session(states[0].session_id, branch)
        healthy = replace(header(), session_id="c-" + states[0].session_id, branch_name="c")
        await store.fork_session(states[0].session_id, healthy)
        await _corrupt(store, branch.session_id)
        assert [r.state.session_id for r in await store.list_branches(states[0].session_id)] == [
            healthy.session_id
        ]
        await store.delete(branch.session_id)
        await store.delete(healthy.session_id)
        whole = await store.list_sessions("alice")
        assert [s.session_id for s in whole] == [
            states[0].session_id,
            states[2].session_id,
            states[3].session_id,
        ]
        assert all(len(s.turns) == 1 for s in whole)


async def test_a_damaged_ended_session_is_purged_without_decoding(
    where: tuple[str, str],
) -> None:
    clock = Clock()
    async with opened(where, clock) as store:
        state = header()
        await store.create_session(state)
        await store.transition(state.session_id, SessionStatus.CLOSED, allowed_from=LIVE)
        await _corrupt(store, state.session_id)
        clock.advance(10)
        assert await store.find_purgeable(older_than=clock()) == [state.session_id]
        assert await store.purge(state.session_id, tombstone_until=clock() + timedelta(days=1))
        assert await store.load_record(state.session_id) is None


async def test_a_live_save_replaces_a_damaged_live_record_and_never_revives_an_ended_one(
    where: tuple[str, str],
) -> None:
    """The ended-session guard of ``save`` reads the status and deadline columns only.

    It decoded the whole header, so a live session with a damaged JSON field could no
    longer be replaced (``CorruptRecordError``), while Redis replaces it.
    """
    clock = Clock()
    async with opened(where, clock) as store:
        live = header()
        await store.create_session(live)
        await _corrupt(store, live.session_id)
        await store.save(replace(live, metadata={"repaired": True}))
        record = await store.load_record(live.session_id)
        assert record is not None and record.state.metadata == {"repaired": True}
        ended = header()
        await store.create_session(ended)
        await store.transition(ended.session_id, SessionStatus.CLOSED, allowed_from=LIVE)
        await _corrupt(store, ended.session_id)
        with pytest.raises(SessionClosedError):
            await store.save(ended)
        assert await store.find_purgeable(older_than=clock() + timedelta(seconds=1)) == [
            ended.session_id
        ]


# -------------------------------------------------------------- checkpoints
async def test_checkpoints_are_listed_by_creation_time(where: tuple[str, str]) -> None:
    async with opened(where) as store:
        state = header()
        await store.create_session(state)
        at = {"c-late": 30, "c-early": 10, "c-tie-a": 20, "c-tie-b": 20}
        for cp_id, seconds in at.items():
            await store.save_checkpoint(
                SessionCheckpoint(
                    checkpoint_id=cp_id,
                    session_id=state.session_id,
                    state=state,
                    created_at=T0 + timedelta(seconds=seconds),
                )
            )
        expected = ["c-early", "c-tie-a", "c-tie-b", "c-late"]
        headers = await store.list_checkpoint_headers(state.session_id)
        assert [c.checkpoint_id for c in headers] == expected
        full = await store.list_checkpoints(state.session_id)
        assert [c.checkpoint_id for c in full] == expected
        assert [c.created_at for c in full] == sorted(c.created_at for c in full)


# -------------------------------------------------------------------- strings
@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: replace(header(), user_id="a\ud800b"), "state.user_id"),
        (lambda: replace(header(), user_id="u" * 1_000_000), "state.user_id"),
        (lambda: replace(header(), session_id="s" * 256), "state.session_id"),
        (lambda: replace(header(), system_prompt="x\udfffy"), "state.system_prompt"),
        (lambda: replace(header(), metadata={"k": "\ud800"}), "state.metadata.k"),
        (lambda: replace(header(), variables={"v": ["\ud800"]}), "state.variables.v[0]"),
        (lambda: replace(header(), turns=[turn(1, content="\ud800")]), "state.turns[0].content"),
        (lambda: replace(header(), turns=[turn(1, model="\ud800")]), "state.turns[0].model"),
    ],
)
async def test_a_header_that_cannot_be_stored_is_refused_naming_the_field(
    where: tuple[str, str], make: Any, field: str
) -> None:
    async with opened(where) as store:
        state = make()
        with pytest.raises(SessionValidationError) as info:
            await store.create_session(state)
        assert info.value.field == field
        with pytest.raises(SessionValidationError) as info:
            await store.save(state)
        assert info.value.field == field
        assert await store.list_sessions("alice") == []


async def test_turns_patches_and_ids_that_cannot_be_stored_are_refused(
    where: tuple[str, str],
) -> None:
    async with opened(where) as store:
        state = header()
        await store.create_session(state)
        cases: list[tuple[Any, str]] = [
            (
                store.append_turns(state.session_id, [turn(1, content="a\ud800")]),
                "turns[0].content",
            ),
            (
                store.append_turns(state.session_id, [turn(1), turn(2, metadata={"m": "\udc00"})]),
                "turns[1].metadata.m",
            ),
            (
                store.append_turns(state.session_id, [turn(1, turn_id="x" * 256)]),
                "turns[0].turn_id",
            ),
            (
                store.update_session(state.session_id, SessionPatch(system_prompt="\ud800")),
                "system_prompt",
            ),
            (
                store.update_session(state.session_id, SessionPatch(variables={"v": "\ud800"})),
                "variables.v",
            ),
            (store.load_record("s" * 1_000_000), "session_id"),
            (store.append_turns("a\ud800", [turn(1)]), "session_id"),
            (store.list_user_sessions("\ud800"), "user_id"),
            (store.create_checkpoint(state.session_id, checkpoint_id="c\ud800"), "checkpoint_id"),
        ]
        for call, field in cases:
            with pytest.raises(SessionValidationError) as info:
                await call
            assert info.value.field == field
        assert await _totals(store, state.session_id) == (0, 0, 0.0)
        record = await store.load_record(state.session_id)
        assert record is not None and record.state.system_prompt is None
        assert record.state.variables == {} and record.state.checkpoint_id is None


async def test_a_timestamp_out_of_range_or_a_nan_cost_is_a_damaged_record(
    where: tuple[str, str],
) -> None:
    """A stored microsecond count past year 9999 raised a raw ``OverflowError`` from every
    read and from the user's whole listing; a NaN total (PostgreSQL) was served as a
    cost (an outside audit). Both are damage: named, and left out of listings."""
    async with opened(where) as store:
        far, nan, fine = header(), header(), header()
        for state in (far, nan, fine):
            await store.create_session(state)
        await _exec(
            store,
            f"UPDATE {store.table_prefix}sessions SET created_at = :v WHERE session_id = :s",
            v=2**62,
            s=far.session_id,
        )
        with pytest.raises(CorruptRecordError, match="out of range"):
            await store.load_record(far.session_id)
        damaged = [far.session_id]
        if store.dialect == "postgresql":
            await _exec(
                store,
                f"UPDATE {store.table_prefix}sessions SET total_cost = 'NaN' "
                "WHERE session_id = :s",
                s=nan.session_id,
            )
            with pytest.raises(CorruptRecordError, match="total_cost"):
                await store.load_record(nan.session_id)
            damaged.append(nan.session_id)
        page = await store.list_user_sessions("alice")
        assert sorted(page.damaged) == sorted(damaged)
        assert fine.session_id in [s.session_id for s in page.items]


async def test_a_checkpoint_time_out_of_range_is_a_damaged_record(
    where: tuple[str, str],
) -> None:
    """``list_checkpoints`` raised a raw ``OverflowError`` and the explorer's session page
    answered 500 (a regression audit)."""
    async with opened(where) as store:
        state = header()
        await store.create_session(state)
        made, _ = await store.create_checkpoint(state.session_id, checkpoint_id="cp-far")
        await _exec(
            store,
            f"UPDATE {store.table_prefix}checkpoints SET created_at = :v WHERE checkpoint_id = :c",
            v=2**62,
            c=made.checkpoint_id,
        )
        with pytest.raises(CorruptRecordError, match="created_at"):
            await store.list_checkpoints(state.session_id)
        with pytest.raises(CorruptRecordError, match="created_at"):
            await store.load_checkpoint(made.checkpoint_id)
