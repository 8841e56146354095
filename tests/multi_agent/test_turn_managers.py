"""Speaking order of every turn-taking strategy, alone and inside a group run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionTurn
from lexigram.result import Err

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.multi_agent import (
    GroupMember,
    GroupSession,
    LLMDirectedTurnManager,
    PriorityTurnManager,
    RoundRobinTurnManager,
    TopicBasedTurnManager,
    TurnContext,
)
from lexigram.ai.session.multi_agent.llm_directed import parse_choice

from .conftest import ScriptedAgent, ScriptedLLM, speakers


def _turn(content: str, agent: str | None = None) -> SessionTurn:
    return SessionTurn(
        turn_id=f"t-{content[:8]}-{agent}",
        role="assistant" if agent else "user",
        content=content,
        timestamp=datetime.now(UTC),
        metadata={"agent": agent} if agent else {},
    )


def _roster(
    *names: str,
    priorities: dict[str, int] | None = None,
    topics: dict[str, tuple[str, ...]] | None = None,
) -> tuple[GroupMember, ...]:
    return tuple(
        GroupMember(
            agent=ScriptedAgent(n),
            priority=(priorities or {}).get(n, 0),
            topics=(topics or {}).get(n, ()),
        )
        for n in names
    )


def _ctx(
    roster: tuple[GroupMember, ...], turns: list[SessionTurn], last: str | None
) -> TurnContext:
    return TurnContext("s", roster, turns, last, 1, 0)


async def _run_order(
    manager: SessionManagerImpl,
    session_id: str,
    group: GroupSession,
    rounds: int,
    message: str = "start",
) -> list[str]:
    state = await group.run(session_id, message, max_rounds=rounds)
    return speakers(state.turns)


# ------------------------------------------------------------------ round robin
async def test_round_robin_cycles_in_join_order() -> None:
    rr = RoundRobinTurnManager()
    roster = _roster("a", "b", "c")
    got = []
    last = None
    for _ in range(7):
        last = await rr.select_next(_ctx(roster, [], last))
        got.append(last)
    assert got == ["a", "b", "c", "a", "b", "c", "a"]


async def test_round_robin_run_every_agent_once_per_round(
    manager: SessionManagerImpl, session_id: str
) -> None:
    group = GroupSession(manager, RoundRobinTurnManager())
    for name in ("writer", "critic", "editor"):
        group.add_agent(ScriptedAgent(name))
    order = await _run_order(manager, session_id, group, rounds=2)
    assert order == ["writer", "critic", "editor"] * 2


# --------------------------------------------------------------------- priority
async def test_priority_orders_each_round_highest_first_ties_by_join_order(
    manager: SessionManagerImpl, session_id: str
) -> None:
    group = GroupSession(manager, PriorityTurnManager())
    group.add_agent(ScriptedAgent("low"), priority=1)
    group.add_agent(ScriptedAgent("high"), priority=9)
    group.add_agent(ScriptedAgent("mid_a"), priority=5)
    group.add_agent(ScriptedAgent("mid_b"), priority=5)
    order = await _run_order(manager, session_id, group, rounds=2)
    assert order == ["high", "mid_a", "mid_b", "low"] * 2


async def test_priority_overrides_by_name() -> None:
    manager = PriorityTurnManager({"a": 0, "c": 10})
    roster = _roster("a", "b", "c", priorities={"a": 100, "b": 5})
    assert manager.order(roster) == ["c", "b", "a"]


def test_priority_rejects_non_integer_priority() -> None:
    with pytest.raises(SessionValidationError, match=r"priorities\['a'\]"):
        PriorityTurnManager({"a": "high"})  # type: ignore[dict-item]


# ------------------------------------------------------------------------ topic
async def test_topic_routes_on_latest_turn_case_insensitive_whole_word() -> None:
    topic = TopicBasedTurnManager({"budget": "finance", "bug": "engineer"}, fallback_agent="pm")
    roster = _roster("pm", "finance", "engineer")
    turns = [_turn("the BUDGET is tight"), _turn("found a Bug in login", "pm")]
    assert await topic.select_next(_ctx(roster, turns, "pm")) == "engineer"
    # Only the latest turn counts, and "debugging" does not contain the word "bug".
    turns.append(_turn("debugging the budget sheet", "engineer"))
    assert await topic.select_next(_ctx(roster, turns, "engineer")) == "finance"


async def test_topic_falls_back_then_round_robin() -> None:
    roster = _roster("pm", "finance", "engineer")
    turns = [_turn("hello there", "finance")]
    with_fallback = TopicBasedTurnManager({"budget": "finance"}, fallback_agent="pm")
    assert await with_fallback.select_next(_ctx(roster, turns, "finance")) == "pm"
    no_fallback = TopicBasedTurnManager({"budget": "finance"})
    assert await no_fallback.select_next(_ctx(roster, turns, "finance")) == "engineer"
    absent_fallback = TopicBasedTurnManager({"budget": "finance"}, fallback_agent="ghost")
    assert await absent_fallback.select_next(_ctx(roster, turns, "finance")) == "engineer"


async def test_topic_does_not_route_a_speaker_to_itself_unless_allowed() -> None:
    roster = _roster("pm", "finance")
    turns = [_turn("the budget is done", "finance")]
    assert (
        await TopicBasedTurnManager({"budget": "finance"}).select_next(
            _ctx(roster, turns, "finance")
        )
        == "pm"
    )
    repeat = TopicBasedTurnManager({"budget": "finance"}, allow_repeat=True)
    assert await repeat.select_next(_ctx(roster, turns, "finance")) == "finance"


async def test_topic_uses_member_topics_after_the_map() -> None:
    roster = _roster(
        "pm", "finance", "legal", topics={"legal": ("contract",), "finance": ("cost",)}
    )
    topic = TopicBasedTurnManager({"cost": "legal"})
    assert await topic.select_next(_ctx(roster, [_turn("the contract")], None)) == "legal"
    # "cost" is in the map (-> legal) before finance's own topic.
    assert await topic.select_next(_ctx(roster, [_turn("what cost?")], None)) == "legal"


async def test_topic_run_routes_on_the_turns_really_handed_over(
    manager: SessionManagerImpl, session_id: str
) -> None:
    """The agents' replies (not only the opening message) drive the routing."""
    pm = ScriptedAgent("pm", ["ask finance about the budget", "one more contract question"])
    finance = ScriptedAgent("finance", ["budget ok; check the contract"])
    legal = ScriptedAgent("legal", ["contract fine, back to pm"])
    topic = TopicBasedTurnManager(
        {"budget": "finance", "contract": "legal", "pm": "pm"}, fallback_agent="pm"
    )
    group = GroupSession(manager, topic)
    group.add_agent(pm)
    group.add_agent(finance)
    group.add_agent(legal)
    state = await group.run(session_id, "plan the launch", max_rounds=2)
    assert speakers(state.turns) == ["pm", "finance", "legal", "pm", "legal", "pm"]


def test_topic_rejects_bad_map() -> None:
    with pytest.raises(SessionValidationError, match="topic_map"):
        TopicBasedTurnManager({"": "a"})
    with pytest.raises(SessionValidationError, match=r"topic_map\['x'\]"):
        TopicBasedTurnManager({"x": 3})  # type: ignore[dict-item]
    with pytest.raises(SessionValidationError, match="fallback_agent"):
        TopicBasedTurnManager({}, fallback_agent="")


# ------------------------------------------------------------------ LLM-directed
def test_parse_choice() -> None:
    names = ["writer", "critic", "editor"]
    assert parse_choice("critic", names) == "critic"
    assert parse_choice("  'Editor'.\n", names) == "editor"
    assert parse_choice("I think the critic should go next", names) == "critic"
    assert parse_choice("writer or critic", names) is None
    assert parse_choice("nobody", names) is None
    # An exact name wins over one that differs only in case.
    assert parse_choice("Bob", ["bob", "Bob", "carol"]) == "Bob"
    assert parse_choice("bob", ["Bob", "bob"]) == "bob"
    assert parse_choice("BOB", ["Bob", "carol"]) == "Bob"
    assert parse_choice("writers", names) is None


async def test_llm_directed_follows_valid_answers(
    manager: SessionManagerImpl, session_id: str
) -> None:
    llm = ScriptedLLM(["editor", "Critic", "the writer, please"])
    selector = LLMDirectedTurnManager(llm)
    group = GroupSession(manager, selector)
    for name in ("writer", "critic", "editor"):
        group.add_agent(ScriptedAgent(name))
    state = await group.run(session_id, "draft a tagline", max_rounds=1)
    assert speakers(state.turns) == ["editor", "critic", "writer"]
    assert selector.fallbacks == 0
    # The model saw the roster and the conversation, including the latest reply.
    system, user = llm.prompts[1]
    assert system.role == "system" and "- critic (role: participant)" in system.content
    assert "[editor]: editor #1" in user.content and "draft a tagline" in user.content
    # The speaker who just spoke is not offered again.
    assert "Reply with one of: writer, critic." in user.content


async def test_llm_directed_falls_back_to_round_robin_on_invalid_answer(
    manager: SessionManagerImpl, session_id: str
) -> None:
    llm = ScriptedLLM(
        [
            "critic",
            "mallory",
            Err(RuntimeError("rate limited")),
            ConnectionError("down"),
            "critic",
            "critic",
        ]
    )
    selector = LLMDirectedTurnManager(llm)
    group = GroupSession(manager, selector)
    for name in ("writer", "critic", "editor"):
        group.add_agent(ScriptedAgent(name))
    state = await group.run(session_id, "go", max_rounds=2)
    # critic (valid) -> "mallory" invalid: RR after critic = editor -> Err: RR = writer
    # -> exception: RR = critic -> "critic" is the last speaker, not offered: RR = editor
    # -> critic (valid)
    assert speakers(state.turns) == ["critic", "editor", "writer", "critic", "editor", "critic"]
    assert selector.fallbacks == 4


async def test_llm_directed_with_single_agent_offers_it() -> None:
    llm = ScriptedLLM(["solo"])
    selector = LLMDirectedTurnManager(llm)
    roster = _roster("solo")
    assert await selector.select_next(_ctx(roster, [_turn("x", "solo")], "solo")) == "solo"


def test_llm_directed_rejects_non_client() -> None:
    with pytest.raises(SessionValidationError, match="llm"):
        LLMDirectedTurnManager(object())  # type: ignore[arg-type]


async def test_llm_directed_falls_back_when_the_client_returns_no_result() -> None:
    """A client returning its completion unwrapped (not a Result) falls back to round
    robin, as an Err does (the run failed with an AttributeError)."""

    class Completion:
        content = "critic"

    class Unwrapped:
        async def complete(self, messages: Any, **kwargs: Any) -> Any:
            return Completion()

    selector = LLMDirectedTurnManager(Unwrapped())  # type: ignore[arg-type]
    chosen = await selector.select_next(_ctx(_roster("writer", "critic"), [], None))
    assert chosen == "writer" and selector.fallbacks == 1
