"""How a SQL restore, a checkpoint with its turns and get_state read the live turns back.

SQLite reads them as one joined text checked against the seqs joined beside it; the
other dialects read rows. Either way a restore returns the turns it made live, in
order, with totals equal to the sums over the turn rows, and a damaged row is named.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn
from sqlalchemy import text

from lexigram.ai.session.exceptions import CorruptRecordError
from lexigram.ai.session.stores.database import DatabaseSessionStore, drop_schema
from lexigram.ai.session.stores.sql import ops_turns
from tests.services import MARIADB_URL, POSTGRES_URL, require_mariadb, require_postgres

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _turn(n: int) -> SessionTurn:
    return SessionTurn(
        turn_id=f"t{n}",
        role="user" if n % 2 else "assistant",
        content=f"message {n}, with a comma",
        timestamp=T0 + timedelta(seconds=n),
        metadata={"n": n},
        tokens_used=n,
        cost=0.1 * n,
    )


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[DatabaseSessionStore]:
    """An initialised store on each SQL dialect, dropped afterwards."""
    with tempfile.TemporaryDirectory(prefix="lexi-restore-") as tmp:
        if request.param == "sqlite":
            url, prefix = f"sqlite+aiosqlite:///{Path(tmp) / 's.db'}", "ai_session_"
        else:
            (require_postgres if request.param == "postgres" else require_mariadb)()
            url = POSTGRES_URL if request.param == "postgres" else MARIADB_URL
            prefix = f"r{uuid.uuid4().hex[:10]}_"
        opened = DatabaseSessionStore(url, table_prefix=prefix)
        await opened.initialize()
        try:
            yield opened
        finally:
            await opened.close()
            if request.param != "sqlite":
                await drop_schema(url, table_prefix=prefix)


async def _exec(store: DatabaseSessionStore, sql: str, **params: Any) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(text(sql), params)


async def _session(store: DatabaseSessionStore, turns: int) -> str:
    state = SessionState(
        session_id=f"s-{uuid.uuid4().hex}",
        user_id="u",
        status=SessionStatus.ACTIVE,
        created_at=T0,
        updated_at=T0,
    )
    await store.create_session(state)
    if turns:
        await store.append_turns(state.session_id, [_turn(n) for n in range(1, turns + 1)])
    return state.session_id


def _seq_sum(values: list[float]) -> float:
    total = 0.0
    for value in values:
        total += value
    return total


async def test_a_restore_returns_its_turns_and_their_sums(store: DatabaseSessionStore) -> None:
    sid = await _session(store, 300)
    checkpoint, _ = await store.create_checkpoint(sid, checkpoint_id=f"cp-{uuid.uuid4().hex}")
    await store.append_turns(sid, [_turn(n) for n in range(301, 311)])
    for _ in range(3):
        await store.pop_turn(sid)  # the live seqs are no longer one range
    restored = await store.restore_checkpoint(checkpoint.checkpoint_id)
    assert [t.turn_id for t in restored.turns] == [f"t{n}" for n in range(1, 301)]
    assert restored.turns == [_turn(n) for n in range(1, 301)]
    assert restored.turn_count == 300
    assert restored.total_tokens == sum(range(1, 301))
    assert restored.total_cost == _seq_sum([0.1 * n for n in range(1, 301)])
    assert restored == await store.load(sid)
    assert checkpoint.state.turns == restored.turns


async def test_a_restore_to_no_turns_returns_no_turns(store: DatabaseSessionStore) -> None:
    sid = await _session(store, 0)
    checkpoint, _ = await store.create_checkpoint(sid, checkpoint_id=f"cp-{uuid.uuid4().hex}")
    await store.append_turns(sid, [_turn(1)])
    restored = await store.restore_checkpoint(checkpoint.checkpoint_id)
    assert restored.turns == [] and restored.turn_count == 0 and restored.total_cost == 0.0


async def _damage_seq_3(store: DatabaseSessionStore, sid: str) -> None:
    """Replace the stored text of the session's turn 3 with a document of the wrong shape."""
    await _exec(
        store,
        f"UPDATE {store.table_prefix}turns SET data = :d WHERE session_id = :s AND seq = 3",
        d='{"oops": 1}',
        s=sid,
    )


async def test_a_damaged_row_fails_the_restore_naming_it(store: DatabaseSessionStore) -> None:
    sid = await _session(store, 5)
    checkpoint, _ = await store.create_checkpoint(sid, checkpoint_id=f"cp-{uuid.uuid4().hex}")
    await _damage_seq_3(store, sid)
    with pytest.raises(CorruptRecordError) as info:
        await store.restore_checkpoint(checkpoint.checkpoint_id)
    assert sid in str(info.value) and "3" in str(info.value)


async def test_get_state_names_a_damaged_row(store: DatabaseSessionStore) -> None:
    sid = await _session(store, 5)
    assert (await store.load(sid)).turns == [_turn(n) for n in range(1, 6)]  # type: ignore[union-attr]
    await _damage_seq_3(store, sid)
    with pytest.raises(CorruptRecordError) as info:
        await store.load(sid)
    assert sid in str(info.value) and "3" in str(info.value) and "field" in str(info.value)


def test_seqs_out_of_order_are_not_trusted() -> None:
    assert ops_turns._ascending("1,2,5")
    assert ops_turns._ascending(b"7")
    assert not ops_turns._ascending("1,3,2")
    assert not ops_turns._ascending("1,1")
    assert not ops_turns._ascending("1,,2")


class _Tx:
    """Answers the joined read with ``joined`` and the row read with ``rows``."""

    def __init__(self, joined: tuple[Any, ...], rows: list[tuple[int, str]]) -> None:
        self.joined, self.rows, self.row_reads = joined, rows, 0

    async def one(self, sql: str, params: Any = None) -> tuple[Any, ...]:
        return self.joined

    async def all(self, sql: str, params: Any = None) -> list[tuple[int, str]]:
        self.row_reads += 1
        return self.rows


class _Ctx:
    class q:
        class turns:
            live_array = "joined"
            live_turns = "rows"


@pytest.mark.parametrize(
    ("joined", "row_reads"),
    [
        (("[{a},{b}]", 2, "1,2"), 0),  # in order: used as it is
        (("[{b},{a}]", 2, "2,1"), 1),  # out of order: read again as rows
        (("[{a}]", 2, "1,2"), 1),  # fewer texts than rows: read again as rows
    ],
)
async def test_the_joined_read_is_used_only_when_it_is_whole_and_in_order(
    joined: tuple[Any, ...], row_reads: int
) -> None:
    a, b = (orjson.dumps(_turn(n)).decode() for n in (1, 2))
    array = joined[0].replace("{a}", a).replace("{b}", b)
    tx = _Tx((array, *joined[1:]), [(1, a), (2, b)])
    turns = await ops_turns.read_live_turns(tx, _Ctx, "s")  # type: ignore[arg-type]
    assert turns == [_turn(1), _turn(2)]
    assert tx.row_reads == row_reads
