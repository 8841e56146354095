"""The Redis sweeper's batch scripts applied once when their reply is lost.

A batch on a single server is one ``<script>_many`` call per chunk of sessions,
recorded under one operation id: the client re-sends the call after the dropped
reply and gets the recorded one, so every session is reported exactly once.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionStatus
from lexigram.hooks import HookRegistry

from lexigram.ai.session.hooks import HOOK_SESSION_EXPIRED
from lexigram.ai.session.manager.cleanup import SessionCleanupScheduler
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.manager.notifier import SessionNotifier
from tests.faults.test_redis_faults import _TTL, rig, session_with

pytestmark = pytest.mark.redis


async def test_an_expiry_batch_with_a_lost_reply_reports_each_session_once() -> None:
    async with rig() as r:
        ids = [await session_with(r, user_id=f"u{n}") for n in range(3)]
        r.clock.advance(_TTL + 1)
        r.drop("mark_expired_many")
        outcome = await r.store.mark_expired_batch(ids)
        r.assert_dropped()
        assert sorted(rec.state.session_id for rec in outcome.done) == sorted(ids)
        assert {rec.state.status for rec in outcome.done} == {SessionStatus.EXPIRED}
        for sid in ids:
            assert await r.zscore(r.store.keys.ended, sid) is not None
            assert await r.zscore(r.store.keys.deadlines, sid) is None
        assert await r.store.find_expired() == []
        assert (await r.store.mark_expired_batch(ids)).done == []


async def test_a_purge_batch_with_a_lost_reply_reports_each_session_once() -> None:
    async with rig() as r:
        ids = [await session_with(r, turns=2) for _ in range(3)]
        r.clock.advance(_TTL + 1)
        await r.store.mark_expired_batch(ids)
        r.drop("purge_many")
        until = r.clock.now + timedelta(hours=1)
        outcome = await r.store.purge_batch(ids, tombstone_until=until)
        r.assert_dropped()
        assert sorted(outcome.done) == sorted(ids)
        for sid in ids:
            assert await r.store.load(sid) is None
            assert await r.zscore(r.store.keys.ended, sid) is None
            assert await r.user_index("alice", sid) == (False, False)


async def test_a_sweep_with_a_lost_batch_reply_fires_each_expiry_hook_once() -> None:
    async with rig() as r:
        ids = [await session_with(r, user_id=f"u{n}") for n in range(4)]
        manager = SessionManagerImpl(r.store, {"session_ttl": _TTL})
        hooks = HookRegistry("sweep-faults")
        fired: list[str] = []

        async def on_expired(*, payload: Any, **_: Any) -> None:
            fired.append(payload.session_id)

        hooks.register_action(HOOK_SESSION_EXPIRED, on_expired)
        manager.notifier = SessionNotifier(None, hooks)
        r.clock.advance(_TTL + 1)
        r.drop("mark_expired_many")
        report = await SessionCleanupScheduler(manager, purge_after_s=3600).sweep()
        r.assert_dropped()
        assert report.expired == 4
        assert sorted(fired) == sorted(ids)
