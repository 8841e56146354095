"""The codec's fast builders give the same objects as the dataclasses' own constructors."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.stores import codec
from lexigram.ai.session.stores._common import copy_state, copy_turn

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _turn() -> SessionTurn:
    return SessionTurn(
        turn_id="t1", role="user", content="hi", timestamp=NOW,
        tool_calls=[{"name": "f", "arguments": {"a": [1]}}], metadata={"k": {"v": 1}},
        tokens_used=3, cost=0.5, model="m",
    )


def _state() -> SessionState:
    return SessionState(
        session_id="s1", user_id="u1", status=SessionStatus.ACTIVE, created_at=NOW,
        updated_at=NOW, metadata={"m": [1]}, variables={"v": {"w": 2}}, active_tools=["x"],
    )


def test_build_turn_equals_the_constructor() -> None:
    turn = _turn()
    built = codec.build_turn({f.name: getattr(turn, f.name) for f in dataclasses.fields(turn)})
    assert type(built) is SessionTurn and built == turn
    # Fields out of order: the constructor builds it.
    assert codec.build_turn({"role": "user", "turn_id": "t1", "content": "hi",
                             "timestamp": NOW}) == SessionTurn("t1", "user", "hi", NOW)


def test_state_with_equals_replace() -> None:
    state = _state()
    changed = codec.state_with(state, turn_count=4, status=SessionStatus.CLOSED)
    assert changed == dataclasses.replace(state, turn_count=4, status=SessionStatus.CLOSED)
    assert state.turn_count == 0 and state.status is SessionStatus.ACTIVE

    @dataclasses.dataclass(frozen=True)
    class Sub(SessionState):
        pass

    sub = Sub(**{f.name: getattr(state, f.name) for f in dataclasses.fields(state)})
    assert type(codec.state_with(sub, turn_count=1)) is Sub


def test_copies_share_no_container() -> None:
    turn, state = _turn(), _state()
    copied = copy_turn(turn)
    assert copied == turn and type(copied) is SessionTurn
    assert copied.tool_calls is not turn.tool_calls and copied.metadata is not turn.metadata
    header = copy_state(state, turns=[])
    assert header == state
    assert header.metadata is not state.metadata and header.variables is not state.variables
    assert header.active_tools is not state.active_tools


def test_fast_turn_refuses_a_damaged_document() -> None:
    doc = orjson.loads(orjson.dumps(_turn()))
    assert codec.fast_turn(dict(doc)) == _turn()
    missing = dict(doc)
    del missing["model"]
    assert codec.fast_turn(missing) is None
    assert codec.fast_turn({**doc, "extra": 1}) is None
    assert codec.fast_turn({**doc, "timestamp": "2026-01-01T00:00:00"}) is None


def _texts(n: int) -> list[str]:
    return [
        orjson.dumps(dataclasses.replace(_turn(), turn_id=f"t{i}", content=f"c{i}")).decode()
        for i in range(n)
    ]


def test_turns_from_texts_equal_the_turn_by_turn_decode() -> None:
    texts = _texts(5)
    turns = codec.turns_from_texts(texts)
    assert turns == [codec.decode_turn_document(orjson.loads(t), record="r") for t in texts]
    assert turns is not None and all(type(t) is SessionTurn for t in turns)
    assert turns[0].timestamp.tzinfo is not None
    assert turns[0].tool_calls is not turns[1].tool_calls  # nothing shared between turns
    assert codec.turns_from_texts([t.encode() for t in texts]) == turns
    assert codec.turns_from_texts([]) == []


def _damaged(change: Any) -> list[str]:
    texts = _texts(3)
    doc = orjson.loads(texts[1])
    change(doc)
    texts[1] = orjson.dumps(doc).decode()
    return texts


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.pop("role"),
        lambda d: d.update(extra=1),
        lambda d: d.update(modle=d.pop("model")),  # a renamed key: 11 keys, one unknown
        lambda d: d.update(timestamp="yesterday"),
        lambda d: d.update(timestamp=None),
        lambda d: d.update(timestamp="2026-01-01T00:00:00"),  # naive: the checked path
        lambda d: d.update(content=None),
    ],
)
def test_turns_from_texts_refuse_a_damaged_document(change: Any) -> None:
    assert codec.turns_from_texts(_damaged(change)) is None


@pytest.mark.parametrize(
    "texts",
    [
        ["{oops"],
        ['{"a": 1}, {"b": 2}'],  # two values in one text: the count gives it away
        ["[1]"],
        ["1"],
        [None],
    ],
)
def test_turns_from_texts_refuse_what_is_not_one_turn_per_text(texts: list[Any]) -> None:
    assert codec.turns_from_texts(_texts(2) + texts) is None


def test_turns_from_documents_leave_refused_documents_unchanged() -> None:
    docs = [orjson.loads(t) for t in _texts(3)]
    docs[2]["content"] = 5
    before = orjson.dumps(docs)
    assert codec.turns_from_documents(docs) is None
    assert orjson.dumps(docs) == before  # the one-by-one decode sees the stored values
