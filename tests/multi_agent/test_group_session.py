"""``GroupSession`` runs: turns and tags, streaming, failures, config limits."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from lexigram.contracts.ai.llm import Completion
from lexigram.contracts.ai.session import SessionStatus, SessionTurn
from lexigram.result import Err, Ok, Result

from lexigram.ai.session.exceptions import (
    SessionCapacityError,
    SessionClosedError,
    SessionNotFoundError,
    SessionValidationError,
)
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.multi_agent import (
    AgentReply,
    GroupSession,
    GroupTurnState,
    LLMDirectedTurnManager,
    PriorityTurnManager,
    RoundRobinTurnManager,
    TopicBasedTurnManager,
    TurnContext,
)

from .conftest import ScriptedAgent, ScriptedLLM, make_manager, speakers


def _group(manager: SessionManagerImpl, *names: str, **kwargs: Any) -> GroupSession:
    group = GroupSession(manager, **kwargs)
    for name in names:
        group.add_agent(ScriptedAgent(name))
    return group


def _plain_turn(turn_id: str) -> SessionTurn:
    return SessionTurn(turn_id=turn_id, role="user", content=turn_id, timestamp=datetime.now(UTC))


def _group_state(turn: SessionTurn) -> GroupTurnState:
    state = GroupTurnState.from_turn(turn)
    assert state is not None
    return state


# ------------------------------------------------------------------ happy path
async def test_turns_are_tagged_and_state_travels_with_each_turn(
    manager: SessionManagerImpl, session_id: str
) -> None:
    writer = ScriptedAgent("writer", [AgentReply("draft", tokens_used=7, cost=0.01, model="m1")])
    group = GroupSession(manager)
    group.add_agent(writer, role="author")
    group.add_agent(ScriptedAgent("critic"))
    state = await group.run(session_id, "write a poem", max_rounds=1)

    opening, first, second = state.turns
    assert (opening.role, opening.content) == ("user", "write a poem")
    assert (first.role, first.content, first.model) == ("assistant", "draft", "m1")
    assert (first.tokens_used, first.cost) == (7, 0.01)
    assert first.metadata["agent"] == "writer" and first.metadata["agent_role"] == "author"
    assert first.metadata["round"] == 1 and second.metadata["round"] == 1
    assert state.total_tokens == 7 and state.turn_count == 3

    s0, s1, s2 = (_group_state(t) for t in state.turns)
    assert s0.run_id == s1.run_id == s2.run_id
    assert (s0.round, s0.speaker, s0.next_speaker) == (0, None, "writer")
    assert (s1.round, s1.step, s1.speaker, s1.next_speaker) == (1, 0, "writer", "critic")
    assert (s2.speaker, s2.next_speaker, s2.status) == ("critic", None, "finished")
    assert s1.roster == ("writer", "critic") and s2.spoken == ("writer", "critic")
    assert s0.max_rounds == 1
    # The agent got the newest visible turn as the message and the rest as history.
    assert writer.calls[0] == ("write a poem", [])


async def test_stream_yields_each_turn_once_stored(
    manager: SessionManagerImpl, session_id: str
) -> None:
    group = _group(manager, "a", "b")
    seen: list[tuple[str, int]] = []
    async for turn in group.stream(session_id, "hi", max_rounds=2):
        stored = await manager.get_turns(session_id, last=1)
        assert stored[0].turn_id == turn.turn_id  # already persisted when yielded
        seen.append((turn.content, (await manager.get_header(session_id)).turn_count))  # type: ignore[union-attr]
    assert seen == [("hi", 1), ("a #1", 2), ("b #1", 3), ("a #2", 4), ("b #2", 5)]


async def test_history_limit_bounds_what_agents_get(manager: SessionManagerImpl) -> None:
    sid = (await manager.create("alice")).session_id
    for i in range(5):
        await manager.add_message(sid, "user", f"old {i}")
    agent = ScriptedAgent("a")
    group = GroupSession(manager, history_limit=3)
    group.add_agent(agent)
    await group.run(sid, "new", max_rounds=2)
    assert [t.content for t in agent.calls[0][1]] == ["old 3", "old 4"]
    assert agent.calls[0][0] == "new"
    assert [t.content for t in agent.calls[1][1]] == ["old 4", "new"]


async def test_completion_objects_are_accepted_as_replies(
    manager: SessionManagerImpl, session_id: str
) -> None:
    reply = Completion(content="from a model", model="gpt-x", usage={"total_tokens": 12})
    group = GroupSession(manager)
    group.add_agent(ScriptedAgent("a", [reply]))
    state = await group.run(session_id, "go", max_rounds=1)
    assert (state.turns[1].content, state.turns[1].model, state.turns[1].tokens_used) == (
        "from a model",
        "gpt-x",
        12,
    )


# -------------------------------------------------------------------- failures
@pytest.mark.parametrize(
    ("script_item", "expected"),
    [
        (Err("quota exceeded"), "returned Err(quota exceeded)"),
        (Err(ValueError("bad input")), "returned Err(ValueError: bad input)"),
        (RuntimeError("boom"), "raised RuntimeError: boom"),
        (Ok(42), "reply: Ok value of type int is not a reply"),
        (Ok(AgentReply("x", tokens_used=-1)), "reply.tokens_used: must be an integer >= 0"),
        (Ok(AgentReply("x", metadata={"k": object()})), "reply.metadata: value cannot be stored"),
        (
            Ok(AgentReply("x", metadata={"visible_to": 5})),
            "reply.metadata.visible_to: expected a name or a list of names",
        ),
        (
            Ok(AgentReply("x", metadata={"hidden_from": [1, 2]})),
            "reply.metadata.hidden_from: expected a name or a list of names",
        ),
        # Values only the store's own checks refuse, and reasons that must be escaped.
        (Ok(AgentReply("x", model=5)), "reply.model: expected a string"),  # type: ignore[arg-type]
        (Ok(AgentReply("x", cost=float("nan"))), "reply.cost: must be a finite number"),
        (Ok(AgentReply("x", tokens_used=2**60)), "reply.tokens_used: must be in 0.."),
        (Ok("bad \ud800"), "reply.content: contains a lone surrogate"),
        (RuntimeError("oops \udc80"), "raised RuntimeError: oops \\udc80"),
        (Err("no \ud800"), "returned Err(no \\ud800)"),
    ],
)
async def test_agent_failure_is_recorded_and_ends_the_run_cleanly(
    manager: SessionManagerImpl, session_id: str, script_item: Any, expected: str
) -> None:
    group = GroupSession(manager)
    group.add_agent(ScriptedAgent("writer"))
    group.add_agent(ScriptedAgent("critic", [script_item]))
    group.add_agent(ScriptedAgent("editor"))
    state = await group.run(session_id, "go")
    assert [t.role for t in state.turns] == ["user", "assistant", "system"]
    failed = state.turns[-1]
    assert failed.metadata["agent"] == "critic" and failed.metadata["round"] == 1
    assert expected in failed.metadata["error"]
    info = _group_state(failed)
    assert info.status == "failed" and info.next_speaker is None
    assert info.reason is not None and info.reason.startswith("agent 'critic' failed: ")
    assert expected in info.reason
    assert state.status == SessionStatus.ACTIVE  # the session itself is untouched


async def test_non_result_return_and_timeout_are_failures(manager: SessionManagerImpl) -> None:
    class Plain:
        name = "plain"

        async def execute(self, *, message: str, history: Sequence[SessionTurn]) -> Any:
            return "not a Result"

    class Slow:
        name = "slow"

        async def execute(
            self, *, message: str, history: Sequence[SessionTurn]
        ) -> Result[str, str]:
            await asyncio.sleep(5)
            return Ok("late")

    sid = (await manager.create("alice")).session_id
    group = GroupSession(manager)
    group.add_agent(Plain())
    state = await group.run(sid, "go")
    assert "execute() returned str, expected a lexigram.result Result" in state.turns[-1].content

    sid = (await manager.create("alice")).session_id
    group = GroupSession(manager, agent_timeout=0.05)
    group.add_agent(Slow())
    state = await group.run(sid, "go")
    assert state.turns[-1].metadata["error"] == "timed out after 0.05s"


async def test_an_agents_own_timeout_error_is_a_failure_not_agent_timeout(
    manager: SessionManagerImpl,
) -> None:
    """An agent raising TimeoutError (its LLM call's) is recorded as raised, with or
    without ``agent_timeout`` (it crashed the run with a TypeError without one)."""

    class Upstream:
        name = "researcher"

        async def execute(self, *, message: str, history: Sequence[SessionTurn]) -> Any:
            raise TimeoutError("upstream LLM call timed out")

    for timeout in (None, 30):
        sid = (await manager.create("alice")).session_id
        group = GroupSession(manager, agent_timeout=timeout)
        group.add_agent(Upstream())
        state = await group.run(sid, "go", max_rounds=1)
        assert state.turns[-1].metadata["error"] == (
            "raised TimeoutError: upstream LLM call timed out"
        )
        info = _group_state(state.turns[-1])
        assert info.status == "failed"


async def test_turn_manager_failures_end_the_run(manager: SessionManagerImpl) -> None:
    class Broken:
        def __init__(self, answer: Any) -> None:
            self.answer = answer

        async def select_next(self, context: TurnContext) -> str | None:
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer if context.last_speaker is None else None

    cases = [
        (Broken(KeyError("x")), "failed", "turn manager failed: KeyError: 'x'", 1),
        (Broken("ghost"), "failed", "turn manager chose 'ghost', who is not in the group", 1),
        (Broken("a"), "finished", "the turn manager ended the conversation", 2),
    ]
    for manager_, status, reason, count in cases:
        sid = (await manager.create("alice")).session_id
        group = _group(manager, "a", turn_manager=manager_)
        state = await group.run(sid, "go")
        info = _group_state(state.turns[-1])
        assert (info.status, info.reason, len(state.turns)) == (status, reason, count)


async def test_session_errors_propagate(manager: SessionManagerImpl) -> None:
    group = _group(manager, "a")
    with pytest.raises(SessionNotFoundError):
        await group.run("missing", "go")
    sid = (await manager.create("alice")).session_id
    await manager.close(sid)
    with pytest.raises(SessionClosedError):
        await group.run(sid, "go")


async def test_bad_arguments_name_the_field(manager: SessionManagerImpl, session_id: str) -> None:
    empty = GroupSession(manager)
    with pytest.raises(SessionValidationError, match="agents"):
        await empty.run(session_id, "go")
    group = _group(manager, "a")
    with pytest.raises(SessionValidationError, match="initial_message"):
        await group.run(session_id, None)
    with pytest.raises(SessionValidationError, match="max_rounds"):
        await group.run(session_id, "go", max_rounds=0)
    with pytest.raises(SessionValidationError, match="agent.name"):
        group.add_agent(ScriptedAgent("a"))
    with pytest.raises(SessionValidationError, match="agent.execute"):
        group.add_agent(type("X", (), {"name": "x"})())  # type: ignore[arg-type]
    with pytest.raises(SessionValidationError, match="topics"):
        group.add_agent(ScriptedAgent("b"), topics="budget")
    with pytest.raises(SessionValidationError, match="role"):
        group.add_agent(ScriptedAgent("b"), role="")
    with pytest.raises(SessionValidationError, match="session_manager"):
        GroupSession(object())  # type: ignore[arg-type]
    with pytest.raises(SessionValidationError, match="turn_manager"):
        GroupSession(manager, object())  # type: ignore[arg-type]
    assert group.agent_names == ["a"]
    assert await manager.get_turns(session_id) == []  # nothing was half-written


def test_remove_agent(manager: SessionManagerImpl) -> None:
    group = _group(manager, "a", "b", "c")
    assert group.remove_agent("b") is True
    assert group.remove_agent("b") is False
    assert group.agent_names == ["a", "c"]


# --------------------------------------------------------------- config limits
def test_max_agents_per_group_applies() -> None:
    manager = make_manager(max_agents_per_group=2)
    group = _group(manager, "a", "b")
    with pytest.raises(SessionCapacityError, match="max_agents_per_group=2"):
        group.add_agent(ScriptedAgent("c"))
    group.remove_agent("a")
    group.add_agent(ScriptedAgent("c"))
    assert group.agent_names == ["b", "c"]


@pytest.mark.parametrize(
    ("strategy", "kind"),
    [
        ("round_robin", RoundRobinTurnManager),
        ("priority", PriorityTurnManager),
        ("topic", TopicBasedTurnManager),
        ("llm_directed", LLMDirectedTurnManager),
    ],
)
def test_default_turn_strategy_applies(strategy: str, kind: type) -> None:
    manager = make_manager(default_turn_strategy=strategy)
    group = GroupSession(manager, llm=ScriptedLLM([]))
    assert type(group.turn_manager) is kind


def test_llm_directed_default_without_client_is_a_clear_error() -> None:
    manager = make_manager(default_turn_strategy="llm_directed")
    with pytest.raises(SessionValidationError, match="default_turn_strategy.*LLM client"):
        GroupSession(manager)


async def test_default_priority_and_topic_strategies_drive_runs() -> None:
    manager = make_manager(default_turn_strategy="priority")
    sid = (await manager.create("u")).session_id
    group = GroupSession(manager)
    group.add_agent(ScriptedAgent("low"), priority=0)
    group.add_agent(ScriptedAgent("high"), priority=5)
    assert speakers((await group.run(sid, "go", max_rounds=1)).turns) == ["high", "low"]

    manager = make_manager(default_turn_strategy="topic")
    sid = (await manager.create("u")).session_id
    group = GroupSession(manager)
    group.add_agent(ScriptedAgent("general"))
    group.add_agent(ScriptedAgent("finance"), topics=["invoice"])
    state = await group.run(sid, "an INVOICE question", max_rounds=1)
    assert speakers(state.turns) == ["finance", "general"]


async def test_an_opening_message_that_reaches_the_cap_finishes_the_run() -> None:
    manager = make_manager(max_turns_per_session=3)
    sid = (await manager.create("u")).session_id
    group = _group(manager, "a", "b")
    await manager.add_turns(sid, [_plain_turn("t1"), _plain_turn("t2")])
    state = await group.run(sid, "go")
    assert len(state.turns) == 3 and state.status == SessionStatus.CLOSED
    info = _group_state(state.turns[-1])
    assert (info.status, info.next_speaker) == ("finished", None)
    assert info.reason == "session reached max_turns_per_session (3)"
    assert await group.run_state(sid) == info


async def test_max_turns_per_session_ends_the_run_cleanly() -> None:
    manager = make_manager(max_turns_per_session=4)
    sid = (await manager.create("u")).session_id
    group = _group(manager, "a", "b")
    state = await group.run(sid, "go", max_rounds=10)
    assert len(state.turns) == 4 and state.status == SessionStatus.CLOSED
    info = _group_state(state.turns[-1])
    assert info.status == "finished"
    assert info.reason == "session reached max_turns_per_session (4)"


async def test_malformed_visibility_in_the_history_is_refused_before_anything_is_stored(
    manager: SessionManagerImpl, session_id: str
) -> None:
    """A turn accepted with ``visible_to: {"critic": True}`` made every run store its
    opening turn, then fail, leaving the run "running" with no reason (an audit)."""
    bad = await manager.add_message(
        session_id, "user", "note", metadata={"visible_to": {"critic": True}}
    )
    group = _group(manager, "writer", "critic")
    for resume in (False, True):
        with pytest.raises(SessionValidationError, match=bad.turn_id):
            await group.run(session_id, "topic", resume=resume)
    state = await manager.get_state(session_id)
    assert state is not None and [t.turn_id for t in state.turns] == [bad.turn_id]
    assert await group.run_state(session_id) is None
