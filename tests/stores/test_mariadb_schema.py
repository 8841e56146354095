"""MariaDB: the purge index covers ended sessions only, through ``ended_at``.

MariaDB has no partial index. ``sessions_ended_ix`` is therefore on a generated column,
``ended_at`` (``updated_at`` of a closed or expired session, NULL for a live one), so
an append to a live session, which moves ``updated_at``, does not rewrite it. Tables
made before that have the index on ``updated_at``; ``initialize()`` moves it.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionStatus

from lexigram.ai.session.stores.database import DatabaseSessionStore
from lexigram.ai.session.testing.support import FakeClock
from tests.services import MARIADB_URL
from tests.stores.test_mariadb_appends import T0, _sql, header, opened, turn

pytestmark = pytest.mark.mariadb

ACTIVE, CLOSED = SessionStatus.ACTIVE, SessionStatus.CLOSED


async def _index_columns(p: str) -> list[str]:
    rows = await _sql(
        "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = "
        "DATABASE() AND TABLE_NAME = %s AND INDEX_NAME = %s ORDER BY SEQ_IN_INDEX",
        f"{p}sessions",
        f"{p}sessions_ended_ix",
    )
    return [str(r[0]) for r in rows]


async def _ended_at(p: str, session_id: str) -> Any:
    rows = await _sql(
        f"SELECT ended_at, updated_at FROM {p}sessions WHERE session_id = %s", session_id
    )
    return rows[0]


async def _close(store: DatabaseSessionStore, session_id: str) -> None:
    await store.transition(session_id, CLOSED, allowed_from=frozenset({ACTIVE}))


async def _old_shape(p: str) -> None:
    """The tables as a release before ``ended_at`` made them."""
    s, ix = f"{p}sessions", f"{p}sessions_ended_ix"
    await _sql(f"ALTER TABLE {s} DROP INDEX {ix}, DROP COLUMN ended_at")
    await _sql(f"CREATE INDEX {ix} ON {s} (updated_at)")


async def test_the_purge_index_is_on_ended_at_and_appends_leave_it_null(
    mariadb_prefix: str,
) -> None:
    prefix = mariadb_prefix
    clock = FakeClock(T0)
    async with opened(prefix, clock, ttl=0) as store:
        assert await _index_columns(prefix) == ["ended_at"]
        live, ended = header(), header()
        for state in (live, ended):
            await store.create_session(state)
        clock.advance(5)
        await store.append_turns(live.session_id, [turn(1), turn(2)])
        await store.append_turns(ended.session_id, [turn(1)])
        clock.advance(5)
        await _close(store, ended.session_id)
        assert (await _ended_at(prefix, live.session_id))[0] is None
        ended_at, updated_at = await _ended_at(prefix, ended.session_id)
        assert ended_at == updated_at == int((T0 + timedelta(seconds=10)).timestamp() * 1e6)
        later = T0 + timedelta(seconds=11)
        assert await store.find_purgeable(older_than=later) == [ended.session_id]
        assert await store.find_purgeable(older_than=T0 + timedelta(seconds=10)) == []
        plan = await _sql(
            "EXPLAIN " + store._statements.sessions.find_purgeable.replace(":older", "%s")
            .replace(":lim", "%s"),
            0,
            5,
        )
        assert f"{prefix}sessions_ended_ix" in str(plan), plan


async def test_initialize_moves_an_old_purge_index_onto_ended_at(mariadb_prefix: str) -> None:
    prefix = mariadb_prefix
    clock = FakeClock(T0)
    async with opened(prefix, clock, ttl=0) as store:
        states = [header() for _ in range(3)]
        for state in states:
            await store.create_session(state)
            await store.append_turns(state.session_id, [turn(1)])
        clock.advance(5)
        await _close(store, states[0].session_id)
    await _old_shape(prefix)
    assert await _index_columns(prefix) == ["updated_at"]
    # Two processes upgrading at once end with the same table.
    stores = [
        DatabaseSessionStore(MARIADB_URL, table_prefix=prefix, pool_size=1, clock=clock)
        for _ in range(2)
    ]
    try:
        await asyncio.gather(*(s.initialize() for s in stores))
        assert await _index_columns(prefix) == ["ended_at"]
        later = T0 + timedelta(seconds=6)
        # The closed session's ended_at was computed for the rows already there.
        assert await stores[0].find_purgeable(older_than=later) == [states[0].session_id]
        await _close(stores[1], states[1].session_id)
        assert sorted(await stores[0].find_purgeable(older_than=later)) == sorted(
            [states[0].session_id, states[1].session_id]
        )
        await stores[0].initialize()  # again: nothing to move
        assert await _index_columns(prefix) == ["ended_at"]
    finally:
        for s in stores:
            await s.close()
