"""The one input rule set (``lexigram.ai.session.validation``): what passes, what is refused."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.validation import (
    MAX_ID_LENGTH,
    MAX_JSON_DEPTH,
    MAX_SAFE_INT,
    CheckedTurns,
    check_cost,
    check_id,
    check_json,
    check_state,
    check_text,
    check_tokens,
    check_totals,
    check_turn,
    check_turns,
    new_totals,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _turn(**changes: Any) -> SessionTurn:
    base = SessionTurn(turn_id="t1", role="user", content="hello", timestamp=NOW)
    return replace(base, **changes)


def _refused(field: str) -> Any:
    class _Check:
        def __enter__(self) -> None:
            self.ctx = pytest.raises(SessionValidationError)
            self.info = self.ctx.__enter__()

        def __exit__(self, *exc: Any) -> bool:
            handled = self.ctx.__exit__(*exc)
            assert self.info.value.field == field, self.info.value
            return bool(handled)

    return _Check()


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("abc", True),
        ("x" * MAX_ID_LENGTH, True),
        ("ticket-42/é", True),
        ("x" * (MAX_ID_LENGTH + 1), False),
        ("x" * 1_000_000, False),
        ("", False),
        ("   ", False),
        ("a\x00b", False),
        ("a\nb", False),
        ("a\x9fb", False),
        ("a\x7fb", False),
        ("a b", True),
        ("\t", False),
        ("a\ud800", False),
        (42, False),
        (None, False),
    ],
)
def test_check_id(value: Any, ok: bool) -> None:
    if ok:
        assert check_id(value, "session_id") == value
    else:
        with _refused("session_id"):
            check_id(value, "session_id")


def test_check_text_refuses_lone_surrogates_only() -> None:
    assert check_text("plain", "content") == "plain"
    assert check_text("emoji \U0001f600 and \u00e9", "content")
    with _refused("content"):
        check_text("a\udfffb", "content")
    with _refused("content"):
        check_text(b"bytes", "content")


@pytest.mark.parametrize(
    ("value", "ok"),
    [(0, True), (MAX_SAFE_INT, True), (MAX_SAFE_INT + 1, False), (2**63 - 1, False),
     (2**70, False), (-1, False), (True, False), (1.0, False), ("1", False)],
)
def test_check_tokens(value: Any, ok: bool) -> None:
    if ok:
        assert check_tokens(value, "tokens_used") == value
    else:
        with _refused("tokens_used"):
            check_tokens(value, "tokens_used")


@pytest.mark.parametrize(
    ("value", "ok"),
    [(0, True), (0.25, True), (10**300, True), (10**400, False), (float("inf"), False),
     (float("nan"), False), (-0.5, False), (False, False), ("1", False)],
)
def test_check_cost(value: Any, ok: bool) -> None:
    if ok:
        assert check_cost(value, "cost") == float(value)
    else:
        with _refused("cost"):
            check_cost(value, "cost")


def test_check_json_names_the_path() -> None:
    good = {"a": [1, 2.5, None, True, "x", {"b": (1, 2)}], "n": -(2**63 - 1)}
    assert check_json(good, "metadata") is good
    cases = [
        ({"a": [1, {"b": float("nan")}]}, "metadata.a[1].b"),
        ({"a": float("inf")}, "metadata.a"),
        ({"a": 2**63}, "metadata.a"),
        ({"a": "\ud800"}, "metadata.a"),
        ({"\ud800": 1}, "metadata"),
        ({1: "x"}, "metadata"),
        ({"a b": object()}, "metadata['a b']"),
        ({"when": NOW}, "metadata.when"),
    ]
    for value, field in cases:
        with _refused(field):
            check_json(value, "metadata")


def test_check_json_depth_limit() -> None:
    deep: Any = 1
    for _ in range(MAX_JSON_DEPTH):
        deep = [deep]
    check_json(deep, "variables")
    with pytest.raises(SessionValidationError) as info:
        check_json([deep], "variables")
    assert info.value.field.startswith("variables[0]")


def test_check_turn_names_each_field() -> None:
    assert check_turn(_turn()) == _turn()
    naive = check_turn(_turn(timestamp=datetime(2026, 1, 1)))
    assert naive.timestamp.tzinfo is not None
    cases = [
        (dict(turn_id=""), "turns[2].turn_id"),
        (dict(role=" "), "turns[2].role"),
        (dict(content="\ud800"), "turns[2].content"),
        (dict(content=None), "turns[2].content"),
        (dict(model="gpt\udc00"), "turns[2].model"),
        (dict(provider=3), "turns[2].provider"),
        (dict(tokens_used=2**53 + 1), "turns[2].tokens_used"),
        (dict(cost=float("inf")), "turns[2].cost"),
        (dict(tool_calls=[{"name": "x", "args": {"v": float("nan")}}]),
         "turns[2].tool_calls[0].args.v"),
        (dict(tool_calls=["not a dict"]), "turns[2].tool_calls[0]"),
        (dict(skill_results=[{"r": 2**70}]), "turns[2].skill_results[0].r"),
        (dict(metadata={"foo": "\ud800"}), "turns[2].metadata.foo"),
        (dict(metadata=[]), "turns[2].metadata"),
        (dict(timestamp="2026-01-01"), "turns[2].timestamp"),
    ]
    for changes, field in cases:
        with _refused(field):
            check_turn(_turn(**changes), "turns[2]")
    with _refused("turns[1]"):
        check_turns([_turn(), "nope"])


def test_check_turns_checks_a_batch_once() -> None:
    naive = _turn(turn_id="t2", timestamp=datetime(2026, 1, 1))
    checked = check_turns((_turn(), naive))
    assert type(checked) is CheckedTurns
    assert checked[0] == _turn() and checked[1].timestamp.tzinfo is not None
    assert check_turns(checked, "other") is checked  # the store's check costs nothing
    with _refused("turns[1].metadata.a[0].b"):
        check_turns([_turn(), _turn(metadata={"a": [{"b": float("nan")}]})])


def test_nested_values_pass_without_the_naming_walk() -> None:
    calls = [{"name": "lookup", "arguments": {"q": "caf\u00e9", "ids": [1, 2.5, None, True]}}]
    meta = {"user": {"locale": "fr", "tags": ("a", "b")}, "score": -(2**63 - 1)}
    turn = _turn(content="d\u00e9j\u00e0 vu \U0001f600", tool_calls=calls, metadata=meta)
    assert check_turn(turn) is turn
    for changes, field in [
        (dict(content="caf\u00e9 \ud800"), "turn.content"),
        (dict(metadata={"user": {"\udc00": 1}}), "turn.metadata.user"),
        (dict(metadata={"user": {"n": 2**63}}), "turn.metadata.user.n"),
        (dict(tool_calls=[{"a": [0, float("inf")]}]), "turn.tool_calls[0].a[1]"),
    ]:
        with _refused(field):
            check_turn(_turn(**changes))


def test_totals() -> None:
    assert new_totals(5, 0.5, [_turn(tokens_used=3, cost=0.25)]) == (8, 0.75)
    with _refused("total_tokens"):
        new_totals(MAX_SAFE_INT, 0.0, [_turn(tokens_used=1)])
    with _refused("total_cost"):
        new_totals(0, 1e308, [_turn(cost=1e308)])
    with _refused("state.total_tokens"):
        check_totals(MAX_SAFE_INT + 1, 0.0, prefix="state.")


def test_check_state() -> None:
    state = SessionState(
        session_id="s1", user_id="u1", status=SessionStatus.ACTIVE, created_at=NOW,
        updated_at=NOW, turns=[_turn()],
    )
    assert check_state(state) is state
    with _refused("state.user_id"):
        check_state(replace(state, user_id="u" * 1000))
    with _refused("state.variables.k"):
        check_state(replace(state, variables={"k": float("nan")}))
    with _refused("state.turns[0].cost"):
        check_state(replace(state, turns=[_turn(cost=-1.0)]))
    with _refused("state.active_tools[1]"):
        check_state(replace(state, active_tools=["a", "\ud800"]))
