"""The cache of opened turns: fresh containers per read, never answers a moved value."""

from __future__ import annotations

import pytest

from lexigram.ai.session.exceptions import EncryptionKeyError
from lexigram.ai.session.stores.encrypted.opened import OpenedTurns
from lexigram.ai.session.stores.encrypted.store import EncryptedSessionStore
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from lexigram.ai.session.testing import make_state, make_turn

from .helpers import keyring


async def _session(store: EncryptedSessionStore, turns: int = 3) -> str:
    state = make_state("erin", metadata={"m": 1}, variables={"v": [1]})
    await store.create_session(state)
    for n in range(turns):
        turn = make_turn(n, tool_calls=[{"name": "f", "arguments": {"n": n}}], metadata={"k": n})
        await store.append_turns(state.session_id, [turn])
    return state.session_id


@pytest.mark.parametrize("budget", [0, 1 << 20], ids=["off", "on"])
async def test_each_read_gets_its_own_containers(budget: int) -> None:
    store = EncryptedSessionStore(InMemorySessionStore(), keyring("k1"), turn_cache_bytes=budget)
    session_id = await _session(store)
    first = await store.load(session_id)
    assert first is not None
    first.turns[0].tool_calls[0]["name"] = "changed"
    first.turns[0].metadata["k"] = "changed"
    first.metadata["m"] = "changed"
    second = await store.load(session_id)
    assert second is not None
    assert second.turns[0].tool_calls == [{"name": "f", "arguments": {"n": 0}}]
    assert [t.metadata for t in second.turns] == [{"k": 0}, {"k": 1}, {"k": 2}]
    assert second.metadata == {"m": 1} and second.variables == {"v": [1]}
    assert [t.content for t in await store.get_turns(session_id)] == [
        "message 0",
        "message 1",
        "message 2",
    ]


async def test_a_value_moved_to_another_turn_after_a_read_still_does_not_open() -> None:
    inner = InMemorySessionStore()
    store = EncryptedSessionStore(inner, keyring("k1"))
    session_id = await _session(store)
    assert len(await store.get_turns(session_id)) == 3  # every turn now cached
    sealed = (await inner.get_turns(session_id))[0]
    moved = type(sealed)(**{**sealed.__dict__, "turn_id": "moved"})
    await inner.append_turns(session_id, [moved])
    with pytest.raises(EncryptionKeyError, match="k1"):
        await store.get_turns(session_id)
    with pytest.raises(EncryptionKeyError, match="k1"):
        await store.load(session_id)


async def test_a_header_value_moved_into_a_turn_does_not_open() -> None:
    inner = InMemorySessionStore()
    store = EncryptedSessionStore(inner, keyring("k1"))
    session_id = await _session(store)
    await store.load(session_id)  # header values now cached
    header = await inner.load_record(session_id)
    assert header is not None
    sealed_meta = header.state.metadata["__lexigram_sealed__"]
    turn = make_turn(7, turn_id="metadata", content=sealed_meta)
    await inner.append_turns(session_id, [turn])
    with pytest.raises(EncryptionKeyError, match="k1"):
        await store.get_turns(session_id)


async def test_delete_and_erase_drop_the_session_from_the_cache() -> None:
    inner = InMemorySessionStore()
    writer = EncryptedSessionStore(inner, keyring("k1"))
    gone = await _session(writer)
    erased = await _session(writer)
    store = EncryptedSessionStore(inner, writer.keyring)  # unwraps the keys it reads
    await store.load(gone)
    await store.load(erased)
    cache = store._opened
    assert cache._sessions.keys() >= {gone, erased}
    keys = [store._cache.get(sid) for sid in (gone, erased)]
    envelopes = {key.envelope for key in keys if key is not None}
    assert len(envelopes) == 2 and all(e in store._envelopes for e in envelopes)
    await store.delete(gone)
    await store.erase_user("erin")
    assert gone not in cache._sessions and erased not in cache._sessions
    assert cache._total == 0
    # ... and so do their unwrapped data keys.
    assert not any(e in store._envelopes for e in envelopes)
    assert gone not in store._cache and erased not in store._cache


def test_the_budget_holds() -> None:
    cache = OpenedTurns(1000)
    for n in range(50):
        entries = cache.of(f"s{n}")
        assert entries is not None
        cache.added(f"s{n}", entries, [(f"t{n}", (f"lxe2:{n}" + "x" * 90, b"k", b"y" * 100))])
        assert cache._total <= 1000
    assert len(cache._sessions) <= 5 and "s49" in cache._sessions
    assert OpenedTurns(0).of("s") is None


def test_a_replaced_value_takes_its_predecessors_place_and_size() -> None:
    cache = OpenedTurns(10_000)
    entries = cache.of("s")
    assert entries is not None
    for n in range(20):  # the same place opened again and again (a header field updated)
        cache.added("s", entries, [("\0metadata", (f"lxe2:{n:04}", b"k", b"{}"))])
    assert list(entries) == ["\0metadata"] and entries["\0metadata"][0] == "lxe2:0019"
    assert cache._total == cache._sizes["s"] == len("\0metadata") + len("lxe2:0019") + 2


async def test_a_turn_id_used_again_reads_its_new_value() -> None:
    """Popped, then appended again under the same id: the cache keyed by turn id must
    not answer the old plaintext (it holds the old sealed text, which no longer matches)."""
    store = EncryptedSessionStore(InMemorySessionStore(), keyring("k1"))
    session_id = await _session(store, turns=0)
    await store.append_turns(session_id, [make_turn(1, turn_id="same", content="first")])
    assert [t.content for t in await store.get_turns(session_id)] == ["first"]
    await store.pop_turn(session_id)
    await store.append_turns(session_id, [make_turn(2, turn_id="same", content="second")])
    assert [t.content for t in await store.get_turns(session_id)] == ["second"]
    state = await store.load(session_id)
    assert state is not None and [t.content for t in state.turns] == ["second"]
