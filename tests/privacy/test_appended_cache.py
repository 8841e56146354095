"""Turns a store appends are remembered opened; a stored run is kept from a second read.

A process that writes a session and then reads it back (a chat worker) decrypts none
of the turns it sealed itself; an entry answers only its exact sealed text under the
same key and turn id, so a turn another writer replaced is opened anew. Each
behaviour runs over every backend on its real server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionStatus

from lexigram.ai.session.encryption.cipher import DataKey
from lexigram.ai.session.exceptions import (
    SessionClosedError,
    SessionNotFoundError,
    TurnLimitReachedError,
)
from lexigram.ai.session.stores.encrypted.opened import OpenedTurns
from lexigram.ai.session.stores.encrypted.store import EncryptedSessionStore
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from lexigram.ai.session.testing import make_turn

from ..stores.backends import BackendSpec
from .helpers import PLAIN, keyring
from .helpers import mixed_turn as _turn
from .test_reread import _cold
from .test_reread_stored import _session

LONG = 300  # above gc_pause.MIN_PAUSE: the paused path too


@pytest.fixture
def turn_openings(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The contexts of every turn value decrypted from here on (``turn:<id>``)."""
    opened: list[str] = []
    decryptor, open_value = DataKey.decryptor, DataKey.open

    def counting_decryptor(self: DataKey, prefix: str) -> Any:
        decrypt, aad = decryptor(self, prefix)

        def counted(nonce: bytes, data: bytes, context: bytes) -> bytes:
            opened.append(context[len(aad) - len(prefix.encode()) :].decode(errors="replace"))
            return decrypt(nonce, data, context)

        return counted, aad

    def counting_open(self: DataKey, value: str, context: str, *, record: str) -> bytes:
        if context.startswith("turn:"):
            opened.append(context)
        return open_value(self, value, context, record=record)

    monkeypatch.setattr(DataKey, "decryptor", counting_decryptor)
    monkeypatch.setattr(DataKey, "open", counting_open)
    yield opened


@pytest.mark.parametrize("spec", PLAIN)
@pytest.mark.parametrize("count", [7, LONG])
async def test_the_turns_a_store_appended_read_back_without_decrypting(
    spec: BackendSpec, count: int, turn_openings: list[str]
) -> None:
    async with spec.open() as factory:
        store = EncryptedSessionStore(await factory(), keyring("k1"))
        session_id = await _session(store, count)
        cold = await _cold(store, session_id)
        assert len(turn_openings) == count  # the cold reader decrypts every turn
        turn_openings.clear()
        state = await store.load(session_id)
        recent = await store.get_turns(session_id, last=3)
        assert turn_openings == []
        assert state == cold and state is not None and len(state.turns) == count
        assert recent == cold.turns[-3:]
        # Text-only and JSON bodies alike, each read with containers of its own.
        assert state.turns[0].tool_calls == [{"name": "f", "arguments": {"n": 0}}]
        assert state.turns[0].tool_calls is not recent[0].tool_calls
        assert state.turns[1].content == "text 1" and state.turns[1].metadata == {}


@pytest.mark.parametrize("spec", PLAIN)
async def test_a_turn_another_writer_replaced_reads_its_new_value(spec: BackendSpec) -> None:
    """Remembered under its id, popped and appended again elsewhere: the entry holds
    the old sealed text, which no longer matches, so the new value is opened."""
    async with spec.open() as factory:  # two processes: a store each, one namespace
        writer = EncryptedSessionStore(await factory(), keyring("k1"))
        other = EncryptedSessionStore(await factory(), writer.keyring)
        session_id = await _session(writer, 4)
        assert await other.pop_turn(session_id) is not None
        replaced = make_turn(9, turn_id="t3", content="replaced", metadata={"by": "other"})
        await other.append_turns(session_id, [replaced])
        state = await writer.load(session_id)
        assert state is not None and state == await _cold(writer, session_id)
        assert state.turns[-1].content == "replaced"
        assert state.turns[-1].metadata == {"by": "other"}
        assert [t.content for t in await writer.get_turns(session_id, last=1)] == ["replaced"]


async def test_with_the_cache_off_appends_remember_nothing(turn_openings: list[str]) -> None:
    store = EncryptedSessionStore(InMemorySessionStore(), keyring("k1"), turn_cache_bytes=0)
    session_id = await _session(store, 5)
    assert store._opened._sessions == {} and store._opened._total == 0
    state = await store.load(session_id)
    assert state is not None and len(state.turns) == 5 and len(turn_openings) == 5


async def test_a_refused_append_remembers_nothing() -> None:
    store = EncryptedSessionStore(InMemorySessionStore(), keyring("k1"))
    session_id = await _session(store, 2)
    with pytest.raises(TurnLimitReachedError):
        await store.append_turns(session_id, [_turn(5, "over")], max_turns=2)
    await store.transition(
        session_id, SessionStatus.CLOSED, allowed_from=frozenset({SessionStatus.ACTIVE})
    )
    with pytest.raises(SessionClosedError):
        await store.append_turns(session_id, [_turn(6, "late")])
    entries = store._opened.of(session_id)
    assert entries is not None  # the turns appended, and the header fields opened
    assert {place for place in entries if not place.startswith("\0")} == {"t0", "t1"}


async def test_appends_stay_within_the_cache_budget() -> None:
    store = EncryptedSessionStore(InMemorySessionStore(), keyring("k1"), turn_cache_bytes=4096)
    for n in range(6):
        await _session(store, 10, session_id=f"s{n}")
        assert store._opened._total <= 4096
    assert "s0" not in store._opened._sessions and "s5" in store._opened._sessions
    big = make_turn(99, turn_id="big", content="x" * 70_000)  # above the largest entry kept
    await store.append_turns("s5", [big])
    entries = store._opened.of("s5")
    assert entries is not None and "big" not in entries


def test_a_run_of_either_kind_is_admitted_from_a_sessions_second_whole_read() -> None:
    cache = OpenedTurns(1 << 20)
    entries = cache.of("s")
    assert entries is not None
    assert cache.admit_run("s", entries) is False
    assert cache.admit_run("s", entries) is True
    assert cache.admit_run("s", {}) is False  # not the session's live entries
    cache.drop("s")  # forgotten with the session: a new first read again
    entries = cache.of("s")
    assert entries is not None and cache.admit_run("s", entries) is False
    cache.clear()
    entries = cache.of("s")
    assert entries is not None and cache.admit_run("s", entries) is False


class _ErasedWhileAppending(InMemorySessionStore):
    """Stores the append, then lets ``during`` run before answering (an erasure racing it)."""

    during: Any = None

    async def append_turns(self, session_id: str, turns: Any, **kw: Any) -> Any:
        result = await super().append_turns(session_id, turns, **kw)
        if self.during is not None:
            await self.during(session_id)
        return result


async def test_an_append_answered_after_its_session_was_erased_enters_nothing() -> None:
    inner = _ErasedWhileAppending()
    store = EncryptedSessionStore(inner, keyring("k1"))
    session_id = await _session(store, 2)
    assert session_id in store._opened._sessions

    async def erase(sid: str) -> None:
        await store.erase_session(sid)

    inner.during = erase
    await store.append_turns(session_id, [_turn(7, "late")])
    # Neither its turns nor the header fields of its reply are entered again.
    assert session_id not in store._opened._sessions and store._opened._total == 0


async def test_an_append_to_a_session_gone_elsewhere_drops_what_was_kept_of_it() -> None:
    inner = InMemorySessionStore()
    store = EncryptedSessionStore(inner, keyring("k1"))
    session_id = await _session(store, 3)
    assert store._opened._total > 0
    await inner.delete(session_id)  # another process deleted it
    with pytest.raises(SessionNotFoundError):
        await store.append_turns(session_id, [_turn(9, "after")])
    assert session_id not in store._opened._sessions and store._opened._total == 0
    assert session_id not in store._cache  # its data key goes too, as on a delete
