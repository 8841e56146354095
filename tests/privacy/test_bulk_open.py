"""Opening many sealed turns at once: the same turns as one by one, and a bad one is named."""

from __future__ import annotations

import base64
import copy
from dataclasses import replace

import pytest
from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session.encryption.cipher import (
    LEGACY_SEALED_PREFIX,
    SEALED_PREFIX,
    DataKey,
    new_data_key,
    sealed_bytes,
)
from lexigram.ai.session.exceptions import CorruptRecordError, EncryptionKeyError
from lexigram.ai.session.stores.encrypted.opened import Entry
from lexigram.ai.session.stores.encrypted.sealing import open_turn, open_turns, seal_turn
from lexigram.ai.session.stores.encrypted.store import EncryptedSessionStore
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from lexigram.ai.session.testing import make_state, make_turn

from .helpers import keyring

LONG = 600  # above gc_pause.MIN_PAUSE, so the long-session path with the collector paused


def _turns(count: int) -> list[SessionTurn]:
    """Turns with varied bodies: tool calls, skill results, nested metadata, non-ASCII text."""
    return [
        make_turn(
            n,
            content=f'message {n} \u00e9\u4e2d\U0001f600 "quoted" ,],[',
            tool_calls=[{"name": "f", "arguments": {"n": n, "deep": [n, {"x": None}]}}]
            if n % 3 == 0
            else [],
            skill_results=[{"skill": "s", "ok": n % 2 == 0}] if n % 5 == 0 else [],
            metadata={"k": n, "tags": ["a", "b"]} if n % 2 else {},
        )
        for n in range(count)
    ]


def _key() -> DataKey:
    return new_data_key("session-bulk", keyring("k1"))


def _sealed(turns: list[SessionTurn], key: DataKey) -> list[SessionTurn]:
    return [seal_turn(t, key) for t in turns]


def _fresh(turns: list[SessionTurn]) -> list[SessionTurn]:
    """Copies a call may open in place (``open_turns`` installs into the turns it is given)."""
    return [copy.deepcopy(t) for t in turns]


@pytest.mark.parametrize("count", [1, 7, LONG])
def test_bulk_opened_turns_equal_turns_opened_one_by_one(count: int) -> None:
    key = _key()
    plain = _turns(count)
    sealed = _sealed(plain, key)
    one_by_one = [open_turn(t, key, record="r") for t in _fresh(sealed)]
    added: list[tuple[str, Entry]] = []
    cold = open_turns(_fresh(sealed), key, record="r", cache={}, added=added)
    warm = open_turns(_fresh(sealed), key, record="r", cache=dict(added))
    assert [t.__dict__ for t in one_by_one] == [t.__dict__ for t in plain]
    assert [t.__dict__ for t in cold] == [t.__dict__ for t in plain]
    assert [t.__dict__ for t in warm] == [t.__dict__ for t in plain]
    assert [turn_id for turn_id, _ in added] == [t.turn_id for t in plain]


def test_a_partly_warm_cache_opens_cached_and_new_turns_alike() -> None:
    key = _key()
    plain = _turns(LONG)
    sealed = _sealed(plain, key)
    half = LONG // 2
    first: list[tuple[str, Entry]] = []
    open_turns(_fresh(sealed[:half]), key, record="r", cache={}, added=first)
    added: list[tuple[str, Entry]] = []
    opened = open_turns(_fresh(sealed), key, record="r", cache=dict(first), added=added)
    assert [t.__dict__ for t in opened] == [t.__dict__ for t in plain]
    assert [turn_id for turn_id, _ in added] == [t.turn_id for t in plain[half:]]


def test_legacy_plaintext_and_cached_turns_mixed_open_alike() -> None:
    key = _key()
    plain = _turns(LONG)
    sealed = _sealed(plain, key)
    for n in range(0, LONG, 5):  # written by the previous version: lxe2 and hex
        raw = sealed_bytes(sealed[n].content)
        legacy = LEGACY_SEALED_PREFIX + raw.hex()
        sealed[n] = replace(sealed[n], content=legacy)
    mixed = [plain[n] if n % 3 == 0 else t for n, t in enumerate(sealed)]
    first: list[tuple[str, Entry]] = []
    open_turns(_fresh(mixed[::2]), key, record="r", cache={}, added=first)
    opened = open_turns(_fresh(mixed), key, record="r", cache=dict(first), added=[])
    assert [t.__dict__ for t in opened] == [t.__dict__ for t in plain]


def test_a_cache_entry_made_under_another_key_is_not_used() -> None:
    key = _key()
    plain = _turns(LONG)
    sealed = _sealed(plain, key)
    wrong = b'["forged", [], [], {}]'
    cache: dict[str, Entry] = {t.turn_id: (t.content, b"\0" * 32, wrong) for t in sealed}
    opened = open_turns(_fresh(sealed), key, record="r", cache=cache, added=[])
    assert [t.__dict__ for t in opened] == [t.__dict__ for t in plain]


@pytest.mark.parametrize("spoilt", ["key", "sealed text"])
def test_a_warm_cache_with_one_entry_not_the_turns_opens_that_turn_from_storage(
    spoilt: str,
) -> None:
    """Every turn cached but one entry under another key, or of another sealed text
    (the turn was replaced under its id): that turn is opened from what is stored."""
    key = _key()
    plain = _turns(LONG)
    sealed = _sealed(plain, key)
    added: list[tuple[str, Entry]] = []
    open_turns(_fresh(sealed), key, record="r", cache={}, added=added)
    cache = dict(added)
    odd = sealed[123]
    sealed_text, raw_key, _ = cache[odd.turn_id]
    forged = b'["forged", [], [], {}]'
    if spoilt == "key":
        cache[odd.turn_id] = (sealed_text, b"\0" * 32, forged)
    else:
        cache[odd.turn_id] = (key.seal(forged, f"turn:{odd.turn_id}"), raw_key, forged)
    fresh: list[tuple[str, Entry]] = []
    opened = open_turns(_fresh(sealed), key, record="r", cache=cache, added=fresh)
    assert [t.__dict__ for t in opened] == [t.__dict__ for t in plain]
    assert [turn_id for turn_id, _ in fresh] == [odd.turn_id]  # only it was decrypted


def test_plaintext_turns_among_sealed_ones_are_left_as_they_are() -> None:
    key = _key()
    plain = _turns(LONG)
    mixed = [t if n % 4 == 0 else seal_turn(t, key) for n, t in enumerate(plain)]
    opened = open_turns(_fresh(mixed), key, record="r")
    assert [t.__dict__ for t in opened] == [t.__dict__ for t in plain]


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_one_altered_turn_in_a_long_session_raises_naming_it(warm: bool) -> None:
    key = _key()
    sealed = _sealed(_turns(LONG), key)
    added: list[tuple[str, Entry]] = []
    open_turns(_fresh(sealed), key, record="session 's'", cache={}, added=added)
    bad = 417
    raw = bytearray(sealed_bytes(sealed[bad].content))
    raw[-1] ^= 1  # one bit of the tag: still base64, no longer authentic
    flipped = SEALED_PREFIX + base64.b64encode(bytes(raw)).decode()
    damaged = _fresh(sealed)
    damaged[bad] = replace(damaged[bad], content=flipped)
    cache = dict(added) if warm else None
    with pytest.raises(EncryptionKeyError, match=f"turn:{sealed[bad].turn_id}"):
        open_turns(damaged, key, record="session 's'", cache=cache, added=[])


def test_a_turn_sealed_with_a_wrong_layout_raises_naming_it() -> None:
    key = _key()
    sealed = _sealed(_turns(LONG), key)
    bad = sealed[300]
    # Authentic under this key and turn id, but not the four-field body seal_turn writes.
    sealed[300] = replace(bad, content=key.seal(b'["only", "three", 3]', f"turn:{bad.turn_id}"))
    with pytest.raises(CorruptRecordError, match=f"turn:{bad.turn_id}.*layout"):
        open_turns(_fresh(sealed), key, record="session 's'")


def test_a_failed_bulk_open_records_each_decrypted_turn_once() -> None:
    key = _key()
    sealed = _sealed(_turns(LONG), key)
    last = sealed[-1]
    sealed[-1] = replace(last, content=key.seal(b"not json", f"turn:{last.turn_id}"))
    added: list[tuple[str, Entry]] = []
    with pytest.raises(CorruptRecordError, match=f"turn:{last.turn_id}"):
        open_turns(_fresh(sealed), key, record="r", cache={}, added=added)
    ids = [turn_id for turn_id, _ in added]
    assert len(ids) == len(set(ids))


async def test_a_long_session_with_one_altered_turn_does_not_load() -> None:
    inner = InMemorySessionStore()
    store = EncryptedSessionStore(inner, keyring("k1"))
    state = make_state("erin")
    await store.create_session(state)
    session_id = state.session_id
    await store.append_turns(session_id, _turns(LONG))
    loaded = await store.load(session_id)  # every turn now in the cache of opened turns
    assert loaded is not None and len(loaded.turns) == LONG
    stored = (await inner.get_turns(session_id))[5]
    content = stored.content
    altered = replace(
        stored, turn_id="t-altered", content=content[:-1] + ("0" if content[-1] != "0" else "1")
    )
    await inner.append_turns(session_id, [altered])
    with pytest.raises(EncryptionKeyError, match="turn:t-altered"):
        await store.load(session_id)
    with pytest.raises(EncryptionKeyError, match="turn:t-altered"):
        await store.get_turns(session_id)
