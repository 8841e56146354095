"""Every store and a plain manager, used from any event loop of the process.

Writes from threads running ``asyncio.run`` beside the main loop, a loop closed
afterwards (through ``asyncio.run``, through ``loop.close()`` alone, a loop reused
after ``shutdown_asyncgens()`` like the Agents SDK's ``Runner.run_sync``), closing
the store while other loops are idle or running. Each test asserts what is stored
(every acknowledged write exactly once), that the store's connections are all gone
after ``close()`` (sockets or database files of this process), and that nothing
warned or logged an error ("unclosed transport", "Event loop is closed", ...).
"""

from __future__ import annotations

import asyncio
import functools
import threading

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.stores.base import SessionStore
from tests.loops.support import (
    DEADLINE_S,
    Backend,
    Worker,
    bounded,
    eventually,
    in_thread,
    join,
    new_state,
    new_turn,
    no_leaks,
    server_side_closed,
)

THREADS = 4
WRITES = 12


async def append_n(store: SessionStore, session_id: str, n: int, label: str) -> list[str]:
    """Append ``n`` turns one by one; the ids of those acknowledged."""
    ids: list[str] = []
    for i in range(n):
        turn = new_turn(f"{label}-{i}")
        await store.append_turns(session_id, [turn])
        ids.append(turn.turn_id)
    return ids


async def opened(backend: Backend) -> tuple[SessionStore, str]:
    """A new initialised store of ``backend`` and a new session on it."""
    store = backend.make()
    await store.initialize()
    state = new_state()
    await store.create_session(state)
    return store, state.session_id


async def assert_stored(store: SessionStore, session_id: str, acknowledged: list[str]) -> None:
    """Exactly the acknowledged turns are stored, once each, and counted."""
    loaded = await store.load(session_id)
    assert loaded is not None
    stored = [t.turn_id for t in loaded.turns]
    assert sorted(stored) == sorted(acknowledged)
    assert len(set(stored)) == len(stored)
    assert loaded.turn_count == len(acknowledged)


async def close_and_count(store: SessionStore, backend: Backend, before: int) -> None:
    """Close the store (bounded) and wait for its connections to be gone."""
    if backend.on_server is not None:  # the server can see them, so it must see them now
        assert await backend.on_server() > 0
    await asyncio.wait_for(store.close(), DEADLINE_S)
    await eventually(
        lambda: backend.connections() <= before, f"{backend.name}: every connection closed"
    )
    await server_side_closed(backend)


@bounded
async def test_threads_write_beside_the_main_loop(backend: Backend) -> None:
    before = backend.connections()
    with no_leaks():
        store, sid = await opened(backend)
        workers = [
            Worker(functools.partial(append_n, store, sid, WRITES, f"thread{k}")).start()
            for k in range(THREADS)
        ]
        main_ids = await append_n(store, sid, WRITES, "main")
        from_threads = await join(*workers)
        # Every thread's loop is closed now; the main loop carries on.
        later = await append_n(store, sid, 3, "later")
        acknowledged = main_ids + later + [i for ids in from_threads for i in ids]
        assert len(acknowledged) == (THREADS + 1) * WRITES + 3
        await assert_stored(store, sid, acknowledged)
        record = await store.load_record(sid)
        assert record is not None and record.state.turn_count == len(acknowledged)
        await close_and_count(store, backend, before)


@bounded
async def test_reads_from_a_thread_loop_see_the_main_loops_writes(backend: Backend) -> None:
    before = backend.connections()
    with no_leaks():
        store, sid = await opened(backend)
        ids = await append_n(store, sid, 3, "main")
        for _ in range(3):  # a new loop each time, closed each time
            state = await in_thread(lambda: store.load(sid))
            assert state is not None and [t.turn_id for t in state.turns] == ids
            ids += await in_thread(lambda: append_n(store, sid, 1, "thread"))
        await assert_stored(store, sid, ids)
        await close_and_count(store, backend, before)


@bounded
async def test_a_loop_closed_without_shutting_down(backend: Backend) -> None:
    """``loop.close()`` alone: the loop's connections are dropped without it."""
    before = backend.connections()
    with no_leaks():
        store, sid = await opened(backend)
        loop = asyncio.new_event_loop()
        written: list[str] = []

        def run() -> None:
            try:
                coro = asyncio.wait_for(append_n(store, sid, 5, "manual"), DEADLINE_S)
                written.extend(loop.run_until_complete(coro))
            finally:
                loop.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        await asyncio.to_thread(thread.join, DEADLINE_S)
        assert not thread.is_alive() and loop.is_closed()
        assert len(written) == 5
        ids = written + await append_n(store, sid, 2, "main")
        # A new loop after the dead one: served, and the dead one's connections dropped.
        ids += await in_thread(lambda: append_n(store, sid, 2, "fresh"))
        await assert_stored(store, sid, ids)
        await close_and_count(store, backend, before)


@bounded
async def test_a_loop_reused_after_shutdown_asyncgens(backend: Backend) -> None:
    """The Agents SDK's ``Runner.run_sync``: one loop per thread, kept open between runs."""
    before = backend.connections()
    with no_leaks():
        store, sid = await opened(backend)
        written: list[str] = []
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            try:
                for n in range(3):
                    coro = asyncio.wait_for(append_n(store, sid, 2, f"run{n}"), DEADLINE_S)
                    written.extend(loop.run_until_complete(coro))
                    loop.run_until_complete(loop.shutdown_asyncgens())
            except BaseException as exc:
                failure.append(exc)
            finally:
                loop.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        await asyncio.to_thread(thread.join, DEADLINE_S)
        assert not thread.is_alive()
        assert not failure, failure
        await assert_stored(store, sid, written)
        await close_and_count(store, backend, before)


@bounded
async def test_close_while_another_loop_is_open_and_idle(backend: Backend) -> None:
    before = backend.connections()
    with no_leaks():
        store, sid = await opened(backend)
        loop = asyncio.new_event_loop()
        written: list[str] = []
        done = threading.Event()
        release = threading.Event()

        def run() -> None:
            try:
                coro = asyncio.wait_for(append_n(store, sid, 3, "idle"), DEADLINE_S)
                written.extend(loop.run_until_complete(coro))
                done.set()
                release.wait(DEADLINE_S)  # the loop stays open, not running
            finally:
                loop.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert await asyncio.to_thread(done.wait, DEADLINE_S)
        await assert_stored(store, sid, written)
        await close_and_count(store, backend, before)
        release.set()
        await asyncio.to_thread(thread.join, DEADLINE_S)
        assert not thread.is_alive()


@bounded
async def test_close_while_another_loop_is_running(backend: Backend) -> None:
    before = backend.connections()
    with no_leaks():
        store, sid = await opened(backend)
        written = threading.Event()
        release = threading.Event()

        async def busy() -> list[str]:
            ids = await append_n(store, sid, 3, "busy")
            written.set()
            # The loop keeps running (waiting in an executor thread), not using the store.
            await asyncio.to_thread(release.wait, DEADLINE_S)
            return ids

        worker = Worker(busy).start()
        assert await asyncio.to_thread(written.wait, DEADLINE_S)
        await close_and_count(store, backend, before)
        release.set()
        (ids,) = await join(worker)
        assert len(ids) == 3


@bounded
async def test_a_manager_from_any_loop(backend: Backend) -> None:
    """A plain ``SessionManager``: the issue's repro, and writes from several loops."""
    before = backend.connections()
    with no_leaks():
        store = backend.make()
        await store.initialize()
        manager = SessionManagerImpl(store, SessionConfig(auto_checkpoint_interval=0))
        session = await manager.create("loops-user")
        sid = session.session_id

        async def talk(label: str) -> int:
            for i in range(WRITES):
                await manager.add_message(sid, "user", f"{label}-{i}")
            return WRITES

        state = await asyncio.to_thread(lambda: asyncio.run(manager.get_state(sid)))
        assert state is not None and state.turns == []
        workers = [Worker(functools.partial(talk, f"t{k}")).start() for k in range(THREADS)]
        await talk("main")
        counts = await join(*workers)
        total = WRITES + sum(counts)
        state = await in_thread(lambda: manager.get_state(sid))
        assert state is not None
        assert len(state.turns) == state.turn_count == total
        contents = sorted(t.content for t in state.turns)
        expected = sorted(
            f"{label}-{i}" for label in ["main", *(f"t{k}" for k in range(THREADS))]
            for i in range(WRITES)
        )
        assert contents == expected
        main_view = await manager.get_state(sid)
        assert main_view is not None and main_view.turn_count == total
        await close_and_count(store, backend, before)
