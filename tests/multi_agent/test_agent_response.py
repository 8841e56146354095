"""The framework's own agent reply type becomes an assistant turn (an outside SPEC audit:
``Ok(AgentResponse(message=...))`` ended the run with a system turn refusing it)."""

from __future__ import annotations

from typing import Any

from lexigram.contracts.ai.agents.types import AgentResponse
from lexigram.result import Ok

from lexigram.ai.session import (
    GroupSession,
    InMemorySessionStore,
    SessionConfig,
    SessionManagerImpl,
)
from lexigram.ai.session.multi_agent.agent import reply_from_value


class _Responds:
    name = "helper"

    async def execute(self, message: str, history: Any) -> Any:
        return Ok(AgentResponse(message=f"answer to {message}", total_tokens=7, total_cost=0.25))


async def test_an_agent_response_is_an_assistant_turn_with_its_accounting() -> None:
    manager = SessionManagerImpl(InMemorySessionStore(), SessionConfig(auto_checkpoint_interval=0))
    sid = (await manager.create("u")).session_id
    group = GroupSession(manager)
    group.add_agent(_Responds())
    state = await group.run(sid, "hello", max_rounds=1)
    replies = [t for t in state.turns if t.role == "assistant"]
    assert [t.content for t in replies] == ["answer to hello"]
    assert replies[0].tokens_used == 7 and replies[0].cost == 0.25
    assert not [t for t in state.turns if t.role == "system"]


def test_token_counts_fall_back_to_prompt_plus_completion() -> None:
    reply = reply_from_value(AgentResponse(message="x", prompt_tokens=3, completion_tokens=4))
    assert reply.content == "x" and reply.tokens_used == 7 and reply.cost == 0.0
