"""A story to explore: a checkpointed group session with a merged and an open branch.

``trip`` (user ``alice``): a two-agent group run (opening message + 2 rounds of
``planner`` and ``critic``), checkpoint ``after-rounds``, a tool call and its result;
branch ``budget`` forked from the checkpoint, two turns added and merged back into
``trip``; branch ``rainy-day`` forked at the end, one turn added, not merged; a
second checkpoint after the merge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lexigram.contracts.ai.session import SessionTurn
from lexigram.result import Ok, Result

from lexigram.ai.session import SessionConfig
from lexigram.ai.session.branching import BranchManager
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.multi_agent import AgentReply, GroupSession
from lexigram.ai.session.stores.base import SessionStore

CONFIG = SessionConfig(auto_checkpoint_interval=None, session_ttl=0)

TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Lisbon"}'},
}


class Agent:
    """Answers with a numbered line; tokens and cost differ per agent."""

    def __init__(self, name: str, model: str, tokens: int, cost: float) -> None:
        self.name = name
        self.model = model
        self.tokens = tokens
        self.cost = cost
        self.calls = 0

    async def execute(self, *, message: str, history: Sequence[SessionTurn]) -> Result[Any, Any]:
        """One reply per call."""
        self.calls += 1
        return Ok(AgentReply(
            content=f"{self.name} idea {self.calls}: {message[:40]}",
            tokens_used=self.tokens * self.calls,
            cost=self.cost * self.calls,
            model=self.model,
        ))


@dataclass(frozen=True)
class Story:
    """Ids of what :func:`seed_story` stored."""

    trip: str
    budget: str
    rainy: str
    first_checkpoint: str
    second_checkpoint: str


async def seed_story(store: SessionStore, *, trip_id: str = "trip") -> Story:
    """Store the story (see module doc) through the manager, branch and group APIs."""
    manager = SessionManagerImpl(store, CONFIG)
    branches = BranchManager(store, 10, notifier=manager.notifier)
    group = GroupSession(manager)
    group.add_agent(Agent("planner", "gpt-small", 40, 0.002), role="planner")
    group.add_agent(Agent("critic", "claude-mini", 25, 0.001), role="critic")
    trip = await manager.create(
        "alice", {"topic": "travel"}, system_prompt="Plan trips.", session_id=trip_id
    )
    sid = trip.session_id
    await group.run(sid, "Plan three days in Lisbon", max_rounds=2)
    first = await manager.checkpoint(sid, {"label": "after-rounds"})
    await manager.add_message(
        sid, "assistant", "Checking the weather.", tokens_used=12, cost=0.0005,
        model="gpt-small", tool_calls=[TOOL_CALL], metadata={"agent": "planner"},
    )
    await manager.add_message(
        sid, "tool", '{"forecast": "sunny, 24 C"}',
        metadata={"tool_call_id": "call_1", "name": "get_weather"},
    )
    budget = await branches.fork(sid, "budget", from_checkpoint=first.checkpoint_id)
    await manager.add_message(budget.session_id, "user", "Keep it under 300 euros.",
                              tokens_used=6)
    await manager.add_message(budget.session_id, "assistant", "Hostel and tram passes.",
                              tokens_used=30, cost=0.003, model="claude-mini")
    await branches.merge(sid, budget.session_id)
    rainy = await branches.fork(sid, "rainy-day")
    await manager.add_message(rainy.session_id, "user", "What if it rains?", tokens_used=5)
    second = await manager.checkpoint(sid, {"label": "after-merge"})
    return Story(
        trip=sid,
        budget=budget.session_id,
        rainy=rainy.session_id,
        first_checkpoint=first.checkpoint_id,
        second_checkpoint=second.checkpoint_id,
    )
