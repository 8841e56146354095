"""``StateDiff.apply`` refuses field values of the wrong kind, naming the field (an outside
time-travel audit: ``turn_count='three'``, ``status='bogus'``, ``total_tokens='lots'`` and
``total_cost=-5`` were applied, and ``status='closed'`` gave a state whose status was a
plain ``str``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.checkpointing.diff import StateDiff
from lexigram.ai.session.exceptions import SessionValidationError


def _state(*ids: str) -> SessionState:
    turns = [
        SessionTurn(turn_id=i, role="user", content=i, timestamp=datetime(2026, 1, 1, tzinfo=UTC))
        for i in ids
    ]
    return SessionState(
        session_id="s", user_id="u", status=SessionStatus.ACTIVE, turns=turns,
        turn_count=len(turns),
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("turn_count", "three"),
        ("turn_count", -1),
        ("turn_count", True),
        ("total_tokens", "lots"),
        ("total_cost", -5),
        ("status", "bogus"),
        ("metadata", ["not", "a", "dict"]),
        ("updated_at", "yesterday"),
        ("system_prompt", 42),
    ],
)
def test_a_changed_field_of_the_wrong_kind_is_refused(name: str, value: Any) -> None:
    old, new = _state("t1"), _state("t1", "t2")
    diff = StateDiff.compute(old, new)
    diff["fields"] = {**diff["fields"], name: value}
    with pytest.raises(SessionValidationError) as caught:
        StateDiff.apply(old, diff)
    assert caught.value.field == f"diff.fields.{name}"


def test_a_status_given_as_text_comes_back_as_a_status() -> None:
    old = _state("t1")
    diff = StateDiff.compute(old, old)
    diff["fields"] = {"status": "closed"}
    applied = StateDiff.apply(old, diff)
    assert applied.status is SessionStatus.CLOSED
