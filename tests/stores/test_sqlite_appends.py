"""SQLite: what a chat append writes, and the turns layout of new and older databases.

An append of up to 32 turns is one conditional ``UPDATE … RETURNING`` that leaves the
session's ``status`` and ``expires_at`` unwritten (the partial indexes on them are not
touched); new databases keep turns in a rowid table without the partial
``(session_id, seq)`` index, and databases created before (``WITHOUT ROWID`` with that
index) keep working with the same statements.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn
from sqlalchemy import text

from lexigram.ai.session.exceptions import DuplicateTurnError
from lexigram.ai.session.stores.database import DatabaseSessionStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PREFIX = "ai_session_"


def _turn(turn_id: str, cost: float = 0.25, n: int = 0) -> SessionTurn:
    return SessionTurn(
        turn_id=turn_id,
        role="user",
        content=f"message {turn_id}",
        timestamp=T0 + timedelta(seconds=n),
        tokens_used=3,
        cost=cost,
    )


def _header(at: datetime = T0) -> SessionState:
    return SessionState(
        session_id=f"s-{uuid.uuid4().hex}",
        user_id="alice",
        status=SessionStatus.ACTIVE,
        created_at=at,
        updated_at=at,
    )


@contextlib.asynccontextmanager
async def _opened(url: str, **kwargs: Any) -> AsyncIterator[DatabaseSessionStore]:
    store = DatabaseSessionStore(url, table_prefix=PREFIX, **kwargs)
    await store.initialize()
    try:
        yield store
    finally:
        await store.close()


async def _run(store: DatabaseSessionStore, sql: str) -> list[Any]:
    async with store.engine.begin() as conn:
        result = await conn.execute(text(sql))
        return list(result.all()) if result.returns_rows else []


async def test_a_batch_adds_its_costs_turn_by_turn(sqlite_url: str) -> None:
    # 1e16 + 1 rounds back to 1e16 (twice); 1e16 + (1 + 1) would not.
    async with _opened(sqlite_url) as store:
        state = _header()
        await store.create_session(state)
        sid = state.session_id
        await store.append_turns(sid, [_turn("a", 1e16)])
        result = await store.append_turns(sid, [_turn("b", 1.0, 1), _turn("c", 1.0, 2)])
        expected = 0.0
        for cost in (1e16, 1.0, 1.0):
            expected += cost
        assert result.record.state.total_cost == expected == 1e16
        assert result.record.state.turn_count == 3 and result.record.state.total_tokens == 9
        assert result.first_seq == result.record.last_seq - 1
        record = await store.load_record(sid)
        assert record is not None and record.state.total_cost == expected


async def test_an_append_leaves_status_and_deadline_unwritten(sqlite_url: str) -> None:
    async with _opened(sqlite_url) as store:
        state = _header()
        await store.create_session(state)
        await _run(store, "CREATE TABLE audit (col TEXT)")
        for col in ("status", "expires_at"):
            await _run(
                store,
                f"CREATE TRIGGER audit_{col} AFTER UPDATE OF {col} ON {PREFIX}sessions "
                f"BEGIN INSERT INTO audit VALUES ('{col}'); END",
            )
        for i in range(0, 10, 2):
            await store.append_turns(state.session_id, [_turn(f"u{i}"), _turn(f"a{i}")])
        await store.append_turns(state.session_id, [_turn("one")])
        assert await _run(store, "SELECT col FROM audit") == []
        # Reaching the cap still closes the session (the locked path writes status).
        result = await store.append_turns(state.session_id, [_turn("x"), _turn("y")], max_turns=13)
        assert result.closed_by_cap and result.record.state.status == SessionStatus.CLOSED


async def test_with_a_ttl_an_append_moves_the_deadline(sqlite_url: str) -> None:
    async with _opened(sqlite_url, session_ttl=3600) as store:
        state = _header(datetime.now(UTC))
        await store.create_session(state)
        before = await store.load_record(state.session_id)
        result = await store.append_turns(state.session_id, [_turn("u"), _turn("a")])
        assert before is not None and before.expires_at is not None
        assert result.record.expires_at is not None
        assert result.record.expires_at >= before.expires_at


async def test_new_databases_keep_turns_in_a_rowid_table(sqlite_url: str) -> None:
    async with _opened(sqlite_url) as store:
        rows = await _run(
            store, f"SELECT name, sql FROM sqlite_master WHERE tbl_name = '{PREFIX}turns'"
        )
        found = {name: sql for name, sql in rows}
        assert "WITHOUT ROWID" not in found[f"{PREFIX}turns"]
        assert f"{PREFIX}turns_live_id_ux" in found
        assert f"{PREFIX}turns_live_ix" not in found


async def test_a_database_made_before_keeps_working(sqlite_url: str) -> None:
    async with _opened(sqlite_url) as store:
        # The layout of databases created before: WITHOUT ROWID and the partial index.
        await _run(store, f"DROP TABLE {PREFIX}turns")
        await _run(
            store,
            f"CREATE TABLE {PREFIX}turns (session_id TEXT NOT NULL, seq BIGINT NOT NULL, "
            "turn_id TEXT NOT NULL, live SMALLINT NOT NULL, tokens_used BIGINT NOT NULL, "
            "cost FLOAT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (session_id, seq)) "
            "WITHOUT ROWID",
        )
        await _run(
            store,
            f"CREATE UNIQUE INDEX {PREFIX}turns_live_id_ux ON {PREFIX}turns "
            "(session_id, turn_id) WHERE live = 1",
        )
        await _run(
            store,
            f"CREATE INDEX {PREFIX}turns_live_ix ON {PREFIX}turns (session_id, seq) WHERE live = 1",
        )
    async with _opened(sqlite_url) as store:
        state = _header()
        sid = state.session_id
        await store.create_session(state)
        for i in range(0, 6, 2):
            await store.append_turns(sid, [_turn(f"u{i}", n=i), _turn(f"a{i}", n=i + 1)])
        with pytest.raises(DuplicateTurnError):
            await store.append_turns(sid, [_turn("u0")])
        popped = await store.pop_turn(sid)
        assert popped is not None and popped.turn_id == "a4"
        turns = await store.get_turns(sid, last=3)
        assert [t.turn_id for t in turns] == ["u2", "a2", "u4"]
        record = await store.load_record(sid)
        assert record is not None and record.state.turn_count == 5
