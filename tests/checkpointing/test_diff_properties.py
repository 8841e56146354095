"""Property tests of ``StateDiff``: exact round trips for any pair of states."""

from __future__ import annotations

import copy
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.checkpointing import StateDiff
from lexigram.ai.session.exceptions import SessionValidationError

SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_ZONES = st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5))])
_TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=_ZONES
)
_TEXT = st.text(max_size=8)


def _money(allow_nan: bool) -> st.SearchStrategy[float]:
    finite = st.floats(min_value=0, max_value=1e9)
    return finite | st.just(math.nan) if allow_nan else finite


def _json(allow_nan: bool) -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=allow_nan) | _TEXT
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
        max_leaves=6,
    )


def _turns(allow_nan: bool) -> st.SearchStrategy[SessionTurn]:
    json = _json(allow_nan)
    return st.builds(
        SessionTurn,
        turn_id=st.sampled_from(["a", "b", "c", "d", "e", "f"]) | _TEXT,
        role=st.sampled_from(["user", "assistant", "system", "tool"]),
        content=_TEXT,
        timestamp=_TIMES,
        tool_calls=st.lists(st.dictionaries(_TEXT, json, max_size=2), max_size=2),
        skill_results=st.lists(st.dictionaries(_TEXT, json, max_size=2), max_size=2),
        metadata=st.dictionaries(_TEXT, json, max_size=3),
        tokens_used=st.integers(min_value=0, max_value=10**6),
        cost=_money(allow_nan),
        model=st.none() | _TEXT,
        provider=st.none() | _TEXT,
    )


def _states(
    allow_nan: bool = False, turns: st.SearchStrategy[list[SessionTurn]] | None = None
) -> st.SearchStrategy[SessionState]:
    json = _json(allow_nan)
    return st.builds(
        SessionState,
        session_id=st.sampled_from(["s1", "s2"]),
        user_id=st.sampled_from(["alice", "bob"]),
        status=st.sampled_from(list(SessionStatus)),
        turns=turns if turns is not None else st.lists(_turns(allow_nan), max_size=6),
        metadata=st.dictionaries(_TEXT, json, max_size=3),
        active_tools=st.lists(_TEXT, max_size=3),
        active_skills=st.lists(_TEXT, max_size=3),
        system_prompt=st.none() | _TEXT,
        variables=st.dictionaries(_TEXT, json, max_size=4),
        created_at=_TIMES,
        updated_at=_TIMES,
        checkpoint_id=st.none() | _TEXT,
        total_tokens=st.integers(min_value=0),
        total_cost=_money(allow_nan),
        turn_count=st.integers(min_value=0, max_value=10**6),
        parent_session_id=st.none() | _TEXT,
        branch_name=st.none() | _TEXT,
    )


@st.composite
def _pairs(draw: st.DrawFn, allow_nan: bool = False) -> tuple[SessionState, SessionState]:
    """Two states: unrelated, or the second grown/edited from the first (shared prefix)."""
    old = draw(_states(allow_nan))
    if draw(st.booleans()):
        return old, draw(_states(allow_nan))
    keep = draw(st.integers(min_value=0, max_value=len(old.turns)))
    extra = draw(st.lists(_turns(allow_nan), max_size=4))
    other = draw(_states(allow_nan))
    chosen = {
        name: getattr(other, name)
        for name in draw(
            st.sets(
                st.sampled_from(
                    ["variables", "metadata", "status", "updated_at", "turn_count", "checkpoint_id"]
                )
            )
        )
    }
    return old, replace(old, turns=old.turns[:keep] + extra, **chosen)


@SETTINGS
@given(_pairs())
def test_apply_of_compute_gives_new(pair: tuple[SessionState, SessionState]) -> None:
    old, new = pair
    diff = StateDiff.compute(old, new)
    result = StateDiff.apply(old, diff)
    assert result == new
    # Exact, not merely ==: nothing left to change between the result and new.
    assert StateDiff.is_empty(StateDiff.compute(result, new))


@SETTINGS
@given(_pairs(allow_nan=True))
def test_round_trip_is_exact_even_with_nan(pair: tuple[SessionState, SessionState]) -> None:
    old, new = pair
    result = StateDiff.apply(old, StateDiff.compute(old, new))
    assert StateDiff.is_empty(StateDiff.compute(result, new))
    assert StateDiff.is_empty(StateDiff.compute(new, result))


@SETTINGS
@given(_states(), st.lists(_turns(False), max_size=8))
def test_diff_of_an_append_carries_exactly_the_new_turns(
    old: SessionState, extra: list[SessionTurn]
) -> None:
    new = replace(old, turns=old.turns + extra, turn_count=old.turn_count + len(extra))
    diff = StateDiff.compute(old, new)
    assert diff["turns"]["keep"] == len(old.turns)
    assert diff["turns"]["append"] == extra
    assert len(diff["turns"]["append"]) == len(extra)
    assert set(diff["fields"]) <= {"turn_count"}
    assert StateDiff.apply(old, diff) == new


@SETTINGS
@given(_states())
def test_identical_states_give_an_empty_diff(state: SessionState) -> None:
    diff = StateDiff.compute(state, copy.deepcopy(state))
    assert StateDiff.is_empty(diff)
    assert diff["fields"] == {} and diff["turns"]["append"] == []


@SETTINGS
@given(_pairs())
def test_apply_never_mutates_or_aliases_its_inputs(pair: tuple[SessionState, SessionState]) -> None:
    old, new = pair
    diff = StateDiff.compute(old, new)
    old_before, diff_before, new_before = (copy.deepcopy(x) for x in (old, diff, new))
    result = StateDiff.apply(old, diff)
    assert old == old_before and diff == diff_before and new == new_before
    # Mutating everything mutable in the result leaves the inputs alone.
    result.variables["__poke__"] = 1
    result.metadata["__poke__"] = 1
    result.active_tools.append("__poke__")
    result.turns.append(
        result.turns[0] if result.turns else new_before.turns[0] if new_before.turns else _a_turn()
    )
    for t in result.turns:
        t.metadata["__poke__"] = 1
        t.tool_calls.append({"__poke__": 1})
    assert old == old_before and diff == diff_before and new == new_before
    # A second application still gives new: the diff was not consumed.
    assert StateDiff.apply(old, diff) == new


def _a_turn() -> SessionTurn:
    return SessionTurn(
        turn_id="x", role="user", content="x", timestamp=datetime(2026, 1, 1, tzinfo=UTC)
    )


def _state(**fields: Any) -> SessionState:
    base: dict[str, Any] = {
        "session_id": "s1",
        "user_id": "alice",
        "status": SessionStatus.ACTIVE,
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "updated_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    base.update(fields)
    return SessionState(**base)


@pytest.mark.parametrize(
    ("old_value", "new_value"),
    [
        ({"a": 1}, {"a": 1.0}),
        ({"a": 1}, {"a": True}),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        ({"a": 0.0}, {"a": -0.0}),
        ({"a": [1, 2]}, {"a": (1, 2)}),
    ],
)
def test_values_that_compare_equal_are_still_carried(old_value: Any, new_value: Any) -> None:
    old, new = _state(variables=old_value), _state(variables=new_value)
    diff = StateDiff.compute(old, new)
    assert "variables" in diff["fields"]
    result = StateDiff.apply(old, diff)
    assert repr(result.variables) == repr(new_value)


def test_same_instant_in_another_zone_is_carried() -> None:
    utc = datetime(2026, 1, 1, 12, tzinfo=UTC)
    plus2 = utc.astimezone(timezone(timedelta(hours=2)))
    old, new = _state(updated_at=utc), _state(updated_at=plus2)
    assert old == new  # == cannot tell them apart
    result = StateDiff.apply(old, StateDiff.compute(old, new))
    assert result.updated_at.utcoffset() == timedelta(hours=2)
    turn_utc = _a_turn()
    turn_plus2 = replace(turn_utc, timestamp=turn_utc.timestamp.astimezone(plus2.tzinfo))
    diff = StateDiff.compute(_state(turns=[turn_utc]), _state(turns=[turn_plus2]))
    assert diff["turns"]["keep"] == 0 and diff["turns"]["append"] == [turn_plus2]


@pytest.mark.parametrize(
    ("diff", "field"),
    [
        ("nope", "diff"),
        ({"fields": {}}, "diff.turns"),
        ({"fields": {}, "turns": {"keep": -1, "append": []}}, "diff.turns.keep"),
        ({"fields": {}, "turns": {"keep": True, "append": []}}, "diff.turns.keep"),
        ({"fields": {}, "turns": {"keep": 5, "append": []}}, "diff.turns.keep"),
        ({"fields": {}, "turns": {"keep": 0, "append": "x"}}, "diff.turns.append"),
        (
            {"fields": {}, "turns": {"keep": 0, "append": [{"turn_id": "x"}]}},
            "diff.turns.append[0]",
        ),
        ({"fields": [], "turns": {"keep": 0, "append": []}}, "diff.fields"),
        ({"fields": {"turns": []}, "turns": {"keep": 0, "append": []}}, "diff.fields"),
        ({"fields": {"colour": 1}, "turns": {"keep": 0, "append": []}}, "diff.fields"),
        ({"fields": {}, "turns": {"keep": 0}, "extra": 1}, "diff"),
        ({"base": {"session_id": "s2"}, "turns": {"keep": 0}}, "diff.base.session_id"),
        ({"base": {"turns": 3}, "turns": {"keep": 0}}, "diff.base.turns"),
        ({"base": "s1", "turns": {"keep": 0}}, "diff.base"),
    ],
)
def test_bad_diffs_name_the_bad_part(diff: Any, field: str) -> None:
    base = _state(turns=[_a_turn()])
    with pytest.raises(SessionValidationError) as info:
        StateDiff.apply(base, diff)
    assert info.value.field == field


def test_a_diff_applies_only_to_its_base() -> None:
    old = _state(turns=[_a_turn()])
    new = replace(old, turns=[*old.turns, replace(_a_turn(), turn_id="y")])
    diff = StateDiff.compute(old, new)
    with pytest.raises(SessionValidationError) as info:
        StateDiff.apply(new, diff)
    assert info.value.field == "diff.base.turns"
    with pytest.raises(SessionValidationError):
        StateDiff.apply("not a state", diff)  # type: ignore[arg-type]
