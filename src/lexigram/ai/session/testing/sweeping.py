"""The conformance tests of one capability.

Sweeping: expiry deadlines, find/mark expired (single and batched), purge and
tombstones.
"""


from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from lexigram.ai.session.exceptions import (
    SessionExpiredError,
    SessionNotFoundError,
    SessionValidationError,
)
from lexigram.ai.session.stores.base import SessionPatch, SessionStore
from lexigram.ai.session.testing.support import (
    _A,
    _C,
    _E,
    _S,
    SuiteBase,
    make_turn,
)

__all__ = ["SweepingSuite"]


class SweepingSuite(SuiteBase):
    """Sweeping: expiry deadlines, find/mark expired (single and batched), purge and tombstones."""

    # ------------------------------------------------------------------- TTL
    async def test_idle_session_expires(self, store: SessionStore) -> None:
        store.session_ttl = 60
        state = await self._session(store)
        await store.append_turns(state.session_id, [make_turn(1)])
        self.clock(store).advance(59)
        loaded = await store.load(state.session_id)
        assert loaded is not None and loaded.status == _A
        self.clock(store).advance(2)
        loaded = await store.load(state.session_id)
        assert loaded is not None and loaded.status == _E
        record = await store.load_record(state.session_id)
        assert record is not None and record.state.status == _E
        with pytest.raises(SessionExpiredError):
            await store.append_turns(state.session_id, [make_turn(2)])
        with pytest.raises(SessionExpiredError):
            await store.transition(state.session_id, _C, allowed_from=frozenset({_A, _S}))
        assert await store.count_live_sessions("alice") == 0
        assert state.session_id in await store.find_expired()
        marked = await store.mark_expired(state.session_id)
        assert marked is not None and marked.state.status == _E
        assert await store.mark_expired(state.session_id) is None
        assert state.session_id not in await store.find_expired()
        loaded = await store.load(state.session_id)
        assert loaded is not None and loaded.status == _E and loaded.turn_count == 1

    async def test_activity_pushes_the_deadline(self, store: SessionStore) -> None:
        store.session_ttl = 60
        state = await self._session(store)
        for i in range(3):
            self.clock(store).advance(50)
            await store.append_turns(state.session_id, [make_turn(i)])
        assert await store.find_expired() == []
        loaded = await store.load(state.session_id)
        assert loaded is not None and loaded.status == _A

    async def test_a_lower_ttl_never_shortens_the_deadline(self, store: SessionStore) -> None:
        """A write pushes the deadline to ``updated_at + session_ttl`` but never before the
        stored one: lowering ``session_ttl`` does not cut short a deadline already given."""
        store.session_ttl = 3600
        state = await self._session(store)
        sid = state.session_id
        long_deadline = self.clock(store).now + timedelta(hours=1)
        result = await store.append_turns(sid, [make_turn(1)])
        assert result.record.expires_at == long_deadline
        store.session_ttl = 60
        result = await store.append_turns(sid, [make_turn(2)])
        assert result.record.expires_at == long_deadline
        self.clock(store).advance(120)  # past what a TTL of 60 s alone would give
        record = await store.load_record(sid)
        assert record is not None and record.state.status == _A
        assert record.expires_at == long_deadline
        assert sid not in await store.find_expired()
        self.clock(store).advance(3600 - 120 + 1)
        record = await store.load_record(sid)
        assert record is not None and record.state.status == _E

    async def test_a_write_by_a_clock_behind_never_shortens_the_deadline(
        self, store: SessionStore
    ) -> None:
        """A writer whose clock runs behind keeps the stored deadline."""
        store.session_ttl = 600
        state = await self._session(store)
        sid = state.session_id
        clock = self.clock(store)
        clock.advance(300)
        deadline = clock.now + timedelta(seconds=600)
        result = await store.append_turns(sid, [make_turn(1)])
        assert result.record.expires_at == deadline
        clock.advance(-200)  # this writer's clock is 200 s behind the last one
        result = await store.append_turns(sid, [make_turn(2)])
        assert result.record.expires_at == deadline
        updated = await store.update_session(sid, SessionPatch(variables={"v": 1}))
        assert updated.expires_at == deadline
        clock.advance(700)  # 100 s before the deadline, past what the late writes alone give
        record = await store.load_record(sid)
        assert record is not None and record.state.status == _A
        assert record.expires_at == deadline
        assert sid not in await store.find_expired()

    async def test_concurrent_sweepers_mark_once(self, store: SessionStore) -> None:
        store.session_ttl = 10
        states = [await self._session(store, f"u{i}") for i in range(5)]
        self.clock(store).advance(11)
        results = await asyncio.gather(
            *(store.mark_expired(s.session_id) for s in states for _ in range(4))
        )
        assert sum(r is not None for r in results) == 5

    async def test_mark_expired_batch_expires_only_the_due_once(self, store: SessionStore) -> None:
        store.session_ttl = 60
        due = [await self._session(store, f"due{i}") for i in range(4)]
        closed = await self._session(store, "closed")
        await store.transition(closed.session_id, _C, allowed_from=frozenset({_A}))
        self.clock(store).advance(61)
        now = self.clock(store).now
        fresh = await self._session(store, "fresh", created_at=now, updated_at=now)
        ids = [s.session_id for s in due] + [closed.session_id, fresh.session_id, "missing-id"]
        outcome = await store.mark_expired_batch(ids)
        assert sorted(r.state.session_id for r in outcome.done) == sorted(
            s.session_id for s in due
        )
        assert all(r.state.status == _E for r in outcome.done)
        assert outcome.damaged == [] and outcome.failed == []
        again = await store.mark_expired_batch(ids)
        assert again.done == []
        for state in due:
            record = await store.load_record(state.session_id)
            assert record is not None and record.state.status == _E
        fresh_record = await store.load_record(fresh.session_id)
        assert fresh_record is not None and fresh_record.state.status == _A
        closed_record = await store.load_record(closed.session_id)
        assert closed_record is not None and closed_record.state.status == _C
        assert await store.find_expired() == []
        assert (await store.mark_expired_batch([])).done == []

    async def test_concurrent_batches_expire_each_session_once(self, store: SessionStore) -> None:
        store.session_ttl = 10
        states = [await self._session(store, f"u{i}") for i in range(6)]
        self.clock(store).advance(11)
        ids = [s.session_id for s in states]
        outcomes = await asyncio.gather(
            *(store.mark_expired_batch(ids[i:] + ids[:i]) for i in range(4))
        )
        won = [r.state.session_id for o in outcomes for r in o.done]
        assert sorted(won) == sorted(ids)

    async def test_purge_batch_removes_only_ended_and_tombstones(
        self, store: SessionStore
    ) -> None:
        ended = [await self._session(store, f"e{i}") for i in range(3)]
        for state in ended:
            await store.append_turns(state.session_id, [make_turn(1)])
            await store.create_checkpoint(state.session_id, checkpoint_id="cp-" + uuid.uuid4().hex)
            await store.transition(state.session_id, _C, allowed_from=frozenset({_A}))
        live = await self._session(store, "live")
        until = self.clock(store).now + timedelta(hours=1)
        ids = [s.session_id for s in ended] + [live.session_id, "missing-id"]
        outcome = await store.purge_batch(ids, tombstone_until=until)
        assert sorted(outcome.done) == sorted(s.session_id for s in ended)
        assert outcome.damaged == [] and outcome.failed == []
        assert (await store.purge_batch(ids, tombstone_until=until)).done == []
        for state in ended:
            assert await store.load(state.session_id) is None
            assert await store.list_checkpoint_headers(state.session_id) == []
            with pytest.raises(SessionValidationError):
                await store.create_session(state)
        assert await store.load_record(live.session_id) is not None
        self.clock(store).advance(100)
        assert await store.find_purgeable(older_than=self.clock(store).now) == []
        self.clock(store).advance(3601)
        await store.create_session(ended[0])

    async def test_batches_answer_in_the_order_asked(self, store: SessionStore) -> None:
        store.session_ttl = 10
        states = [await self._session(store, f"o{i}") for i in range(5)]
        self.clock(store).advance(11)
        ids = [s.session_id for s in reversed(states)]
        ids = ids[2:] + ids[:2]
        expired = await store.mark_expired_batch(ids)
        assert [r.state.session_id for r in expired.done] == ids
        until = self.clock(store).now + timedelta(hours=1)
        purged = await store.purge_batch(ids, tombstone_until=until)
        assert purged.done == ids

    async def test_purge_leaves_a_tombstone(self, store: SessionStore) -> None:
        state = await self._session(store)
        await store.append_turns(state.session_id, [make_turn(1)])
        await store.create_checkpoint(state.session_id, checkpoint_id="cp-" + uuid.uuid4().hex)
        open_state = await self._session(store)
        await store.transition(state.session_id, _C, allowed_from=frozenset({_A}))
        self.clock(store).advance(100)
        purgeable = await store.find_purgeable(older_than=self.clock(store).now)
        assert state.session_id in purgeable
        assert open_state.session_id not in purgeable
        until = self.clock(store).now + timedelta(hours=1)
        assert await store.purge(state.session_id, tombstone_until=until)
        assert not await store.purge(state.session_id, tombstone_until=until)
        assert not await store.purge(open_state.session_id, tombstone_until=until)
        assert await store.load(state.session_id) is None
        assert await store.list_checkpoint_headers(state.session_id) == []
        with pytest.raises(SessionValidationError):
            await store.create_session(state)
        with pytest.raises(SessionNotFoundError):
            await store.save(state)
        # id_taken answers what create_session would, without writing; the default
        # (not overridden) sees stored sessions only, so a purged id is not asked of it.
        sees_tombstones = type(store).id_taken is not SessionStore.id_taken
        assert await store.id_taken(state.session_id) is sees_tombstones
        assert await store.id_taken(open_state.session_id)
        assert not await store.id_taken("never-" + uuid.uuid4().hex)
        self.clock(store).advance(3601)
        assert not await store.id_taken(state.session_id)
        await store.create_session(state)
        assert await store.id_taken(state.session_id)

    async def test_find_purgeable_keeps_sessions_ended_after_older_than(
        self, store: SessionStore
    ) -> None:
        """Only sessions that ended before ``older_than`` are offered for purging."""
        early = await self._session(store)
        await store.transition(early.session_id, _C, allowed_from=frozenset({_A}))
        self.clock(store).advance(100)
        cutoff = self.clock(store).now
        self.clock(store).advance(100)
        late = await self._session(store)
        await store.transition(late.session_id, _C, allowed_from=frozenset({_A}))
        found = await store.find_purgeable(older_than=cutoff)
        assert early.session_id in found
        assert late.session_id not in found
