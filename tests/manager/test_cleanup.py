"""The cleanup scheduler: expiry, purge with tombstones, two sweepers, boot/shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionStatus
from lexigram.hooks import HookRegistry

from lexigram import Application
from lexigram.ai.session import (
    InMemorySessionStore,
    SessionConfig,
    SessionExpiredError,
    SessionModule,
    SessionNotFoundError,
    SessionValidationError,
)
from lexigram.ai.session.hooks import HOOK_SESSION_CLOSED, HOOK_SESSION_EXPIRED
from lexigram.ai.session.manager.cleanup import SessionCleanupScheduler
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.manager.notifier import SessionNotifier
from lexigram.ai.session.stores.base import SessionStore

from ..stores.backends import BackendSpec, all_specs
from .test_events_support import RecordingConsolidator, collaborators_module, record_hooks

BACKENDS = [pytest.param(spec, id=spec.name, marks=spec.marks) for spec in all_specs()]

StoreFactory = Callable[[], Awaitable[SessionStore]]


@asynccontextmanager
async def open_backend(spec: BackendSpec) -> AsyncIterator[StoreFactory]:
    """The spec's store factory (each call: a store instance on one private namespace)."""
    async with spec.open() as factory:
        yield factory


def make_manager(store: SessionStore, **config: Any) -> SessionManagerImpl:
    settings: dict[str, Any] = {"session_ttl": 1, "auto_checkpoint_interval": None}
    settings.update(config)
    return SessionManagerImpl(store, SessionConfig(**settings))


@pytest.mark.parametrize("spec", BACKENDS)
async def test_idle_session_is_expired_refuses_turns_and_sweep_persists_it(
    spec: BackendSpec,
) -> None:
    async with open_backend(spec) as factory:
        manager = make_manager(await factory())
        idle = await manager.create("u-idle")
        busy = await manager.create("u-busy")
        await manager.add_message(idle.session_id, "user", "hello")
        for _ in range(4):
            await asyncio.sleep(0.35)
            await manager.add_message(busy.session_id, "user", "still here")
        # idle: last write ~1.4 s ago, TTL 1 s; busy: written just now
        state = await manager.get_state(idle.session_id)
        assert state is not None and state.status == SessionStatus.EXPIRED
        with pytest.raises(SessionExpiredError):
            await manager.add_message(idle.session_id, "user", "too late")
        scheduler = SessionCleanupScheduler(manager, purge_after_s=3600)
        report = await scheduler.sweep()
        assert report.expired == 1 and report.purged == 0
        stored = await manager.store.load_record(idle.session_id)
        assert stored is not None and stored.state.status == SessionStatus.EXPIRED
        assert stored.state.turn_count == 1
        live = await manager.get_state(busy.session_id)
        assert live is not None and live.status == SessionStatus.ACTIVE
        assert (await scheduler.sweep()).expired == 0
        with pytest.raises(SessionExpiredError):
            await manager.add_message(idle.session_id, "user", "still too late")


@pytest.mark.parametrize("spec", BACKENDS)
async def test_two_sweepers_on_one_store_neither_double_fire_nor_lose(spec: BackendSpec) -> None:
    async with open_backend(spec) as factory:
        managers = [make_manager(await factory()) for _ in range(2)]
        for i, manager in enumerate(managers):
            manager.notifier = SessionNotifier(None, HookRegistry(f"sweeper-{i}"))
        seen = [record_hooks(m.notifier.hooks, HOOK_SESSION_EXPIRED) for m in managers]
        users = [f"user-{i}" for i in range(8)]
        ids = set()
        for n in range(40):
            state = await managers[n % 2].create(users[n % len(users)])
            ids.add(state.session_id)
        await asyncio.sleep(1.2)
        sweepers = [SessionCleanupScheduler(m, batch_size=7, purge_after_s=3600) for m in managers]
        reports = await asyncio.gather(*(s.sweep() for s in sweepers))
        fired = [p.session_id for s in seen for p in s[HOOK_SESSION_EXPIRED]]
        assert sorted(fired) == sorted(ids)  # each exactly once, none lost
        assert sum(r.expired for r in reports) == len(ids)
        for sid in ids:
            record = await managers[0].store.load_record(sid)
            assert record is not None and record.state.status == SessionStatus.EXPIRED
        again = await asyncio.gather(*(s.sweep() for s in sweepers))
        assert [r.expired for r in again] == [0, 0]


@pytest.mark.parametrize("spec", BACKENDS)
async def test_purge_removes_ended_sessions_with_checkpoints_and_leaves_tombstone(
    spec: BackendSpec,
) -> None:
    async with open_backend(spec) as factory:
        manager = make_manager(await factory(), session_ttl=0)
        closed = await manager.create("u1")
        await manager.add_message(closed.session_id, "user", "bye")
        cp = await manager.checkpoint(closed.session_id)
        full = await manager.get_state(closed.session_id)
        assert full is not None
        await manager.close(closed.session_id)
        kept = await manager.create("u1")

        lenient = SessionCleanupScheduler(manager, purge_after_s=3600)
        assert (await lenient.sweep()).purged == 0
        assert await manager.get_state(closed.session_id) is not None

        await asyncio.sleep(0.05)
        strict = SessionCleanupScheduler(manager, purge_after_s=0, tombstone_s=3600)
        report = await strict.sweep()
        assert report.purged == 1
        assert await manager.get_state(closed.session_id) is None
        assert await manager.store.load_checkpoint(cp.checkpoint_id) is None
        assert await manager.get_state(kept.session_id) is not None
        # a late whole-state write or a re-create cannot bring it back
        with pytest.raises(SessionNotFoundError):
            await manager.store.save(replace(full, status=SessionStatus.ACTIVE))
        with pytest.raises(SessionValidationError):
            await manager.store.create_session(replace(full, turns=[]))
        assert await manager.get_state(closed.session_id) is None


async def test_expired_sessions_are_consolidated_and_purged_later() -> None:
    consolidator = RecordingConsolidator()
    store = InMemorySessionStore()
    manager = SessionManagerImpl(
        store, SessionConfig(session_ttl=1, auto_checkpoint_interval=None)
    )
    manager.memory.consolidator = consolidator
    state = await manager.create("u1")
    await manager.add_message(state.session_id, "user", "remember me")
    await manager.add_message(state.session_id, "assistant", "noted")
    await asyncio.sleep(1.1)
    scheduler = SessionCleanupScheduler(manager, purge_after_s=0)
    report = await scheduler.sweep()
    assert report.expired == 1
    assert [[e.content for e in b] for b in consolidator.batches] == [["remember me", "noted"]]
    # updated_at is the last activity (> 1 s ago) and purge_after_s=0: purged in the same pass
    assert report.purged == 1
    assert await manager.get_state(state.session_id) is None


async def test_sweeper_runs_on_its_own_during_boot_and_stops_at_shutdown() -> None:
    hooks = HookRegistry("boot-test")
    seen = record_hooks(hooks, HOOK_SESSION_EXPIRED, HOOK_SESSION_CLOSED)
    config = SessionConfig(session_ttl=1, cleanup_interval_s=1)
    modules = [
        collaborators_module(hooks=hooks),
        SessionModule.configure(config, enable_cleanup_scheduler=True),
    ]
    async with Application.boot(modules=modules) as app:
        manager = await app.container.resolve(SessionManagerImpl)
        scheduler = await app.container.resolve(SessionCleanupScheduler)
        assert scheduler.running
        state = await manager.create("u-boot")
        for _ in range(50):  # up to 5 s: TTL 1 s + at most ~1.1 s to the next sweep
            if seen[HOOK_SESSION_EXPIRED]:
                break
            await asyncio.sleep(0.1)
        assert [p.session_id for p in seen[HOOK_SESSION_EXPIRED]] == [state.session_id]
        record = await manager.store.load_record(state.session_id)
        assert record is not None and record.state.status == SessionStatus.EXPIRED
        assert scheduler.sweeps >= 1
        tasks = list(scheduler._tasks)
    assert not scheduler.running
    assert tasks and all(t.done() for t in tasks)
    sweeps = scheduler.sweeps
    await asyncio.sleep(1.3)
    assert scheduler.sweeps == sweeps


async def test_stub_module_never_starts_the_sweeper() -> None:
    async with Application.boot(modules=[SessionModule.stub({"cleanup_interval_s": 1})]) as app:
        scheduler = await app.container.resolve(SessionCleanupScheduler)
        assert not scheduler.running


class _FlakyStore(InMemorySessionStore):
    """The in-memory store whose index query fails once (an outage)."""

    failures = 1

    async def find_expired(self, *, limit: int = 1000) -> list[str]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("index unreachable")
        return await super().find_expired(limit=limit)


async def test_a_failing_sweep_is_logged_and_the_loop_goes_on() -> None:
    store = _FlakyStore()
    manager = SessionManagerImpl(store, SessionConfig(session_ttl=1))
    state = await manager.create("u1")
    scheduler = SessionCleanupScheduler(manager, interval_s=0.3, jitter=0.0)
    scheduler.start()
    try:
        for _ in range(60):
            record = await store.load_record(state.session_id)
            assert record is not None
            if scheduler.last_report is not None and scheduler.last_report.expired:
                break
            await asyncio.sleep(0.1)
    finally:
        await scheduler.stop()
    assert store.failures == 0
    record = await store.load_record(state.session_id)
    assert record is not None and record.state.status == SessionStatus.EXPIRED


async def test_stop_ends_a_long_sweep_between_batches() -> None:
    store = InMemorySessionStore()
    manager = SessionManagerImpl(store, SessionConfig(session_ttl=1))
    for i in range(30):
        await manager.create(f"user-{i}")
    await asyncio.sleep(1.1)
    scheduler = SessionCleanupScheduler(manager, batch_size=5, concurrency=1)

    calls = 0
    original = store.mark_expired

    async def mark_then_stop(session_id: str) -> Any:
        nonlocal calls
        calls += 1
        if calls == 7:  # stop arrives in the middle of the second batch
            await scheduler.stop()
        return await original(session_id)

    store.mark_expired = mark_then_stop  # type: ignore[method-assign]
    report = await scheduler.sweep()
    assert report.interrupted
    assert report.expired == 10  # the batch in progress is finished, no other is started
    assert calls == report.expired
    assert await store.find_expired() != []  # the rest is left for the next sweep


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"interval_s": 0}, "interval_s"),
        ({"batch_size": -1}, "batch_size"),
        ({"purge_after_s": -5}, "purge_after_s"),
        ({"concurrency": 0}, "concurrency"),
        ({"jitter": 1.5}, "jitter"),
    ],
)
def test_bad_scheduler_settings_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    manager = SessionManagerImpl(InMemorySessionStore(), SessionConfig())
    with pytest.raises(SessionValidationError) as err:
        SessionCleanupScheduler(manager, **kwargs)
    assert err.value.field == field


def test_a_session_listed_again_is_counted_skipped_once_and_not_if_done_later() -> None:
    from lexigram.ai.session.manager.cleanup import _skipped

    skipped: set[str] = set()
    failures: dict[str, str] = {}
    _skipped(skipped, ["a", "b", "c"], {"a"}, set(), failures)  # b, c held by another sweeper
    _skipped(skipped, ["b", "c", "d"], {"c", "d"}, set(), failures)  # listed again; c taken now
    _skipped(skipped, ["b", "e"], set(), {"e"}, failures)  # e damaged: never "skipped"
    failures["f"] = "expire: refused"
    _skipped(skipped, ["f"], set(), set(), failures)  # f failed: counted failed, not skipped
    assert skipped == {"b"} and failures == {"f": "expire: refused"}
