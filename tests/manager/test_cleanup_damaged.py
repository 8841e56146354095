"""One damaged record never stops a sweep: skipped, reported, quarantined, and the rest done.

Runs on every backend whose stored records can be damaged (SQLite, PostgreSQL, Redis):
the test corrupts real stored headers with the backend's own ``corrupt`` helper.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from lexigram.contracts.ai.session import SessionStatus

from lexigram.ai.session import SessionConfig, SessionManagerImpl
from lexigram.ai.session.exceptions import CorruptRecordError
from lexigram.ai.session.manager.cleanup import SessionCleanupScheduler
from lexigram.ai.session.testing import FakeClock

from ..stores.backends import BackendSpec, all_specs
from .test_events_telemetry import Otel, otel  # noqa: F401 - the fixture

DAMAGEABLE = [
    pytest.param(spec, id=spec.name, marks=spec.marks)
    for spec in all_specs()
    if spec.corrupt is not None
]


@pytest.mark.parametrize("spec", DAMAGEABLE)
async def test_damaged_records_are_skipped_reported_quarantined_and_the_sweep_goes_on(
    spec: BackendSpec, otel: Otel  # noqa: F811 - the fixture
) -> None:
    assert spec.corrupt is not None
    async with spec.open() as factory:
        store = await factory()
        clock = FakeClock(datetime.now(UTC))
        store.clock = clock
        manager = SessionManagerImpl(
            store, SessionConfig(session_ttl=60, auto_checkpoint_interval=None)
        )
        ended_ok = await manager.create("ended-ok")
        ended_bad = await manager.create("ended-bad")
        for state in (ended_ok, ended_bad):
            await manager.close(state.session_id)
        clock.advance(200)
        bad = await manager.create("bad")
        await manager.add_message(bad.session_id, "user", "hello")
        clock.advance(1)  # the damaged one is due first: it heads every batch
        healthy = [await manager.create(f"healthy-{i}") for i in range(3)]
        for state in healthy:
            await manager.add_message(state.session_id, "user", "hello")
        await spec.corrupt(store, bad.session_id)
        await spec.corrupt(store, ended_bad.session_id)
        clock.advance(70)  # the live ones are past their deadline; the ended ones purgeable

        # Batches of 1: a batch holding only a damaged record must not end the phase.
        scheduler = SessionCleanupScheduler(manager, purge_after_s=100, batch_size=1)
        report = await scheduler.sweep()
        assert (report.expired, report.purged, report.damaged) == (3, 2, 1)
        for state in healthy:
            record = await store.load_record(state.session_id)
            assert record is not None and record.state.status == SessionStatus.EXPIRED
        # An ended session is purged by its status, whatever its damaged metadata.
        for state in (ended_ok, ended_bad):
            assert await store.load_record(state.session_id) is None
        # The damaged live record is left as it is, for an operator.
        with pytest.raises(CorruptRecordError) as info:
            await store.load(bad.session_id)
        assert bad.session_id in str(info.value)
        assert otel.total("ai_session.sweep.damaged") == 1

        # Quarantined: the next sweeps do not meet them again.
        clock.advance(3600)
        again = await scheduler.sweep()
        assert again.damaged == 0 and again.skipped == 0
        assert again.purged == 3  # the healthy sessions expired above, now old enough
        assert (await scheduler.sweep()).damaged == 0
        assert otel.total("ai_session.sweep.damaged") == 1
        with pytest.raises(CorruptRecordError):
            await store.load(bad.session_id)


@pytest.mark.parametrize("spec", DAMAGEABLE)
async def test_the_manager_deletes_a_damaged_session(spec: BackendSpec) -> None:
    assert spec.corrupt is not None
    async with spec.open() as factory:
        store = await factory()
        manager = SessionManagerImpl(store, SessionConfig(auto_checkpoint_interval=None))
        bad = await manager.create("dora")
        await spec.corrupt(store, bad.session_id)
        with pytest.raises(CorruptRecordError):
            await manager.get_header(bad.session_id)
        assert await manager.delete(bad.session_id) is True
        assert await manager.get_header(bad.session_id) is None
        page = await manager.list_sessions("dora")
        assert page.items == [] and page.damaged == []


@pytest.mark.parametrize("spec", DAMAGEABLE)
async def test_a_damaged_record_replaced_before_its_quarantine_is_left_alone(
    spec: BackendSpec,
) -> None:
    """The sweeper met a damaged record, then (before it quarantined the id) the session
    was deleted and created again, healthy, under the same id: quarantine marked the new
    one and every write to it was refused (a regression audit). The record is read once
    more first."""
    assert spec.corrupt is not None
    async with spec.open() as factory:
        store = await factory()
        manager = SessionManagerImpl(store, SessionConfig(auto_checkpoint_interval=None))
        sid = (await manager.create("hank", session_id="hank-1")).session_id
        await spec.corrupt(store, sid)
        scheduler = SessionCleanupScheduler(manager)
        damage = CorruptRecordError(f"session {sid!r}", "as the batch met it")
        await store.delete(sid)
        await manager.create("hank", session_id=sid)  # healthy again, same id
        assert await scheduler._quarantine(sid, "expire", damage) is False
        await manager.add_message(sid, "user", "still writable")
        state = await manager.get_state(sid)
        assert state is not None and [t.content for t in state.turns] == ["still writable"]
        assert await store.count_live_sessions("hank") == 1
        # still damaged: quarantined as before
        other = (await manager.create("hank", session_id="hank-2")).session_id
        await spec.corrupt(store, other)
        assert await scheduler._quarantine(other, "expire", damage) is True
