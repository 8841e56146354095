"""Events and hooks are observed by subscribers registered in a real container."""

from __future__ import annotations

import asyncio
from typing import Any

from lexigram.contracts.ai.session import SessionManagerProtocol
from lexigram.hooks import HookRegistry
from lexigram.hooks import ambient as ambient_hooks

from lexigram import Application
from lexigram.ai.session import BranchManager, SessionConfig, SessionModule
from lexigram.ai.session.events import (
    SessionBranchMergedEvent,
    SessionCheckpointCreatedEvent,
    SessionCheckpointRestoredEvent,
    SessionClosedEvent,
    SessionCreatedEvent,
    SessionExpiredEvent,
    SessionForkedEvent,
)
from lexigram.ai.session.hooks import (
    HOOK_BRANCH_MERGED,
    HOOK_CHECKPOINT_CREATED,
    HOOK_CHECKPOINT_RESTORED,
    HOOK_SESSION_CLOSED,
    HOOK_SESSION_EXPIRED,
    HOOK_SESSION_FORKED,
    HOOK_SESSION_STARTED,
    HOOK_TURN_ADDED,
    SessionBranchMergedHook,
    SessionCheckpointCreatedHook,
    SessionCheckpointRestoredHook,
    SessionClosedHook,
    SessionExpiredHook,
    SessionForkedHook,
    SessionStartedHook,
    SessionTurnAddedHook,
)
from lexigram.ai.session.manager.cleanup import SessionCleanupScheduler
from lexigram.ai.session.manager.core import SessionManagerImpl

from .test_events_support import EventRecorder, RecordingBus, collaborators_module, record_hooks

ALL_HOOKS = (
    HOOK_SESSION_STARTED,
    HOOK_TURN_ADDED,
    HOOK_CHECKPOINT_CREATED,
    HOOK_CHECKPOINT_RESTORED,
    HOOK_SESSION_FORKED,
    HOOK_BRANCH_MERGED,
    HOOK_SESSION_CLOSED,
    HOOK_SESSION_EXPIRED,
)


async def test_every_lifecycle_moment_reaches_bus_subscribers_and_hooks() -> None:
    bus = RecordingBus()
    created, closed = EventRecorder(), EventRecorder()
    bus.subscribe(SessionCreatedEvent, created)
    bus.subscribe(SessionClosedEvent, closed)
    hooks = HookRegistry("test")
    seen = record_hooks(hooks, *ALL_HOOKS)
    config = SessionConfig(max_turns_per_session=3, auto_checkpoint_interval=0)
    modules = [collaborators_module(bus=bus, hooks=hooks), SessionModule.stub(config)]
    async with Application.boot(modules=modules) as app:
        manager = await app.container.resolve(SessionManagerProtocol)
        assert isinstance(manager, SessionManagerImpl)
        branches = await app.container.resolve(BranchManager)

        state = await manager.create("alice")
        sid = state.session_id
        turn = await manager.add_message(sid, "user", "hello")
        cp = await manager.checkpoint(sid)
        await manager.add_message(sid, "assistant", "hi")
        await manager.restore(cp.checkpoint_id)
        branch = await branches.fork(sid, "what-if")
        await manager.add_message(branch.session_id, "user", "on the branch")
        await branches.merge(sid, branch.session_id)
        await manager.close(sid)

        capped = await manager.create("alice")
        for i in range(3):
            await manager.add_message(capped.session_id, "user", f"m{i}")

    # bus subscribers (a fork is reported by SessionForkedEvent, not SessionCreatedEvent)
    assert [(e.session_id, e.user_id) for e in created.events] == [
        (sid, "alice"),
        (capped.session_id, "alice"),
    ]
    assert [(e.session_id, e.reason, e.user_id) for e in closed.events] == [
        (sid, "closed", "alice"),
        (capped.session_id, "max_turns", "alice"),
    ]
    assert [e.checkpoint_id for e in bus.of(SessionCheckpointCreatedEvent)] == [cp.checkpoint_id]
    restored = bus.of(SessionCheckpointRestoredEvent)
    assert [(e.session_id, e.checkpoint_id) for e in restored] == [(sid, cp.checkpoint_id)]
    forked = bus.of(SessionForkedEvent)
    assert [(e.session_id, e.branch_id, e.branch_name) for e in forked] == [
        (sid, branch.session_id, "what-if")
    ]
    merged = bus.of(SessionBranchMergedEvent)
    assert [(e.session_id, e.branch_id, e.merged_turns) for e in merged] == [
        (sid, branch.session_id, 1)
    ]
    assert all(e.event_type == type(e).__name__ for e in bus.published)

    # hooks
    assert seen[HOOK_SESSION_STARTED][0] == SessionStartedHook(session_id=sid, user_id="alice")
    assert seen[HOOK_TURN_ADDED][0] == SessionTurnAddedHook(
        session_id=sid, turn_id=turn.turn_id, turn_count=1
    )
    assert seen[HOOK_CHECKPOINT_CREATED] == [
        SessionCheckpointCreatedHook(session_id=sid, checkpoint_id=cp.checkpoint_id)
    ]
    assert seen[HOOK_CHECKPOINT_RESTORED] == [
        SessionCheckpointRestoredHook(session_id=sid, checkpoint_id=cp.checkpoint_id)
    ]
    assert seen[HOOK_SESSION_FORKED] == [
        SessionForkedHook(session_id=sid, branch_id=branch.session_id, branch_name="what-if")
    ]
    assert seen[HOOK_BRANCH_MERGED] == [
        SessionBranchMergedHook(session_id=sid, branch_id=branch.session_id, merged_turns=1)
    ]
    assert seen[HOOK_SESSION_CLOSED] == [
        SessionClosedHook(session_id=sid, reason="closed", user_id="alice"),
        SessionClosedHook(session_id=capped.session_id, reason="max_turns", user_id="alice"),
    ]
    assert seen[HOOK_SESSION_EXPIRED] == []


async def test_expiry_fires_expired_then_closed_through_the_container() -> None:
    bus = RecordingBus()
    hooks = HookRegistry("test")
    seen = record_hooks(hooks, HOOK_SESSION_EXPIRED, HOOK_SESSION_CLOSED)
    config = SessionConfig(session_ttl=1)
    modules = [collaborators_module(bus=bus, hooks=hooks), SessionModule.stub(config)]
    async with Application.boot(modules=modules) as app:
        manager = await app.container.resolve(SessionManagerImpl)
        scheduler = await app.container.resolve(SessionCleanupScheduler)
        idle = await manager.create("bob")
        await asyncio.sleep(1.2)
        report = await scheduler.sweep()
    assert report.expired == 1
    assert [(e.session_id, e.user_id) for e in bus.of(SessionExpiredEvent)] == [
        (idle.session_id, "bob")
    ]
    closed = bus.of(SessionClosedEvent)
    assert [(e.session_id, e.reason) for e in closed] == [(idle.session_id, "expired")]
    assert seen[HOOK_SESSION_EXPIRED] == [
        SessionExpiredHook(session_id=idle.session_id, user_id="bob")
    ]
    assert seen[HOOK_SESSION_CLOSED] == [
        SessionClosedHook(session_id=idle.session_id, reason="expired", user_id="bob")
    ]


async def test_ambient_hook_registry_stands_in_when_none_is_registered() -> None:
    registry = HookRegistry("ambient-test")
    seen = record_hooks(registry, HOOK_SESSION_STARTED, HOOK_SESSION_CLOSED)
    with ambient_hooks.use(registry):
        async with Application.boot(modules=[SessionModule.stub()]) as app:
            manager = await app.container.resolve(SessionManagerImpl)
            state = await manager.create("carol")
            await manager.close(state.session_id)
    assert [p.session_id for p in seen[HOOK_SESSION_STARTED]] == [state.session_id]
    assert [p.reason for p in seen[HOOK_SESSION_CLOSED]] == ["closed"]


async def test_failing_bus_and_hook_handler_never_break_a_write() -> None:
    bus = RecordingBus(fail=True)
    hooks = HookRegistry("test")
    calls: list[Any] = []

    async def broken(*, payload: Any, **_: Any) -> None:
        calls.append(payload)
        raise RuntimeError("handler bug")

    hooks.register_action(HOOK_SESSION_STARTED, broken)
    modules = [collaborators_module(bus=bus, hooks=hooks), SessionModule.stub()]
    async with Application.boot(modules=modules) as app:
        manager = await app.container.resolve(SessionManagerImpl)
        state = await manager.create("dave")
        await manager.add_message(state.session_id, "user", "still works")
        stored = await manager.get_state(state.session_id)
    assert stored is not None and stored.turn_count == 1
    assert len(calls) == 1


async def test_bare_application_publishes_nothing_and_still_works() -> None:
    async with Application.boot(modules=[SessionModule.stub()]) as app:
        manager = await app.container.resolve(SessionManagerImpl)
        assert manager.notifier.event_bus is None
        state = await manager.create("erin")
        await manager.close(state.session_id)
        assert (await manager.get_state(state.session_id)) is not None
