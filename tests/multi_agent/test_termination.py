"""Termination conditions: each alone, composed with | and &, and inside a run."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.multi_agent import (
    AgentReply,
    AgentSpokeTermination,
    AllOf,
    AnyOf,
    CostBudgetTermination,
    GroupSession,
    GroupTurnState,
    MaxRoundsTermination,
    StopWordTermination,
    TerminationContext,
    TokenBudgetTermination,
)

from .conftest import ScriptedAgent, speakers


def _ctx(
    content: str = "hello",
    *,
    speaker: str = "a",
    round: int = 1,
    step: int = 0,
    size: int = 3,
    spoken: tuple[str, ...] = ("a",),
    tokens: int = 0,
    cost: float = 0.0,
) -> TerminationContext:
    turn = SessionTurn(turn_id="t", role="assistant", content=content, timestamp=datetime.now(UTC))
    return TerminationContext(turn, speaker, round, step, size, frozenset(spoken), tokens, cost)


def test_max_rounds_fires_after_last_turn_of_the_round() -> None:
    cond = MaxRoundsTermination(2)
    assert cond.check(_ctx(round=1, step=2)) is None
    assert cond.check(_ctx(round=2, step=1)) is None
    assert cond.check(_ctx(round=2, step=2)) == "max_rounds reached (2)"


def test_stop_word_whole_word_case_insensitive_and_agent_filter() -> None:
    cond = StopWordTermination("APPROVED", "done")
    assert cond.check(_ctx("looks good, approved!")) == "stop word 'APPROVED' said by 'a'"
    assert cond.check(_ctx("unapproved draft")) is None
    assert cond.check(_ctx("we are DONE")) is not None
    only_editor = StopWordTermination("approved", agents=["editor"])
    assert only_editor.check(_ctx("approved", speaker="critic")) is None
    assert only_editor.check(_ctx("approved", speaker="editor")) is not None
    strict = StopWordTermination("STOP", case_sensitive=True)
    assert strict.check(_ctx("stop")) is None
    assert strict.check(_ctx("STOP")) is not None


def test_budgets_use_session_totals() -> None:
    assert TokenBudgetTermination(100).check(_ctx(tokens=99)) is None
    assert (
        TokenBudgetTermination(100).check(_ctx(tokens=100)) == "token budget reached (100 >= 100)"
    )
    assert CostBudgetTermination(0.5).check(_ctx(cost=0.49)) is None
    assert CostBudgetTermination(0.5).check(_ctx(cost=0.5)) is not None


def test_agent_spoke() -> None:
    cond = AgentSpokeTermination("editor")
    assert cond.check(_ctx(spoken=("writer", "critic"))) is None
    assert (
        cond.check(_ctx(spoken=("writer", "editor"), speaker="writer"))
        == "agent 'editor' has spoken"
    )


def test_composition() -> None:
    word = StopWordTermination("approved")
    editor = AgentSpokeTermination("editor")
    either = word | editor
    both = word & editor
    assert isinstance(either, AnyOf) and isinstance(both, AllOf)
    assert either.check(_ctx("approved")) is not None
    assert either.check(_ctx("meh", spoken=("editor",))) == "agent 'editor' has spoken"
    assert either.check(_ctx("meh")) is None
    assert both.check(_ctx("approved")) is None
    assert both.check(_ctx("approved", spoken=("editor",))) == (
        "stop word 'approved' said by 'a' and agent 'editor' has spoken"
    )
    nested = (word | editor) | TokenBudgetTermination(5)
    assert isinstance(nested, AnyOf) and len(nested.conditions) == 3
    mixed = (word & editor) | TokenBudgetTermination(5)
    assert mixed.check(_ctx(tokens=5)) is not None


def test_bad_arguments_name_the_field() -> None:
    with pytest.raises(SessionValidationError, match="max_rounds"):
        MaxRoundsTermination(0)
    with pytest.raises(SessionValidationError, match="words"):
        StopWordTermination()
    with pytest.raises(SessionValidationError, match="max_tokens"):
        TokenBudgetTermination(-1)
    with pytest.raises(SessionValidationError, match="max_cost"):
        CostBudgetTermination(float("nan"))
    with pytest.raises(SessionValidationError, match="agent"):
        AgentSpokeTermination("")
    with pytest.raises(SessionValidationError, match="termination"):
        StopWordTermination("x") | "y"  # type: ignore[operator]


def _group(manager: SessionManagerImpl, **kwargs: object) -> GroupSession:
    group = GroupSession(manager, **kwargs)  # type: ignore[arg-type]
    return group


async def _reason(manager: SessionManagerImpl, session_id: str) -> str | None:
    state = GroupTurnState.from_turn((await manager.get_turns(session_id, last=1))[0])
    assert state is not None and state.status == "finished" and state.next_speaker is None
    return state.reason


async def test_run_stops_on_max_rounds(manager: SessionManagerImpl, session_id: str) -> None:
    group = _group(manager)
    group.add_agent(ScriptedAgent("a"))
    group.add_agent(ScriptedAgent("b"))
    state = await group.run(session_id, "go", max_rounds=3)
    assert speakers(state.turns) == ["a", "b"] * 3
    assert [t.metadata["round"] for t in state.turns[1:]] == [1, 1, 2, 2, 3, 3]
    assert await _reason(manager, session_id) == "max_rounds reached (3)"


async def test_run_stops_on_stop_word(manager: SessionManagerImpl, session_id: str) -> None:
    group = _group(manager, termination=StopWordTermination("APPROVED"))
    group.add_agent(ScriptedAgent("writer", ["draft 1", "draft 2"]))
    group.add_agent(ScriptedAgent("editor", ["no", "Approved."]))
    state = await group.run(session_id, "go")
    assert [t.content for t in state.turns] == ["go", "draft 1", "no", "draft 2", "Approved."]
    assert await _reason(manager, session_id) == "stop word 'APPROVED' said by 'editor'"


async def test_run_stops_on_token_budget_from_session_totals(manager: SessionManagerImpl) -> None:
    sid = (await manager.create("alice")).session_id
    await manager.add_message(sid, "user", "earlier", tokens_used=50)
    group = _group(manager, termination=TokenBudgetTermination(100))
    group.add_agent(ScriptedAgent("a", [AgentReply("x", tokens_used=30)] * 5))
    state = await group.run(sid, "go")
    # 50 already in the session + 30 + 30 = 110 >= 100 after the second reply.
    assert speakers(state.turns) == ["a", "a"]
    assert state.total_tokens == 110
    assert await _reason(manager, sid) == "token budget reached (110 >= 100)"


async def test_run_stops_on_cost_budget(manager: SessionManagerImpl, session_id: str) -> None:
    group = _group(manager, termination=CostBudgetTermination(0.25))
    group.add_agent(ScriptedAgent("a", [AgentReply("x", cost=0.1)] * 5))
    state = await group.run(session_id, "go")
    assert speakers(state.turns) == ["a", "a", "a"]
    assert state.total_cost == pytest.approx(0.3)


async def test_run_stops_when_named_agent_has_spoken(
    manager: SessionManagerImpl, session_id: str
) -> None:
    group = _group(manager, termination=AgentSpokeTermination("critic"))
    for name in ("writer", "critic", "editor"):
        group.add_agent(ScriptedAgent(name))
    state = await group.run(session_id, "go")
    assert speakers(state.turns) == ["writer", "critic"]
    assert await _reason(manager, session_id) == "agent 'critic' has spoken"


async def test_run_with_composed_and_condition(
    manager: SessionManagerImpl, session_id: str
) -> None:
    """'approved' counts only once the editor has spoken in the run."""
    cond = StopWordTermination("approved") & AgentSpokeTermination("editor")
    group = _group(manager, termination=cond)
    group.add_agent(ScriptedAgent("writer", ["approved by me", "approved again"]))
    group.add_agent(ScriptedAgent("editor", ["fine"]))
    state = await group.run(session_id, "go")
    assert speakers(state.turns) == ["writer", "editor", "writer"]


async def test_a_failing_condition_ends_the_run_with_the_turn_kept(
    manager: SessionManagerImpl, session_id: str
) -> None:
    class Broken(StopWordTermination):
        def check(self, context: TerminationContext) -> str | None:
            raise ZeroDivisionError("oops")

    group = _group(manager, termination=Broken("x"))
    group.add_agent(ScriptedAgent("a"))
    state = await group.run(session_id, "go")
    assert [t.content for t in state.turns] == ["go", "a #1"]
    info = GroupTurnState.from_turn(state.turns[-1])
    assert info is not None and info.status == "failed"
    assert info.reason == "termination condition failed: ZeroDivisionError: oops"
