"""A re-read of a session read whole before: installed from its run, never a stale answer.

Each behaviour runs over every backend on its real server (their stores decode turns
differently); the value planted in clear runs on the in-memory store, whose stored
turns a test can reach.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from lexigram.contracts.ai.session import SessionState

from lexigram.ai.session.stores.encrypted.opened import OpenedTurns
from lexigram.ai.session.stores.encrypted.reread import Run, new_run
from lexigram.ai.session.stores.encrypted.store import EncryptedSessionStore
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from lexigram.ai.session.testing import make_state, make_turn

from ..stores.backends import BackendSpec, StoreFactory
from .helpers import PLAIN, keyring
from .helpers import mixed_turn as _turn

LONG = 300  # above gc_pause.MIN_PAUSE: the paused path too


async def _session(store: EncryptedSessionStore, count: int, session_id: str = "rr") -> str:
    await store.create_session(make_state("erin", session_id=session_id))
    await store.append_turns(session_id, [_turn(n) for n in range(count)])
    return session_id


async def _cold(store: EncryptedSessionStore, session_id: str) -> SessionState:
    """The session as a process reading it for the first time sees it."""
    cold = EncryptedSessionStore(store.inner, store.keyring, turn_cache_bytes=0)
    state = await cold.load(session_id)
    assert state is not None
    return state


def _run(store: EncryptedSessionStore, session_id: str) -> Run | None:
    return store._opened.run(session_id)


def _loaded(store: EncryptedSessionStore, session_id: str) -> tuple[bytes, list[str]] | None:
    """The raw key and turn ids of what the session's last ``load`` kept.

    A backend that shows its stored texts keeps a ``StoredRun`` (``reread_stored``);
    the in-memory store, a ``Run`` of its turns.
    """
    if store._reuse:
        stored = store._opened.stored_run(session_id)
        turns = None if stored is None else stored.turns()
        return None if stored is None or turns is None else (
            stored.raw_key, [t.turn_id for t in turns]
        )
    run = _run(store, session_id)
    return None if run is None else (run.raw_key, run.ids)


async def _encrypting(factory: StoreFactory) -> EncryptedSessionStore:
    return EncryptedSessionStore(await factory(), keyring("k1"))


@pytest.mark.parametrize("spec", PLAIN)
@pytest.mark.parametrize("count", [5, LONG])
async def test_a_reread_after_appends_equals_a_first_read(spec: BackendSpec, count: int) -> None:
    async with spec.open() as factory:
        store = await _encrypting(factory)
        session_id = await _session(store, count)
        first = await store.load(session_id)
        assert await store.load(session_id) == first  # a stored run from the second read
        kept = _loaded(store, session_id)
        assert first is not None and kept is not None and len(kept[1]) == count
        await store.append_turns(session_id, [_turn(n, "new") for n in range(count, count + 4)])
        again = await store.load(session_id)
        assert again == await _cold(store, session_id)
        assert again is not None and len(again.turns) == count + 4
        grown = _loaded(store, session_id)
        assert grown is not None and grown[1] == [t.turn_id for t in again.turns]
        # A third read from the grown run: still equal, and containers are its own.
        third = await store.load(session_id)
        assert third == again
        assert third is not None and third.turns[0].tool_calls is not again.turns[0].tool_calls


@pytest.mark.parametrize("spec", PLAIN)
async def test_a_reread_gets_its_own_containers(spec: BackendSpec) -> None:
    async with spec.open() as factory:
        store = await _encrypting(factory)
        session_id = await _session(store, LONG)
        first = await store.load(session_id)
        assert first is not None
        first.turns[0].tool_calls[0]["name"] = "changed"
        first.turns[0].metadata["k"] = "changed"
        second = await store.load(session_id)
        assert second is not None
        assert second.turns[0].tool_calls == [{"name": "f", "arguments": {"n": 0}}]
        assert second.turns[0].metadata == {"k": 0}


@pytest.mark.parametrize("spec", PLAIN)
async def test_a_turn_replaced_under_its_id_reads_its_new_value(spec: BackendSpec) -> None:
    """Popped and appended again under the same id: same ids, another sealed text."""
    async with spec.open() as factory:
        store = await _encrypting(factory)
        session_id = await _session(store, 4)
        await store.load(session_id)
        await store.pop_turn(session_id)
        await store.append_turns(session_id, [make_turn(9, turn_id="t3", content="replaced")])
        state = await store.load(session_id)
        assert state is not None and state.turns[-1].content == "replaced"
        assert state == await _cold(store, session_id)


@pytest.mark.parametrize("spec", PLAIN)
async def test_fewer_turns_than_the_run_read_as_they_are(spec: BackendSpec) -> None:
    async with spec.open() as factory:
        store = await _encrypting(factory)
        session_id = await _session(store, 6)
        await store.load(session_id)
        await store.pop_turn(session_id)
        state = await store.load(session_id)
        assert state is not None and [t.turn_id for t in state.turns] == [f"t{n}" for n in range(5)]


async def test_clear_values_put_beside_a_sealed_text_after_a_read_are_not_the_turns() -> None:
    """Only what was sealed is the turn's, on a re-read as on a first read."""
    inner = InMemorySessionStore()
    store = EncryptedSessionStore(inner, keyring("k1"))
    session_id = await _session(store, 3)
    await store.load(session_id)
    stored = inner._sessions[session_id]
    seq = stored.live[1]  # a text-only turn
    stored.log[seq] = replace(stored.log[seq], tool_calls=[{"name": "planted"}], metadata={"x": 1})
    state = await store.load(session_id)
    assert state is not None
    assert state.turns[1].content == "text 1"
    assert state.turns[1].tool_calls == [] and state.turns[1].metadata == {}


@pytest.mark.parametrize("spec", PLAIN)
async def test_a_session_created_again_elsewhere_reads_under_its_new_key(
    spec: BackendSpec,
) -> None:
    async with spec.open() as factory:  # two processes: a store each, one namespace
        reader = await _encrypting(factory)
        other = EncryptedSessionStore(await factory(), reader.keyring)
        session_id = await _session(reader, 4)
        await reader.load(session_id)
        await other.delete(session_id)
        await other.create_session(make_state("erin", session_id=session_id))
        await other.append_turns(session_id, [make_turn(n, turn_id=f"t{n}") for n in range(4)])
        state = await reader.load(session_id)
        assert state is not None and [t.content for t in state.turns] == [
            f"message {n}" for n in range(4)
        ]
        kept = _loaded(reader, session_id)
        key = reader._cached_key(session_id)
        assert kept is not None and key is not None and kept[0] == key.raw


def test_runs_count_in_the_budget_and_go_with_their_session() -> None:
    ids = [f"t{n}" for n in range(10)]
    sealed = ["lxe1:" + "x" * 95 for _ in range(10)]
    run = new_run(b"k" * 32, ids, sealed, [f"text {n}" if n % 2 else b"[1]" for n in range(10)])
    cache = OpenedTurns(10 * run.size)
    entries = cache.of("s")
    assert entries is not None
    cache.keep_run("s", entries, run)
    assert cache.run("s") is run and cache._total == run.size
    cache.keep_run("s", entries, run)  # kept again: counted once
    assert cache._total == run.size
    cache.drop("s")
    assert cache.run("s") is None and cache._total == 0
    small = OpenedTurns(run.size)  # a run over half the budget is not kept
    entries = small.of("s")
    assert entries is not None
    small.keep_run("s", entries, run)
    assert small.run("s") is None and small._total == 0


@pytest.mark.parametrize("spec", PLAIN)
async def test_get_turns_of_the_whole_session_reads_from_the_run_and_a_window_does_not(
    spec: BackendSpec,
) -> None:
    async with spec.open() as factory:
        store = await _encrypting(factory)
        session_id = await _session(store, LONG)
        window = await store.get_turns(session_id, last=20)
        assert [t.turn_id for t in window] == [f"t{n}" for n in range(LONG - 20, LONG)]
        assert _run(store, session_id) is None  # a window is not a whole read
        whole = await store.get_turns(session_id)
        assert _run(store, session_id) is None  # a session's first whole read keeps none
        assert await store.get_turns(session_id) == whole
        run = _run(store, session_id)
        assert run is not None and run.ids == [t.turn_id for t in whole]
        await store.append_turns(session_id, [_turn(LONG, "new")])
        again = await store.get_turns(session_id)
        state = await _cold(store, session_id)
        assert again == state.turns
