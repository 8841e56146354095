"""PostgreSQL: the sweeper's indexes leave appends as HOT updates.

PostgreSQL updates a row in place, without a new entry in every index (a HOT update),
only when no column an index refers to changes, partial indexes' conditions included.
The sweeper's indexes were on ``updated_at`` and ``expires_at``, which every append
moves, so each append wrote a new entry into all seven indexes of the sessions table.
They are now on the generated columns ``ended_at`` (``updated_at`` of an ended
session, else NULL) and ``expiry_bucket`` (a live session's deadline in 5-minute units, else
NULL). Tables made before are moved onto them by ``initialize()``.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.stores.database import DatabaseSessionStore
from lexigram.ai.session.testing.support import FakeClock
from tests.services import POSTGRES_URL

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RAW_URL = POSTGRES_URL.replace("+asyncpg", "")
ACTIVE, CLOSED = SessionStatus.ACTIVE, SessionStatus.CLOSED


def _turn(n: int) -> SessionTurn:
    return SessionTurn(
        turn_id=f"t{n}", role="user", content=f"m{n}", timestamp=T0, tokens_used=1
    )


def _header(at: datetime = T0) -> SessionState:
    return SessionState(
        session_id=f"s-{uuid.uuid4().hex}",
        user_id="alice",
        status=ACTIVE,
        created_at=at,
        updated_at=at,
    )


@pytest.fixture
def prefix(postgres_prefix: str) -> str:
    """This test's own table prefix (tables dropped afterwards)."""
    return postgres_prefix


async def _raw(sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(RAW_URL)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def _exec(sql: str) -> None:
    conn = await asyncpg.connect(RAW_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _plan(sql: str, *args: object) -> str:
    """The plan PostgreSQL makes for a store statement, sequential scans discouraged."""
    text = sql.replace(":now", "$1").replace(":older", "$1").replace(":lim", "$2")
    conn = await asyncpg.connect(RAW_URL)
    try:
        await conn.execute("SET enable_seqscan = off")
        return " | ".join(str(r[0]) for r in await conn.fetch("EXPLAIN " + text, *args))
    finally:
        await conn.close()


async def _index_defs(prefix: str) -> dict[str, str]:
    rows = await _raw(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = $1",
        f"{prefix}sessions",
    )
    return {str(r[0]): str(r[1]) for r in rows}


async def _hot_counts(prefix: str, at_least: int) -> tuple[int, int]:
    """(updates, HOT updates) of the sessions table, once ``at_least`` updates are counted.

    The server publishes a backend's counts when it goes idle, at most once a second,
    and a flush put off that way comes within 10 s (PostgreSQL 15's stats intervals);
    the wait is bounded at 30 s.
    """
    counts = (0, 0)
    for _ in range(300):
        rows = await _raw(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = $1",
            f"{prefix}sessions",
        )
        counts = (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)
        if counts[0] >= at_least:
            return counts
        await asyncio.sleep(0.1)
    return counts


async def _opened(
    prefix: str, clock: FakeClock, *, ttl: int, pool_size: int = 2
) -> DatabaseSessionStore:
    store = DatabaseSessionStore(
        POSTGRES_URL, table_prefix=prefix, pool_size=pool_size, session_ttl=ttl, clock=clock
    )
    await store.initialize()
    return store


async def _old_shape(prefix: str) -> None:
    """The tables as a release before the generated columns made them."""
    s = f"{prefix}sessions"
    await _exec(
        f"DROP INDEX {s}_ended_ix; DROP INDEX {s}_expiry_ix;"
        f"ALTER TABLE {s} DROP COLUMN ended_at, DROP COLUMN expiry_bucket;"
        f"CREATE INDEX {s}_expiry_ix ON {s} (expires_at) WHERE status IN ('active', 'suspended');"
        f"CREATE INDEX {s}_ended_ix ON {s} (updated_at) WHERE status IN ('closed', 'expired')"
    )
    assert "(updated_at)" in (await _index_defs(prefix))[f"{s}_ended_ix"]


async def _close(store: DatabaseSessionStore, session_id: str) -> None:
    await store.transition(session_id, CLOSED, allowed_from=frozenset({ACTIVE}))


@pytest.mark.parametrize("ttl", [0, 3600])
async def test_appends_are_hot_updates_with_and_without_a_ttl(prefix: str, ttl: int) -> None:
    clock = FakeClock(T0)
    store = await _opened(prefix, clock, ttl=ttl)
    try:
        defs = await _index_defs(prefix)
        assert "(ended_at) WHERE (ended_at IS NOT NULL)" in defs[f"{prefix}sessions_ended_ix"]
        assert "(expiry_bucket) WHERE (expiry_bucket IS NOT NULL)" in (
            defs[f"{prefix}sessions_expiry_ix"]
        )
        state = _header()
        await store.create_session(state)
        before = await _hot_counts(prefix, 0)
        appends = 40
        for n in range(appends):
            clock.advance(1)  # a second apart: the deadline moves with each append
            await store.append_turns(state.session_id, [_turn(n)])
        updates, hot = await _hot_counts(prefix, before[0] + appends)
        assert updates - before[0] >= appends
        # A deadline crosses a 5-minute boundary at most once in these 40 seconds: every
        # other append is HOT (before, none was).
        assert hot - before[1] >= appends - 2, (updates - before[0], hot - before[1])
    finally:
        await store.close()


async def test_turns_a_minute_apart_with_a_ttl_are_mostly_hot(prefix: str) -> None:
    """A chat at a human pace: the deadline crosses into the next 5-minute bucket on
    about one append in five; the others are HOT."""
    clock = FakeClock(T0)
    store = await _opened(prefix, clock, ttl=86_400)
    try:
        state = _header()
        await store.create_session(state)
        before = await _hot_counts(prefix, 0)
        appends = 30
        for n in range(appends):
            clock.advance(60)
            await store.append_turns(state.session_id, [_turn(n)])
        updates, hot = await _hot_counts(prefix, before[0] + appends)
        assert updates - before[0] >= appends
        assert hot - before[1] >= appends - appends // 5 - 1, (updates, hot, before)
    finally:
        await store.close()


async def test_the_sweeper_finds_due_and_ended_sessions_through_the_new_indexes(
    prefix: str,
) -> None:
    clock = FakeClock(T0)
    store = await _opened(prefix, clock, ttl=60)
    try:
        soon = _header()
        await store.create_session(soon)  # deadline T0 + 60 s
        clock.advance(50)
        later, ended = _header(clock.now), _header(clock.now)
        for state in (later, ended):
            await store.create_session(state)  # deadline T0 + 110 s
        await _close(store, ended.session_id)
        clock.advance(10)  # T0 + 60 s: exactly the first deadline
        assert await store.find_expired() == [soon.session_id]
        clock.advance(45)  # T0 + 105 s: the second's bucket, not due yet
        assert await store.find_expired() == [soon.session_id]
        clock.advance(5)  # T0 + 110 s
        assert sorted(await store.find_expired()) == sorted([soon.session_id, later.session_id])
        assert await store.find_purgeable(older_than=T0 + timedelta(seconds=50)) == []
        assert await store.find_purgeable(older_than=T0 + timedelta(seconds=51)) == [
            ended.session_id
        ]
        q = store._statements.sessions
        expired = await _plan(q.find_expired, 10**16, 5)
        assert f"{prefix}sessions_expiry_ix" in expired, expired
        purgeable = await _plan(q.find_purgeable, 10**16, 5)
        assert f"{prefix}sessions_ended_ix" in purgeable, purgeable
    finally:
        await store.close()


async def test_initialize_moves_old_sweeper_indexes_onto_the_generated_columns(
    prefix: str,
) -> None:
    clock = FakeClock(T0)
    store = await _opened(prefix, clock, ttl=60)
    states = [_header() for _ in range(3)]
    try:
        for state in states:
            await store.create_session(state)
        clock.advance(5)
        await _close(store, states[0].session_id)
    finally:
        await store.close()
    await _old_shape(prefix)
    s = f"{prefix}sessions"
    # Two processes upgrading at once end with the same table.
    stores = [
        DatabaseSessionStore(
            POSTGRES_URL, table_prefix=prefix, pool_size=1, session_ttl=60, clock=clock
        )
        for _ in range(2)
    ]
    try:
        await asyncio.gather(*(s.initialize() for s in stores))
        defs = await _index_defs(prefix)
        assert "(ended_at)" in defs[f"{s}_ended_ix"]
        assert "(expiry_bucket)" in defs[f"{s}_expiry_ix"]
        # Computed for the rows already there.
        later = T0 + timedelta(seconds=6)
        assert await stores[0].find_purgeable(older_than=later) == [states[0].session_id]
        clock.advance(60)
        assert sorted(await stores[1].find_expired()) == sorted(
            [states[1].session_id, states[2].session_id]
        )
        await stores[0].initialize()  # again: nothing to move
        assert await _index_defs(prefix) == defs
    finally:
        for opened in stores:
            await opened.close()


async def test_old_tables_without_a_recorded_version_are_moved_too(prefix: str) -> None:
    """The version table emptied (or dropped) by hand: initialize() takes the tables over
    as version 1 and still moves their sweeper indexes (it skipped them, and every
    sweep then failed: ``column "expiry_bucket" does not exist``)."""
    clock = FakeClock(T0)
    store = await _opened(prefix, clock, ttl=60)
    state = _header()
    try:
        await store.create_session(state)
    finally:
        await store.close()
    await _old_shape(prefix)
    await _exec(f"DELETE FROM {prefix}schema_version")
    store = await _opened(prefix, clock, ttl=60)
    try:
        defs = await _index_defs(prefix)
        assert "(expiry_bucket)" in defs[f"{prefix}sessions_expiry_ix"]
        assert "(ended_at)" in defs[f"{prefix}sessions_ended_ix"]
        clock.advance(61)
        assert await store.find_expired() == [state.session_id]
        assert await store.find_purgeable(older_than=clock.now) == []
    finally:
        await store.close()
