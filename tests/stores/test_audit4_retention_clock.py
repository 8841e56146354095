"""Checkpoint retention by created_at (Redis), and writes whose clock is behind (memory).

* Retention prunes the oldest checkpoints by the listing's order: ``created_at``,
  oldest first, ties in the order stored, including checkpoints an import saved
  out of order (docs/architecture.md). Redis used to prune the first one stored.
* ``updated_at`` and the deadline never move backwards when a writer's clock is
  behind the one that wrote last (docs/backend-sql.md); the in-memory store used to
  take the writer's time as it was.

The Redis tests run against the real server on 127.0.0.1:6379; the in-memory store
is the reference they are compared with.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
from lexigram.contracts.ai.session import SessionCheckpoint, SessionStatus

from lexigram.ai.session.exceptions import CorruptRecordError
from lexigram.ai.session.stores.base import SessionPatch, SessionStore
from lexigram.ai.session.stores.cache import CacheSessionStore
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from lexigram.ai.session.testing.support import FakeClock, make_state, make_turn
from tests.stores.backends.redis import open_store

_TTL = 100


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[SessionStore]:
    if request.param == "memory":
        yield InMemorySessionStore(session_ttl=_TTL, clock=clock)
        return
    async with open_store(cluster=False, session_ttl=_TTL, clock=clock) as factory:
        yield await factory()


async def _session_with_checkpoints(
    store: SessionStore, clock: FakeClock, offsets: list[int]
) -> tuple[str, list[str]]:
    """A session, and checkpoints created ``offsets`` seconds from now, saved in that order."""
    state = make_state()
    sid = state.session_id
    await store.create_session(state)
    await store.append_turns(sid, [make_turn(0)])
    loaded = await store.load(sid)
    assert loaded is not None
    ids = []
    for n, off in enumerate(offsets):
        cpid = f"cp{n}-{sid}"
        ids.append(cpid)
        await store.save_checkpoint(
            SessionCheckpoint(
                checkpoint_id=cpid,
                session_id=sid,
                state=loaded,
                created_at=clock.now + timedelta(seconds=off),
                parent_checkpoint_id=None,
                metadata={},
            )
        )
    return sid, ids


async def _listed(store: SessionStore, sid: str) -> list[str]:
    return [c.checkpoint_id for c in await store.list_checkpoint_headers(sid)]


async def test_retention_prunes_oldest_by_created_at(store: SessionStore, clock: FakeClock) -> None:
    sid, (m10, m30, m20) = await _session_with_checkpoints(store, clock, [-10, -30, -20])
    assert await _listed(store, sid) == [m30, m20, m10]
    new, pruned = await store.create_checkpoint(sid, checkpoint_id=f"new-{sid}", max_checkpoints=3)
    assert pruned == [m30]
    assert await _listed(store, sid) == [m20, m10, new.checkpoint_id]
    assert await store.load_checkpoint(m30) is None
    assert await store.load_checkpoint(m10) is not None


async def test_retention_prunes_several_and_ties_by_storage_order(
    store: SessionStore, clock: FakeClock
) -> None:
    sid, (a, b, c, d) = await _session_with_checkpoints(store, clock, [-5, -20, -20, -40])
    assert await _listed(store, sid) == [d, b, c, a]
    new, pruned = await store.create_checkpoint(sid, checkpoint_id=f"new-{sid}", max_checkpoints=2)
    assert pruned == [d, b, c]
    assert await _listed(store, sid) == [a, new.checkpoint_id]
    for gone in pruned:
        assert await store.load_checkpoint(gone) is None


async def test_retention_counts_the_new_checkpoint_in_created_at_order(
    store: SessionStore, clock: FakeClock
) -> None:
    # Saved checkpoints from the future (another clock): the new one is the oldest.
    sid, (f1, f2) = await _session_with_checkpoints(store, clock, [30, 20])
    new, pruned = await store.create_checkpoint(sid, checkpoint_id=f"new-{sid}", max_checkpoints=2)
    assert pruned == [new.checkpoint_id]
    assert await _listed(store, sid) == [f2, f1]


async def test_retention_without_excess_prunes_nothing(
    store: SessionStore, clock: FakeClock
) -> None:
    sid, (m10, m30) = await _session_with_checkpoints(store, clock, [-10, -30])
    new, pruned = await store.create_checkpoint(sid, checkpoint_id=f"new-{sid}", max_checkpoints=3)
    assert pruned == []
    assert await _listed(store, sid) == [m30, m10, new.checkpoint_id]


# ------------------------------------------------- a writer's clock behind (all writes)
async def _fresh(store: SessionStore, clock: FakeClock) -> tuple[str, datetime, datetime | None]:
    """A session written at now + 50 s, then the clock put back 40 s (a slower writer)."""
    state = make_state()
    sid = state.session_id
    await store.create_session(state)
    await store.create_checkpoint(sid, checkpoint_id=f"cp-{sid}")
    clock.advance(50)
    await store.append_turns(sid, [make_turn(0), make_turn(1)])
    record = await store.load_record(sid)
    assert record is not None
    assert record.state.updated_at == clock.now
    assert record.expires_at == clock.now + timedelta(seconds=_TTL)
    clock.advance(-40)
    return sid, record.state.updated_at, record.expires_at


async def _assert_kept(
    store: SessionStore, sid: str, updated: datetime, expires: datetime | None
) -> None:
    record = await store.load_record(sid)
    assert record is not None
    assert record.state.updated_at == updated
    assert record.expires_at == expires


async def test_append_behind_keeps_later_updated_at_and_deadline(
    store: SessionStore, clock: FakeClock
) -> None:
    sid, updated, expires = await _fresh(store, clock)
    await store.append_turns(sid, [make_turn(2)], patch=SessionPatch(variables={"k": 1}))
    await _assert_kept(store, sid, updated, expires)
    # Within the deadline of the later write: still live.
    clock.advance(40 + _TTL - 5)
    record = await store.load_record(sid)
    assert record is not None and record.state.status == SessionStatus.ACTIVE
    clock.advance(10)
    record = await store.load_record(sid)
    assert record is not None and record.state.status == SessionStatus.EXPIRED


async def test_update_behind_keeps_later_updated_at_and_deadline(
    store: SessionStore, clock: FakeClock
) -> None:
    sid, updated, expires = await _fresh(store, clock)
    record = await store.update_session(sid, SessionPatch(variables={"k": 2}))
    assert record.state.updated_at == updated
    assert record.state.variables == {"k": 2}
    await _assert_kept(store, sid, updated, expires)


async def test_pop_and_clear_behind_keep_later_updated_at_and_deadline(
    store: SessionStore, clock: FakeClock
) -> None:
    sid, updated, expires = await _fresh(store, clock)
    assert await store.pop_turn(sid) is not None
    await _assert_kept(store, sid, updated, expires)
    assert await store.clear_turns(sid) == 1
    await _assert_kept(store, sid, updated, expires)


async def test_transition_behind_keeps_later_updated_at_and_deadline(
    store: SessionStore, clock: FakeClock
) -> None:
    sid, updated, expires = await _fresh(store, clock)
    _A, _S = SessionStatus.ACTIVE, SessionStatus.SUSPENDED
    record = await store.transition(sid, _S, allowed_from=frozenset({_A}))
    assert record.state.updated_at == updated
    assert record.expires_at == expires
    await store.transition(sid, _A, allowed_from=frozenset({_S}))
    await _assert_kept(store, sid, updated, expires)


async def test_restore_behind_keeps_later_updated_at_and_deadline(
    store: SessionStore, clock: FakeClock
) -> None:
    sid, updated, expires = await _fresh(store, clock)
    restored = await store.restore_checkpoint(f"cp-{sid}")
    assert restored.updated_at == updated
    await _assert_kept(store, sid, updated, expires)


async def test_write_ahead_still_moves_forward(store: SessionStore, clock: FakeClock) -> None:
    sid, updated, _ = await _fresh(store, clock)
    clock.advance(60)  # 20 s past the last write
    await store.append_turns(sid, [make_turn(3)])
    record = await store.load_record(sid)
    assert record is not None
    assert record.state.updated_at == clock.now > updated
    assert record.expires_at == clock.now + timedelta(seconds=_TTL)


@pytest.mark.redis
async def test_redis_retention_refuses_a_damaged_checkpoint_before_writing(
    clock: FakeClock,
) -> None:
    async with open_store(cluster=False, session_ttl=_TTL, clock=clock) as factory:
        store = await factory()
        assert isinstance(store, CacheSessionStore)
        sid, (m10, m30) = await _session_with_checkpoints(store, clock, [-10, -30])
        await store.client.hset(store.keys.checkpoint_docs(sid), m30, b"{not json")
        with pytest.raises(CorruptRecordError):
            await store.create_checkpoint(sid, checkpoint_id=f"new-{sid}", max_checkpoints=2)
        # Nothing written: neither the new checkpoint nor a prune.
        assert await store.load_checkpoint(f"new-{sid}") is None
        assert await store.client.hexists(store.keys.checkpoint_docs(sid), m30)
        loaded = await store.load_checkpoint(m10)
        assert loaded is not None
        record = await store.load_record(sid)
        assert record is not None and record.state.checkpoint_id is None
        # Without a retention limit no order is needed: the checkpoint is taken.
        new, pruned = await store.create_checkpoint(sid, checkpoint_id=f"new2-{sid}")
        assert pruned == [] and new.checkpoint_id == f"new2-{sid}"
