"""A restore or fork of a checkpoint racing its delete sees all of it or none (PostgreSQL).

An outside audit: under READ COMMITTED, ``restore(A)`` and ``fork(from_checkpoint=A)``
read A's row while ``delete_checkpoint(A)``, not yet committed, had removed it and was
collecting the turns only A named. The restore then made live what was left of A's
turns (10 of 60: the session's newer turns gone from the history, A's totals and id
on it), and a fork copied as few. SQLite, MariaDB, Redis and memory give all of A or
``CheckpointNotFoundError``; PostgreSQL now does too, because the delete locks the
session's header first, as the restore and the fork do.

The interleavings are forced with a row lock held from a connection of the test, and
the server is asked which of the store's connections wait, so each test runs the
interleaving that lost turns before, every time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.exceptions import CheckpointNotFoundError
from lexigram.ai.session.stores.database import DatabaseSessionStore, drop_schema
from tests.services import POSTGRES_URL, require_postgres

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RAW_URL = POSTGRES_URL.replace("+asyncpg", "")


def _turn(n: int) -> SessionTurn:
    return SessionTurn(
        turn_id=f"t{n}",
        role="user",
        content=f"m{n}",
        timestamp=T0 + timedelta(seconds=n),
        tokens_used=1,
    )


@pytest.fixture
async def store() -> AsyncIterator[DatabaseSessionStore]:
    require_postgres()
    prefix = f"dev4{uuid.uuid4().hex[:10]}_"
    opened = DatabaseSessionStore(POSTGRES_URL, table_prefix=prefix, pool_size=4)
    await opened.initialize()
    try:
        yield opened
    finally:
        await opened.close()
        await drop_schema(POSTGRES_URL, table_prefix=prefix)


async def _session(store: DatabaseSessionStore, n: int) -> str:
    sid = f"s-{uuid.uuid4().hex}"
    state = SessionState(
        session_id=sid,
        user_id="alice",
        status=SessionStatus.ACTIVE,
        created_at=T0,
        updated_at=T0,
    )
    await store.create_session(state)
    await store.append_turns(sid, [_turn(i) for i in range(1, n + 1)])
    return sid


async def _waiting(raw: asyncpg.Connection, store: DatabaseSessionStore, count: int) -> None:
    """Until ``count`` of the store's connections wait for a lock."""
    app = f"lexigram-ai-session:{store.table_prefix}"[:63]
    sql = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name = $1 AND wait_event_type = 'Lock'"
    )
    for _ in range(500):
        if await raw.fetchval(sql, app) >= count:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"{count} of the store's connections never waited for a lock")


async def _settled(
    task: asyncio.Task[Any], raw: asyncpg.Connection, store: DatabaseSessionStore, waiters: int
) -> None:
    """Until ``task`` is done or ``waiters`` of the store's connections wait."""
    app = f"lexigram-ai-session:{store.table_prefix}"[:63]
    sql = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name = $1 AND wait_event_type = 'Lock'"
    )
    for _ in range(500):
        if task.done() or await raw.fetchval(sql, app) >= waiters:
            return
        await asyncio.sleep(0.01)
    pytest.fail("the delete neither finished nor waited")


async def test_restore_racing_the_delete_of_its_checkpoint_gets_all_of_it_or_none(
    store: DatabaseSessionStore,
) -> None:
    sid = await _session(store, 10)
    b, _ = await store.create_checkpoint(sid, checkpoint_id="cp-b")
    await store.append_turns(sid, [_turn(i) for i in range(11, 61)])
    a, _ = await store.create_checkpoint(sid, checkpoint_id="cp-a")  # 60 turns
    await store.restore_checkpoint(b.checkpoint_id)  # turns 11..60: named by A only
    await store.append_turns(sid, [_turn(i) for i in range(61, 66)])  # 15 live turns
    raw = await asyncpg.connect(RAW_URL)
    try:
        holder = await asyncpg.connect(RAW_URL)
        tr = holder.transaction()
        await tr.start()
        # The delete's collection of A's turns will wait for this row.
        await holder.execute(
            f"SELECT 1 FROM {store.table_prefix}turns WHERE session_id = $1 AND seq = 60 "
            "FOR UPDATE",
            sid,
        )
        delete = asyncio.create_task(store.delete_checkpoint(a.checkpoint_id))
        await _waiting(raw, store, 1)  # the delete is under way, not committed
        restore = asyncio.create_task(store.restore_checkpoint(a.checkpoint_id))
        await _waiting(raw, store, 2)  # the restore waits too (before: for A's turns)
        await tr.rollback()
        await holder.close()
        assert await delete is True
        try:
            restored = await restore
        except CheckpointNotFoundError:
            restored = None
    finally:
        await raw.close()
    state = await store.load(sid)
    assert state is not None
    if restored is None:  # the delete went first: the session is as it was
        assert [t.turn_id for t in state.turns] == [f"t{i}" for i in range(1, 11)] + [
            f"t{i}" for i in range(61, 66)
        ]
        assert state.turn_count == 15 and state.total_tokens == 15
    else:
        assert restored.turn_count == 60 and len(restored.turns) == 60
        assert [t.turn_id for t in state.turns] == [f"t{i}" for i in range(1, 61)]
        assert state.turn_count == state.total_tokens == 60


async def test_fork_racing_the_delete_of_its_checkpoint_gets_all_of_it_or_none(
    store: DatabaseSessionStore,
) -> None:
    sid = await _session(store, 10)
    b, _ = await store.create_checkpoint(sid, checkpoint_id="cp-b")  # [1, 10]
    await store.append_turns(sid, [_turn(i) for i in range(11, 21)])
    await store.create_checkpoint(sid, checkpoint_id="cp-c")  # [1, 20]
    await store.restore_checkpoint(b.checkpoint_id)
    await store.append_turns(sid, [_turn(i) for i in range(21, 31)])  # live [1,10], [21,30]
    a, _ = await store.create_checkpoint(sid, checkpoint_id="cp-a")
    await store.restore_checkpoint(b.checkpoint_id)  # turns 21..30: named by A only
    new_id = f"branch-{uuid.uuid4().hex}"
    branch = SessionState(
        session_id=new_id,
        user_id="alice",
        status=SessionStatus.ACTIVE,
        created_at=T0,
        updated_at=T0,
    )
    raw = await asyncpg.connect(RAW_URL)
    try:
        holder = await asyncpg.connect(RAW_URL)
        tr = holder.transaction()
        await tr.start()
        # The fork's copy of A's first range will wait for this uncommitted row of
        # the branch (the same key), after the fork read A's row.
        await holder.execute(
            f"INSERT INTO {store.table_prefix}turns "
            "(session_id, seq, turn_id, live, tokens_used, cost, data) "
            "VALUES ($1, 1, 'x', 0, 0, 0, '{}')",
            new_id,
        )
        fork = asyncio.create_task(store.fork_session(sid, branch, from_checkpoint=a.checkpoint_id))
        await _waiting(raw, store, 1)
        delete = asyncio.create_task(store.delete_checkpoint(a.checkpoint_id))
        # Before: the delete committed here, taking turns 21..30 with it, and the copy
        # of A's second range found none of them.
        await _settled(delete, raw, store, 2)
        await tr.rollback()
        await holder.close()
        try:
            record = await fork
        except CheckpointNotFoundError:
            record = None
        assert await delete is True
    finally:
        await raw.close()
    assert record is not None  # the fork held the session first
    assert record.state.turn_count == 20
    state = await store.load(new_id)
    assert state is not None
    assert [t.turn_id for t in state.turns] == [f"t{i}" for i in range(1, 11)] + [
        f"t{i}" for i in range(21, 31)
    ]
    assert state.total_tokens == 20
    assert await store.load_checkpoint(a.checkpoint_id) is None
