"""SQLite: operations that wait for the worker thread together run in one hop.

While one hop runs, the operations that arrive queue on the event loop; the next hop
runs them all, the reads first, then the writes in one transaction, each write in a
savepoint of its own. Each write still succeeds or fails alone: one that fails is
undone alone, one whose failure rolls the whole transaction back leaves the others
to run again, and an operation cancelled before its hop started never runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionState, SessionTurn
from sqlalchemy import text

from lexigram.ai.session.exceptions import (
    DuplicateTurnError,
    SessionNotFoundError,
    SessionStoreError,
)
from lexigram.ai.session.stores.database import DatabaseSessionStore
from lexigram.ai.session.stores.sql import runner
from lexigram.ai.session.testing.support import make_state

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PREFIX = "ai_session_"


def _turn(turn_id: str, n: int = 0) -> SessionTurn:
    return SessionTurn(
        turn_id=turn_id,
        role="user",
        content=f"message {turn_id}",
        timestamp=T0 + timedelta(seconds=n),
        tokens_used=3,
        cost=0.25,
    )


def _header() -> SessionState:
    return make_state(created_at=T0, updated_at=T0)


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many operations each batched hop ran (the lone first one is not counted)."""
    sizes: list[int] = []
    run_ops = runner._run_ops

    def counted(conn: Any, ops: Sequence[Any]) -> Any:
        sizes.append(len(ops))
        return run_ops(conn, ops)

    monkeypatch.setattr(runner, "_run_ops", counted)
    return sizes


@contextlib.asynccontextmanager
async def _opened(url: str) -> AsyncIterator[DatabaseSessionStore]:
    store = DatabaseSessionStore(url, table_prefix=PREFIX)
    await store.initialize()
    try:
        yield store
    finally:
        await store.close()


async def _sessions(store: DatabaseSessionStore, n: int) -> list[str]:
    sids = []
    for _ in range(n):
        state = _header()
        await store.create_session(state)
        sids.append(state.session_id)
    return sids


async def _run(store: DatabaseSessionStore, sql: str) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(text(sql))


async def test_concurrent_appends_share_hops_and_each_gets_its_own_outcome(
    sqlite_url: str, hops: list[int]
) -> None:
    async with _opened(sqlite_url) as store:
        sids = await _sessions(store, 12)
        for sid in sids:
            await store.append_turns(sid, [_turn("first")])
        hops.clear()
        results = await asyncio.gather(
            *(
                store.append_turns(sid, [_turn(f"u{i}"), _turn(f"a{i}")])
                for i, sid in enumerate(sids)
            )
        )
        assert hops and max(hops) > 1  # the appends waiting behind the first ran together
        for sid, result in zip(sids, results, strict=True):
            assert result.record.state.session_id == sid
            assert result.record.state.turn_count == 3 and result.first_seq == 2
            record = await store.load_record(sid)
            assert record is not None and record.state.turn_count == 3
            assert [t.turn_id for t in await store.get_turns(sid)][1:] != []


async def test_a_failing_write_is_undone_alone(sqlite_url: str, hops: list[int]) -> None:
    async with _opened(sqlite_url) as store:
        sids = await _sessions(store, 6)
        for sid in sids:
            await store.append_turns(sid, [_turn("seen")])
        hops.clear()
        calls = [store.append_turns(sid, [_turn("new")]) for sid in sids]
        calls.insert(3, store.append_turns(sids[2], [_turn("fresh"), _turn("seen")]))
        calls.insert(5, store.append_turns("s-missing", [_turn("x")]))
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert hops and max(hops) > 1
        assert isinstance(outcomes[3], DuplicateTurnError)
        assert isinstance(outcomes[5], SessionNotFoundError)
        assert not any(
            isinstance(o, BaseException) for i, o in enumerate(outcomes) if i not in (3, 5)
        )
        for sid in sids:
            ids = [t.turn_id for t in await store.get_turns(sid)]
            assert ids == ["seen", "new"]  # "fresh" was undone with its failed append
            record = await store.load_record(sid)
            assert record is not None and record.state.turn_count == 2
            assert record.last_seq == 2


async def test_a_batch_whose_writes_all_fail_lets_the_write_lock_go(
    sqlite_url: str, hops: list[int]
) -> None:
    async with _opened(sqlite_url) as store, _opened(sqlite_url) as other:
        (sid,) = await _sessions(store, 1)
        hops.clear()
        missing = [store.append_turns(f"s-missing-{i}", [_turn("x")]) for i in range(6)]
        outcomes = await asyncio.gather(*missing, return_exceptions=True)
        assert hops and max(hops) > 1
        assert all(isinstance(o, SessionNotFoundError) for o in outcomes)
        # The same connection writes again, and so does another one (the lock is free).
        await store.append_turns(sid, [_turn("mine")])
        await asyncio.wait_for(other.append_turns(sid, [_turn("theirs")]), timeout=10)
        assert [t.turn_id for t in await other.get_turns(sid)] == ["mine", "theirs"]


async def test_a_write_that_rolls_back_the_transaction_leaves_the_others(
    sqlite_url: str, hops: list[int]
) -> None:
    async with _opened(sqlite_url) as store:
        sids = await _sessions(store, 6)
        for sid in sids:
            await store.append_turns(sid, [_turn("seen")])
        # RAISE(ROLLBACK) ends the whole transaction, as SQLite does on some I/O errors.
        await _run(
            store,
            f"CREATE TRIGGER poison BEFORE INSERT ON {PREFIX}turns WHEN NEW.turn_id = 'poison' "
            "BEGIN SELECT RAISE(ROLLBACK, 'poisoned'); END",
        )
        hops.clear()
        calls = [store.append_turns(sid, [_turn("new")]) for sid in sids]
        calls.insert(3, store.append_turns(sids[0], [_turn("poison")]))
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert hops and max(hops) > 2
        assert isinstance(outcomes[3], SessionStoreError)
        assert not any(isinstance(o, BaseException) for i, o in enumerate(outcomes) if i != 3)
        for sid in sids:
            assert [t.turn_id for t in await store.get_turns(sid)] == ["seen", "new"]
            record = await store.load_record(sid)
            assert record is not None and record.state.turn_count == 2


async def test_reads_in_a_hop_see_each_session_whole(sqlite_url: str) -> None:
    async with _opened(sqlite_url) as store:
        sids = await _sessions(store, 8)

        async def chat(sid: str) -> None:
            for i in range(10):
                turns = await store.get_turns(sid, last=4)
                assert [t.turn_id for t in turns] == [f"t{k}" for k in range(max(0, i - 4), i)]
                await store.append_turns(sid, [_turn(f"t{i}", i)])

        await asyncio.gather(*(chat(sid) for sid in sids))
        for sid in sids:
            record = await store.load_record(sid)
            assert record is not None and record.state.turn_count == 10


async def test_an_operation_cancelled_before_its_hop_never_runs(sqlite_url: str) -> None:
    async with _opened(sqlite_url) as store:
        (sid,) = await _sessions(store, 1)
        first = asyncio.create_task(store.append_turns(sid, [_turn("kept")]))
        queued = asyncio.create_task(store.append_turns(sid, [_turn("dropped")]))
        await asyncio.sleep(0)  # both started: the second waits behind the first
        queued.cancel()
        await first
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert [t.turn_id for t in await store.get_turns(sid)] == ["kept"]
        record = await store.load_record(sid)
        assert record is not None and record.state.turn_count == 1
