"""A caller cancelled while the store call of its write is in flight (an outside audit).

The store may commit the write after the cancellation reached the caller (a SQL
``COMMIT`` on the wire, a Redis script sent): the session was then stored CLOSED by the
turn cap with no ``SessionClosedEvent``, hook or consolidation, a crossing append
stored without its automatic checkpoint, a ``close()`` stored and never announced (a
retry raises ``SessionTransitionError``), a ``create()`` stored with no
``SessionCreatedEvent``, on SQLite, PostgreSQL, MariaDB and Redis. When something
follows the write, the store call now runs as a task of its own: the caller's
cancellation waits for it (up to ``SETTLE_S``) and what follows a stored write is done
in the background. With nothing following it, the store is called in the caller's own
task, as before.

A :class:`Gate` holds the store method at its start until the test lets it go, so the
caller is cancelled at a known point; the real store underneath then does the write.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from lexigram.hooks import HookRegistry

from lexigram.ai.session import SessionConfig, SessionManagerImpl
from lexigram.ai.session.events import (
    SessionCheckpointCreatedEvent,
    SessionCheckpointRestoredEvent,
    SessionClosedEvent,
    SessionCreatedEvent,
)
from lexigram.ai.session.exceptions import SessionTransitionError
from lexigram.ai.session.hooks import (
    HOOK_CHECKPOINT_CREATED,
    HOOK_CHECKPOINT_RESTORED,
    HOOK_SESSION_CLOSED,
    HOOK_SESSION_STARTED,
    HOOK_TURN_ADDED,
)
from lexigram.ai.session.manager import finishing
from lexigram.ai.session.stores.base import SessionStore
from lexigram.ai.session.stores.cache import CacheSessionStore
from lexigram.ai.session.stores.database import DatabaseSessionStore, drop_schema
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from lexigram.ai.session.stores.sql import settle
from tests.manager.test_events_support import (
    RecordingBus,
    RecordingConsolidator,
    RecordingWorkingMemory,
    record_hooks,
)
from tests.services import (
    MARIADB_URL,
    POSTGRES_URL,
    REDIS_URL,
    require_mariadb,
    require_postgres,
    require_redis,
)

BACKENDS = ["memory", "sqlite", "postgres", "mariadb", "redis"]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionStore]:
    """A fresh store of each backend, under a prefix of this test alone."""
    name = request.param
    prefix = f"cs{uuid.uuid4().hex[:10]}_"
    made: SessionStore
    url = ""
    if name == "memory":
        made = InMemorySessionStore()
    elif name == "redis":
        require_redis()
        made = CacheSessionStore(REDIS_URL, key_prefix=prefix.rstrip("_"))
    else:
        if name == "postgres":
            require_postgres()
        if name == "mariadb":
            require_mariadb()
        url = {
            "sqlite": f"sqlite+aiosqlite:///{tmp_path}/cs.db",
            "postgres": POSTGRES_URL,
            "mariadb": MARIADB_URL,
        }[name]
        made = DatabaseSessionStore(url, table_prefix=prefix)
    await made.initialize()
    try:
        yield made
    finally:
        if isinstance(made, CacheSessionStore):
            async for key in made.client.scan_iter(match=made.keys.prefix + ":*", count=1000):
                await made.client.unlink(key)
        await made.close()
        if name in ("postgres", "mariadb"):
            await drop_schema(url, table_prefix=prefix)


class Gate:
    """Holds the next call of ``store.<method>`` at its start until :attr:`release` is
    set, then lets the real method do the write; later calls pass straight through.

    Like the real stores, a held call whose caller is cancelled still writes once let
    go (a SQL ``COMMIT`` on the wire, a Redis script sent): the cancellation is raised
    when the write has ended (:attr:`settles`, as the SQL stores do) or at once (a reply
    lost). :attr:`written` is set once the write has ended.
    """

    def __init__(self, store: SessionStore, method: str) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.written = asyncio.Event()
        self.settles = True
        self.task: asyncio.Task[Any] | None = None
        self._writing: asyncio.Future[Any] | None = None
        real = getattr(store, method)
        armed = [True]

        async def write(*args: Any, **kwargs: Any) -> Any:
            try:
                await self.release.wait()
                return await real(*args, **kwargs)
            finally:
                self.written.set()

        async def gated(*args: Any, **kwargs: Any) -> Any:
            if not armed:
                return await real(*args, **kwargs)
            armed.clear()
            self.task = asyncio.current_task()
            self.entered.set()
            writing = self._writing = asyncio.ensure_future(write(*args, **kwargs))
            writing.add_done_callback(lambda done: done.cancelled() or done.exception())
            try:
                return await asyncio.shield(writing)
            except asyncio.CancelledError:
                if self.settles:
                    await asyncio.wait({writing})
                raise

        setattr(store, method, gated)


Call = Callable[[], Coroutine[Any, Any, Any]]


async def cancel_in_store(gate: Gate, call: Call, *, late: bool) -> asyncio.Task[Any]:
    """Run ``call()``, cancel it while its store call is held by ``gate``, let the store
    call go on; returns the caller's (cancelled) task.

    ``late``: the store call is let go only after the caller gave up waiting for it
    (``SETTLE_S``, shortened by the test), so what follows starts when it ends.
    """
    gate.settles = not late
    caller = asyncio.create_task(call())
    await asyncio.wait_for(gate.entered.wait(), 5)
    caller.cancel()
    if late:
        await asyncio.wait({caller}, timeout=5)
        assert caller.done(), "the caller's wait for its store call is not bounded"
        gate.release.set()
    else:
        for _ in range(5):
            await asyncio.sleep(0)
        assert not caller.done(), "the cancellation did not wait for the store call"
        gate.release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    return caller


async def drained(manager: SessionManagerImpl, gate: Gate) -> None:
    """``wait_for_background`` waited for the store call and what follows it."""
    assert await manager.wait_for_background(5) == 0
    assert gate.written.is_set(), "wait_for_background did not wait for the store call"


@pytest.fixture(params=["store call ends in the wait", "store call ends after the wait"])
def late(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether the store call ends after the cancelled caller stopped waiting for it."""
    if request.param.endswith("after the wait"):
        monkeypatch.setattr(finishing, "SETTLE_S", 0.02, raising=False)
        return True
    return False


def manager_over(store: SessionStore, hooks: HookRegistry, **kwargs: Any) -> SessionManagerImpl:
    """A manager over ``store`` with ``hooks`` and config ``kwargs`` (collaborators apart)."""
    parts = ("event_bus", "working_memory", "consolidator")
    collaborators = {k: kwargs.pop(k) for k in parts if k in kwargs}
    return SessionManagerImpl(store, SessionConfig(**kwargs), hooks=hooks, **collaborators)


async def test_an_append_reaching_the_cap_is_announced(store: SessionStore, late: bool) -> None:
    bus, hooks = RecordingBus(), HookRegistry("test")
    seen = record_hooks(hooks, HOOK_SESSION_CLOSED, HOOK_TURN_ADDED)
    memory, consolidator = RecordingWorkingMemory(), RecordingConsolidator()
    manager = manager_over(
        store, hooks, event_bus=bus, working_memory=memory, consolidator=consolidator,
        max_turns_per_session=2, auto_checkpoint_interval=None,
    )
    sid = (await manager.create("u")).session_id
    await manager.add_message(sid, "user", "first")
    gate = Gate(store, "append_turns_counted")
    await cancel_in_store(gate, lambda: manager.add_message(sid, "user", "second"), late=late)
    if not late:  # a read after the cancellation shows the write
        header = await manager.get_header(sid)
        assert header is not None and header.turn_count == 2
    await drained(manager, gate)
    header = await manager.get_header(sid)
    assert header is not None and header.status.value == "closed" and header.turn_count == 2
    assert [(e.session_id, e.reason) for e in bus.of(SessionClosedEvent)] == [(sid, "max_turns")]
    assert [(p.session_id, p.reason) for p in seen[HOOK_SESSION_CLOSED]] == [(sid, "max_turns")]
    assert [len(b) for b in consolidator.batches] == [2]
    assert [e.content for e in memory.entries] == ["first", "second"]
    assert [p.turn_count for p in seen[HOOK_TURN_ADDED]] == [1, 2]


async def test_an_append_crossing_the_interval_gets_its_checkpoint(
    store: SessionStore, late: bool
) -> None:
    bus, hooks = RecordingBus(), HookRegistry("test")
    seen = record_hooks(hooks, HOOK_CHECKPOINT_CREATED)
    manager = manager_over(store, hooks, event_bus=bus, auto_checkpoint_interval=2)
    sid = (await manager.create("u")).session_id
    await manager.add_message(sid, "user", "first")
    gate = Gate(store, "append_turns_counted")
    await cancel_in_store(gate, lambda: manager.add_message(sid, "user", "second"), late=late)
    # The next append of this loop waits for the crossing append's snapshot (the lock).
    following = asyncio.create_task(manager.add_message(sid, "user", "third"))
    await drained(manager, gate)
    await following
    checkpoints = await manager.list_checkpoints(sid)
    assert [c.metadata.get("turn_count") for c in checkpoints] == [2]
    assert checkpoints[0].state.turn_count == 2
    ids = [checkpoints[0].checkpoint_id]
    assert [e.checkpoint_id for e in bus.of(SessionCheckpointCreatedEvent)] == ids
    assert [p.checkpoint_id for p in seen[HOOK_CHECKPOINT_CREATED]] == ids


async def test_a_close_is_announced(store: SessionStore, late: bool) -> None:
    bus, hooks = RecordingBus(), HookRegistry("test")
    seen = record_hooks(hooks, HOOK_SESSION_CLOSED)
    consolidator = RecordingConsolidator()
    manager = manager_over(
        store, hooks, event_bus=bus, consolidator=consolidator, auto_checkpoint_interval=None
    )
    sid = (await manager.create("u")).session_id
    await manager.add_message(sid, "user", "hello")
    gate = Gate(store, "transition")
    await cancel_in_store(gate, lambda: manager.close(sid), late=late)
    if not late:
        header = await manager.get_header(sid)
        assert header is not None and header.status.value == "closed"
    await drained(manager, gate)
    header = await manager.get_header(sid)
    assert header is not None and header.status.value == "closed"
    assert [(e.session_id, e.reason) for e in bus.of(SessionClosedEvent)] == [(sid, "closed")]
    assert [p.session_id for p in seen[HOOK_SESSION_CLOSED]] == [sid]
    assert [len(b) for b in consolidator.batches] == [1]
    with pytest.raises(SessionTransitionError):  # a retry could never announce it
        await manager.close(sid)


async def test_a_create_is_announced(store: SessionStore, late: bool) -> None:
    bus, hooks = RecordingBus(), HookRegistry("test")
    seen = record_hooks(hooks, HOOK_SESSION_STARTED)
    manager = manager_over(store, hooks, event_bus=bus)
    gate = Gate(store, "create_session")
    await cancel_in_store(gate, lambda: manager.create("creator"), late=late)
    if not late:
        assert len((await manager.list_sessions("creator")).items) == 1
    await drained(manager, gate)
    [stored] = (await manager.list_sessions("creator")).items
    assert [e.session_id for e in bus.of(SessionCreatedEvent)] == [stored.session_id]
    assert [p.session_id for p in seen[HOOK_SESSION_STARTED]] == [stored.session_id]


async def test_a_checkpoint_is_announced(store: SessionStore, late: bool) -> None:
    bus, hooks = RecordingBus(), HookRegistry("test")
    manager = manager_over(store, hooks, event_bus=bus, auto_checkpoint_interval=None)
    sid = (await manager.create("u")).session_id
    gate = Gate(store, "create_checkpoint")
    await cancel_in_store(gate, lambda: manager.checkpoint(sid, {"by": "hand"}), late=late)
    await drained(manager, gate)
    [taken] = await manager.list_checkpoints(sid)
    assert [e.checkpoint_id for e in bus.of(SessionCheckpointCreatedEvent)] == [
        taken.checkpoint_id
    ]


async def test_a_restore_is_announced(store: SessionStore, late: bool) -> None:
    bus, hooks = RecordingBus(), HookRegistry("test")
    seen = record_hooks(hooks, HOOK_CHECKPOINT_RESTORED)
    manager = manager_over(store, hooks, event_bus=bus, auto_checkpoint_interval=None)
    sid = (await manager.create("u")).session_id
    await manager.add_message(sid, "user", "kept")
    taken = await manager.checkpoint(sid)
    await manager.add_message(sid, "user", "undone")
    gate = Gate(store, "restore_checkpoint")
    await cancel_in_store(gate, lambda: manager.restore(taken.checkpoint_id), late=late)
    await drained(manager, gate)
    assert [t.content for t in await manager.get_turns(sid)] == ["kept"]
    assert [e.checkpoint_id for e in bus.of(SessionCheckpointRestoredEvent)] == [
        taken.checkpoint_id
    ]
    assert [p.checkpoint_id for p in seen[HOOK_CHECKPOINT_RESTORED]] == [taken.checkpoint_id]


async def test_a_store_call_that_fails_is_followed_by_nothing(
    store: SessionStore, late: bool
) -> None:
    bus, hooks = RecordingBus(), HookRegistry("test")
    manager = manager_over(store, hooks, event_bus=bus, auto_checkpoint_interval=None)
    sid = (await manager.create("u")).session_id
    await manager.close(sid)
    gate = Gate(store, "transition")
    await cancel_in_store(gate, lambda: manager.close(sid), late=late)  # already closed
    await drained(manager, gate)
    assert [e.session_id for e in bus.of(SessionClosedEvent)] == [sid]


async def test_with_nothing_following_the_store_is_called_in_the_callers_task(
    store: SessionStore,
) -> None:
    """No event bus, no hook, no memory, no automatic checkpoints: no task of its own
    for the store call (the benchmarks' set-up pays nothing for the fix)."""
    manager = manager_over(store, HookRegistry("test"), auto_checkpoint_interval=None)
    calls: dict[str, Callable[[str], Coroutine[Any, Any, Any]]] = {
        "create_session": lambda _: manager.create("u"),
        "append_turns_counted": lambda sid: manager.add_message(sid, "user", "x"),
        "transition": manager.close,
        "create_checkpoint": manager.checkpoint,
    }
    for method, call in calls.items():
        sid = (await manager.create("u")).session_id
        gate = Gate(store, method)
        caller = asyncio.create_task(call(sid))
        await asyncio.wait_for(gate.entered.wait(), 5)
        assert gate.task is caller, method
        caller.cancel()
        gate.release.set()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert manager._finishing == set(), method


LISTENERS: dict[str, dict[str, Any]] = {
    "an event bus": {"event_bus": RecordingBus()},
    "a session_closed hook": {"hook": HOOK_SESSION_CLOSED},
    "a turn_added hook": {"hook": HOOK_TURN_ADDED},
    "a consolidator": {"consolidator": RecordingConsolidator()},
    "working memory": {"working_memory": RecordingWorkingMemory()},
    "automatic checkpoints": {"auto_checkpoint_interval": 5},
}


@pytest.mark.parametrize("listener", list(LISTENERS))
async def test_what_follows_an_append_gives_its_store_call_a_task(listener: str) -> None:
    store, hooks = InMemorySessionStore(), HookRegistry("test")
    kwargs: dict[str, Any] = {"auto_checkpoint_interval": None, **LISTENERS[listener]}
    if "hook" in kwargs:
        record_hooks(hooks, kwargs.pop("hook"))
    manager = manager_over(store, hooks, **kwargs)
    sid = (await manager.create("u")).session_id
    gate = Gate(store, "append_turns_counted")
    caller = asyncio.create_task(manager.add_message(sid, "user", "x"))
    await gate.entered.wait()
    assert gate.task is not caller
    gate.release.set()
    await caller


async def test_a_second_cancellation_stops_the_wait_at_once() -> None:
    store, hooks = InMemorySessionStore(), HookRegistry("test")
    bus = RecordingBus()
    manager = manager_over(store, hooks, event_bus=bus, auto_checkpoint_interval=None)
    sid = (await manager.create("u")).session_id
    gate = Gate(store, "transition")
    caller = asyncio.create_task(manager.close(sid))
    await gate.entered.wait()
    caller.cancel()
    await asyncio.sleep(0)
    assert not caller.done()  # waiting for the store call
    caller.cancel()
    await asyncio.wait({caller}, timeout=finishing.SETTLE_S / 4)
    assert caller.done() and caller.cancelled()
    assert manager._finishing != set()  # the store call, still held
    gate.release.set()
    assert await manager.wait_for_background(5) == 0
    assert [e.session_id for e in bus.of(SessionClosedEvent)] == [sid]


def test_the_wait_is_the_sql_stores_bound() -> None:
    assert finishing.SETTLE_S == settle.SETTLE_S
