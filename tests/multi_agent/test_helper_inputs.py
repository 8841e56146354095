"""Public helpers refuse bad input naming the field (an outside audit found raw errors).

``StateDiff.compute(state, None)`` raised ``AttributeError``, ``RoleIsolation().
filter_for_agent(None, "a")`` and ``SelectiveMerge(None)`` a ``TypeError``,
``CheckpointManager(None)`` / ``BranchManager(None)`` failed at first use; group agent
names and roles with NUL, a lone surrogate or 10,000 characters were accepted (a
surrogate one failed at ``run()`` naming another field).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn
from lexigram.result import Ok

from lexigram.ai.session import (
    BranchManager,
    CheckpointManager,
    GroupSession,
    RoleIsolation,
    SelectiveMerge,
    SessionManagerImpl,
    StateDiff,
)
from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.stores.in_memory import InMemorySessionStore

NOW = datetime(2026, 1, 1, tzinfo=UTC)
STATE = SessionState(
    session_id="s", user_id="u", status=SessionStatus.ACTIVE, created_at=NOW, updated_at=NOW
)

CASES: dict[str, tuple[Callable[[], Any], str]] = {
    "StateDiff.compute new": (lambda: StateDiff.compute(STATE, None), "new"),  # type: ignore[arg-type]
    "StateDiff.compute old": (lambda: StateDiff.compute(5, STATE), "old"),  # type: ignore[arg-type]
    "filter_for_agent None": (lambda: RoleIsolation().filter_for_agent(None, "a"), "turns"),  # type: ignore[arg-type]
    "filter_for_agent [1]": (lambda: RoleIsolation().filter_for_agent([1], "a"), "turns[0]"),  # type: ignore[list-item]
    "SelectiveMerge None": (lambda: SelectiveMerge(None), "turn_ids"),  # type: ignore[arg-type]
    "CheckpointManager None": (lambda: CheckpointManager(None), "store"),  # type: ignore[arg-type]
    "BranchManager None": (lambda: BranchManager(None), "store"),  # type: ignore[arg-type]
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_helper_refuses_bad_input_naming_the_field(case: str) -> None:
    call, field = CASES[case]
    with pytest.raises(SessionValidationError) as caught:
        call()
    assert caught.value.field == field


class _Agent:
    def __init__(self, name: str) -> None:
        self.name = name

    async def execute(self, *, message: str, history: Sequence[SessionTurn]) -> Any:
        return Ok("fine")


@pytest.mark.parametrize(
    ("name", "role", "field"),
    [
        ("a\ud800", "participant", "agent.name"),
        ("a\x00b", "participant", "agent.name"),
        ("x" * 10_000, "participant", "agent.name"),
        ("critic", "re\x00viewer", "role"),
        ("critic", "r" * 300, "role"),
    ],
)
async def test_group_agent_names_and_roles_follow_the_id_rules(
    name: str, role: str, field: str
) -> None:
    manager = SessionManagerImpl(InMemorySessionStore())
    group = GroupSession(manager)
    with pytest.raises(SessionValidationError) as caught:
        group.add_agent(_Agent(name), role)
    assert caught.value.field == field
    assert group.add_agent(_Agent("critic"), "code reviewer").name == "critic"
