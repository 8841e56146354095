"""Damaged session headers on SQLite, PostgreSQL and MariaDB (audit 47).

* A header with negative counters (``total_tokens``, ``turn_count``, ``total_cost``)
  is damage: reads raise ``CorruptRecordError`` naming the field, as on Redis, and the
  sweeper's ``mark_expired`` refuses it (so it is quarantined, not taken for healthy).
* A write to a session whose header has a damaged field is refused with nothing
  applied, or, when the one-statement append applied it before the header was read
  back (PostgreSQL, MariaDB), the error says that the turns were stored.

Each test changes the stored row in SQL and asserts what is stored afterwards.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn
from sqlalchemy import text

from lexigram.ai.session.exceptions import CorruptRecordError
from lexigram.ai.session.stores.database import DatabaseSessionStore, drop_schema
from lexigram.ai.session.testing import FakeClock
from tests.services import MARIADB_URL, POSTGRES_URL, require_mariadb, require_postgres

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def turn(n: int) -> SessionTurn:
    return SessionTurn(
        turn_id=f"t{n}-{uuid.uuid4().hex[:8]}",
        role="user",
        content=f"message {n}",
        timestamp=T0 + timedelta(seconds=n),
        tokens_used=3,
        cost=0.5,
    )


def header(**extra: Any) -> SessionState:
    fields: dict[str, Any] = {
        "session_id": f"s-{uuid.uuid4().hex}",
        "user_id": "alice",
        "status": SessionStatus.ACTIVE,
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(extra)
    return SessionState(**fields)


@dataclass
class Db:
    store: DatabaseSessionStore
    prefix: str
    clock: FakeClock

    async def execute(self, sql: str, **params: Any) -> None:
        async with self.store.engine.begin() as conn:
            await conn.execute(text(sql.replace("{p}", self.prefix)), params)

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.store.engine.connect() as conn:
            return (await conn.execute(text(sql.replace("{p}", self.prefix)), params)).scalar()

    async def stored(self, sid: str) -> tuple[Any, ...]:
        """What a write would change: the header's counters and the live turn rows."""
        async with self.store.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        f"SELECT status, turn_count, total_tokens, last_seq, variables "
                        f"FROM {self.prefix}sessions WHERE session_id = :s"
                    ),
                    {"s": sid},
                )
            ).one()
            live = (
                await conn.execute(
                    text(f"SELECT count(*) FROM {self.prefix}turns WHERE session_id = :s"),
                    {"s": sid},
                )
            ).scalar()
        return (*tuple(row), live)


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
async def db(request: pytest.FixtureRequest) -> AsyncIterator[Db]:
    prefix = f"t{uuid.uuid4().hex[:12]}_"
    clock = FakeClock(T0)
    with tempfile.TemporaryDirectory(prefix="lexi-audit47-") as tmp:
        if request.param == "sqlite":
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'sessions.db'}"
        elif request.param == "postgres":
            require_postgres()
            url = POSTGRES_URL
        else:
            require_mariadb()
            url = MARIADB_URL
        store = DatabaseSessionStore(
            url, table_prefix=prefix, pool_size=2, session_ttl=60, clock=clock
        )
        try:
            await store.initialize()
            yield Db(store, prefix, clock)
        finally:
            await store.close()
            if request.param != "sqlite":
                await drop_schema(url, table_prefix=prefix)


# ------------------------------------------------------- S5: negative counters
@pytest.mark.parametrize(
    ("column", "value"),
    [("total_tokens", -5), ("turn_count", -3), ("total_cost", -1.5)],
)
async def test_a_negative_counter_is_a_damaged_header(db: Db, column: str, value: Any) -> None:
    state = header()
    await db.store.create_session(state)
    await db.store.append_turns(state.session_id, [turn(1)])
    await db.execute(f"UPDATE {{p}}sessions SET {column} = :v WHERE session_id = :s",
                     v=value, s=state.session_id)
    for read in (db.store.load_record, db.store.load):
        with pytest.raises(CorruptRecordError) as info:
            await read(state.session_id)
        assert info.value.record == f"session {state.session_id!r}"
        assert f"field {column}: not " in str(info.value) and ">= 0" in str(info.value)
    # The sweeper does not take it for healthy: mark_expired refuses it (then quarantine).
    db.clock.now = T0 + timedelta(seconds=3600)
    assert await db.store.find_expired() == [state.session_id]
    with pytest.raises(CorruptRecordError):
        await db.store.mark_expired(state.session_id)
    await db.store.quarantine(state.session_id)
    assert await db.store.find_expired() == []


async def test_all_counters_negative_names_total_tokens_first(db: Db) -> None:
    state = header()
    await db.store.create_session(state)
    await db.execute(
        "UPDATE {p}sessions SET total_tokens = -5, turn_count = -3, total_cost = -1.5 "
        "WHERE session_id = :s",
        s=state.session_id,
    )
    with pytest.raises(CorruptRecordError, match="field total_tokens: not an integer >= 0: -5"):
        await db.store.load(state.session_id)


async def test_zero_counters_are_healthy(db: Db) -> None:
    state = header()
    await db.store.create_session(state)
    await db.execute(
        "UPDATE {p}sessions SET total_tokens = 0, turn_count = 0, total_cost = 0 "
        "WHERE session_id = :s",
        s=state.session_id,
    )
    loaded = await db.store.load(state.session_id)
    assert loaded is not None and loaded.total_tokens == 0 and loaded.total_cost == 0.0


# ------------------------------------------ S6: writes to a damaged header
@pytest.mark.parametrize("size", [1, 2, 32, 33])
async def test_an_append_to_a_damaged_header_is_refused_or_says_it_was_stored(
    db: Db, size: int
) -> None:
    state = header()
    await db.store.create_session(state)
    await db.store.append_turns(state.session_id, [turn(0)])
    await db.execute("UPDATE {p}sessions SET metadata = '{not json' WHERE session_id = :s",
                     s=state.session_id)
    before = await db.stored(state.session_id)
    batch = [turn(i) for i in range(1, size + 1)]
    with pytest.raises(CorruptRecordError) as info:
        await db.store.append_turns(state.session_id, batch)
    assert info.value.record == f"session {state.session_id!r}"
    assert "field metadata: invalid JSON" in str(info.value)
    after = await db.stored(state.session_id)
    one_statement = db.store.dialect != "sqlite" and size <= 32
    if one_statement:
        # Applied by the one statement before the header was read back: said so, so a
        # caller does not append the turns again.
        assert info.value.details["applied"] is True
        assert info.value.details["turn_ids"] == [t.turn_id for t in batch]
        assert "are stored (do not append them again)" in str(info.value)
        assert after[1] == before[1] + size and after[-1] == before[-1] + size
    else:
        assert "applied" not in info.value.details
        assert "are stored" not in str(info.value)
        assert after == before  # nothing half-written


@pytest.mark.parametrize("write", ["update", "transition", "pop", "clear", "checkpoint"])
async def test_other_writes_to_a_damaged_header_change_nothing(db: Db, write: str) -> None:
    from lexigram.ai.session.stores.base import SessionPatch

    state = header()
    await db.store.create_session(state)
    await db.store.append_turns(state.session_id, [turn(0), turn(1)])
    await db.execute("UPDATE {p}sessions SET metadata = '{not json' WHERE session_id = :s",
                     s=state.session_id)
    before = await db.stored(state.session_id)
    sid = state.session_id
    calls = {
        "update": lambda: db.store.update_session(sid, SessionPatch(variables={"k": 1})),
        "transition": lambda: db.store.transition(
            sid, SessionStatus.SUSPENDED, allowed_from=frozenset({SessionStatus.ACTIVE})
        ),
        "pop": lambda: db.store.pop_turn(sid),
        "clear": lambda: db.store.clear_turns(sid),
        "checkpoint": lambda: db.store.create_checkpoint(sid, checkpoint_id="cp-1"),
    }
    with pytest.raises(CorruptRecordError) as info:
        await calls[write]()
    assert "applied" not in info.value.details
    assert await db.stored(sid) == before
    assert await db.scalar("SELECT count(*) FROM {p}checkpoints") == 0
