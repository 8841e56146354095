"""Helpers of ``test_cache.py``: worker processes (spawned) and a consistency check.

Kept in their own module so that ``multiprocessing`` "spawn" children import only
this, not the test module. It holds no tests.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.exceptions import SessionCapacityError
from lexigram.ai.session.stores.cache import CacheSessionStore

__all__ = [
    "T0",
    "append_forever",
    "append_worker",
    "assert_consistent",
    "create_worker",
    "turn",
]

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def turn(turn_id: str, n: int = 0, *, size: int = 64) -> SessionTurn:
    """A turn with ``size`` bytes of content and one token."""
    return SessionTurn(
        turn_id=turn_id,
        role="user",
        content="x" * size,
        timestamp=T0 + timedelta(seconds=n),
        tokens_used=1,
        cost=0.25,
    )


def _store(url: str, prefix: str, cluster: bool) -> CacheSessionStore:
    return CacheSessionStore(url, key_prefix=prefix, cluster=cluster, pool_size=4)


async def _append(url: str, prefix: str, cluster: bool, sid: str, worker: int, count: int) -> None:
    store = _store(url, prefix, cluster)
    await store.initialize()
    try:
        for i in range(count):
            await store.append_turns(sid, [turn(f"w{worker}-{i:04d}", i)])
    finally:
        await store.close()


def append_worker(
    url: str, prefix: str, cluster: bool, sid: str, worker: int, count: int, start: Any
) -> None:
    """Process body: wait for ``start``, then append ``count`` turns one by one."""
    start.wait(60)
    asyncio.run(_append(url, prefix, cluster, sid, worker, count))


async def _create(url: str, prefix: str, cluster: bool, user: str, tries: int, cap: int) -> int:
    store = _store(url, prefix, cluster)
    await store.initialize()
    made = 0
    try:
        for _ in range(tries):
            state = SessionState(
                session_id="s-" + uuid.uuid4().hex,
                user_id=user,
                status=SessionStatus.ACTIVE,
                created_at=T0,
                updated_at=T0,
            )
            try:
                await store.create_session(state, max_live_per_user=cap)
                made += 1
            except SessionCapacityError:
                pass
    finally:
        await store.close()
    return made


def create_worker(
    url: str, prefix: str, cluster: bool, user: str, tries: int, cap: int, start: Any, out: Any
) -> None:
    """Process body: try ``tries`` creates for ``user`` under ``cap``; put the successes."""
    start.wait(60)
    out.put(asyncio.run(_create(url, prefix, cluster, user, tries, cap)))


async def _forever(url: str, prefix: str, cluster: bool, sid: str) -> None:
    store = _store(url, prefix, cluster)
    await store.initialize()
    i = 0
    while True:
        batch = [turn(f"k-{i}-{j}", i, size=2000) for j in range(1 + i % 3)]
        await store.append_turns(sid, batch)
        i += 1


def append_forever(url: str, prefix: str, cluster: bool, sid: str) -> None:
    """Process body: append batches of 1-3 turns until killed."""
    asyncio.run(_forever(url, prefix, cluster, sid))


async def assert_consistent(store: CacheSessionStore, sid: str) -> SessionState:
    """Header counters, live list, id index and seq ranges all agree; returns the state."""
    state = await store.load(sid)
    assert state is not None
    ids = [t.turn_id for t in state.turns]
    assert state.turn_count == len(state.turns)
    assert len(set(ids)) == len(ids)
    assert state.total_tokens == sum(t.tokens_used for t in state.turns)
    assert abs(state.total_cost - sum(t.cost for t in state.turns)) < 1e-9
    keys = store.keys.session(sid)
    client = store.client
    assert await client.llen(keys[1]) == len(ids)
    assert await client.hlen(keys[3]) == len(ids)
    seqs = await store.get_turn_seqs(sid)
    assert [t.turn_id for _, t in seqs] == ids
    record = await store.load_record(sid)
    assert record is not None and record.last_seq >= len(ids)
    return state
