"""Text-only turns are sealed as their text (NUL + UTF-8), open without a parse, and
cannot be passed off as anything else."""

from __future__ import annotations

import copy

import orjson
import pytest
from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session.encryption.cipher import SEALED_PREFIX, DataKey, new_data_key
from lexigram.ai.session.exceptions import CorruptRecordError
from lexigram.ai.session.stores.encrypted.opened import Entry
from lexigram.ai.session.stores.encrypted.sealing import (
    _with_body,
    open_turn,
    open_turns,
    seal_turn,
)
from lexigram.ai.session.stores.encrypted.store import EncryptedSessionStore
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from lexigram.ai.session.testing import make_state, make_turn

from .helpers import keyring

LONG = 600  # above gc_pause.MIN_PAUSE

TEXTS = [
    "",
    "plain words",
    '["looks", [], [], {"like": "a JSON body"}]',
    "\x00starts with NUL\x00 and holds one",
    "non-ASCII \u00e9\u4e2d\U0001f600 and \\ backslash",
]


def _key() -> DataKey:
    return new_data_key("session-text", keyring("k1"))


def _plaintext(sealed: SessionTurn, key: DataKey) -> bytes:
    return key.open(sealed.content, f"turn:{sealed.turn_id}", record="r")


@pytest.mark.parametrize("text", TEXTS)
def test_a_text_only_turn_is_sealed_as_its_text_and_opens_equal(text: str) -> None:
    key = _key()
    turn = make_turn(1, content=text)
    sealed = seal_turn(turn, key)
    assert _plaintext(sealed, key) == b"\x00" + text.encode("utf-8")
    assert sealed.tool_calls == [] and sealed.metadata == {}
    assert open_turn(sealed, key, record="r").__dict__ == turn.__dict__
    for cache in (None, {}):
        opened = open_turns([copy.deepcopy(sealed)], key, record="r", cache=cache, added=[])
        assert opened[0].__dict__ == turn.__dict__


@pytest.mark.parametrize(
    "extra",
    [
        {"metadata": {"k": 1}},
        {"tool_calls": [{"name": "f", "arguments": {}}]},
        {"skill_results": [{"skill": "s"}]},
    ],
)
def test_a_turn_with_more_than_text_keeps_the_json_body(extra: dict[str, object]) -> None:
    key = _key()
    turn = make_turn(2, content="hello", **extra)  # type: ignore[arg-type]
    sealed = seal_turn(turn, key)
    body = orjson.loads(_plaintext(sealed, key))
    assert body == [turn.content, turn.tool_calls, turn.skill_results, turn.metadata]
    assert open_turn(sealed, key, record="r").__dict__ == turn.__dict__


def test_a_text_only_turn_sealed_as_a_json_body_by_an_earlier_version_still_opens() -> None:
    key = _key()
    turn = make_turn(3, content="written before the text form")
    body = orjson.dumps([turn.content, [], [], {}])
    earlier = _with_body(turn, key.seal(body, f"turn:{turn.turn_id}"), [], [], {})
    assert open_turn(earlier, key, record="r").__dict__ == turn.__dict__
    opened = open_turns([earlier], key, record="r", cache={}, added=[])
    assert opened[0].__dict__ == turn.__dict__


def test_clear_fields_stored_beside_a_sealed_text_are_not_the_turns() -> None:
    """Only what was sealed is the turn's: values put in clear beside a sealed text
    (by a bug or by someone with write access) do not come back."""
    key = _key()
    turn = make_turn(4, content="secret")
    sealed = seal_turn(turn, key)
    planted = _with_body(sealed, sealed.content, [{"name": "x"}], [{"s": 1}], {"admin": True})
    assert open_turn(planted, key, record="r").__dict__ == turn.__dict__
    many = [copy.deepcopy(planted) for _ in range(LONG)]
    for opened in open_turns(many, key, record="r", cache={}, added=[]):
        assert opened.__dict__ == turn.__dict__


def test_a_text_body_that_is_not_utf8_is_named() -> None:
    key = _key()
    turn = make_turn(5, content="x")
    broken = _with_body(turn, key.seal(b"\x00\xff\xfe", f"turn:{turn.turn_id}"), [], [], {})
    with pytest.raises(CorruptRecordError, match="turn:"):
        open_turn(broken, key, record="r")
    with pytest.raises(CorruptRecordError, match="turn:"):
        open_turns([broken] * 3, key, record="r", cache={}, added=[])


def test_the_cache_keeps_the_text_and_a_warm_read_returns_it() -> None:
    key = _key()
    turns = [make_turn(n, content=f"text {n}") for n in range(LONG)]
    sealed = [seal_turn(t, key) for t in turns]
    added: list[tuple[str, Entry]] = []
    open_turns(copy.deepcopy(sealed), key, record="r", cache={}, added=added)
    assert all(entry[2] == f"text {n}" for n, (_, entry) in enumerate(added))
    warm = open_turns(copy.deepcopy(sealed), key, record="r", cache=dict(added))
    assert [t.__dict__ for t in warm] == [t.__dict__ for t in turns]
    # Each read gets containers of its own, never shared with another read.
    again = open_turns(copy.deepcopy(sealed), key, record="r", cache=dict(added))
    assert warm[0].metadata is not again[0].metadata
    assert warm[0].tool_calls is not again[0].tool_calls


async def test_text_only_turns_round_trip_through_the_encrypted_store() -> None:
    store = EncryptedSessionStore(InMemorySessionStore(), keyring("k1"))
    await store.initialize()
    state = make_state(session_id="text-session")
    await store.create_session(state)
    turns = [make_turn(n, content=TEXTS[n % len(TEXTS)]) for n in range(LONG)]
    await store.append_turns("text-session", turns)
    for _ in range(2):  # cold, then from the cache of opened turns
        loaded = await store.load("text-session")
        assert loaded is not None
        assert [t.__dict__ for t in loaded.turns] == [t.__dict__ for t in turns]
        loaded.turns[0].metadata["mutated"] = True  # the caller's own containers
    stored = await store.inner.load("text-session")
    assert stored is not None and all(t.content.startswith(SEALED_PREFIX) for t in stored.turns)
