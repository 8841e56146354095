"""Multi-agent group sessions: several agents take turns in one persisted session.

``GroupSession`` runs the conversation; a ``TurnManager`` (round robin, priority,
topic routing or a model's choice) picks each speaker; ``RoleIsolation`` decides
which turns an agent sees; termination conditions (composable with ``|`` and ``&``)
end the run. The turn-taking state travels with every turn, so an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

from lexigram.ai.session.multi_agent.agent import AgentReply, GroupAgent, GroupMember
from lexigram.ai.session.multi_agent.factory import GroupSessionFactory
from lexigram.ai.session.multi_agent.group_session import DEFAULT_MAX_ROUNDS, GroupSession
from lexigram.ai.session.multi_agent.isolation import RoleIsolation
from lexigram.ai.session.multi_agent.llm_directed import LLMDirectedTurnManager
from lexigram.ai.session.multi_agent.strategy import build_turn_manager
from lexigram.ai.session.multi_agent.termination import (
    AgentSpokeTermination,
    AllOf,
    AnyOf,
    CostBudgetTermination,
    MaxRoundsTermination,
    StopWordTermination,
    TerminationCondition,
    TerminationContext,
    TokenBudgetTermination,
)
from lexigram.ai.session.multi_agent.turn_managers import (
    PriorityTurnManager,
    RoundRobinTurnManager,
    TopicBasedTurnManager,
    TurnContext,
    TurnManager,
)
from lexigram.ai.session.multi_agent.turn_state import GROUP_KEY, GroupTurnState

__all__ = [
    "DEFAULT_MAX_ROUNDS",
    "GROUP_KEY",
    "AgentReply",
    "AgentSpokeTermination",
    "AllOf",
    "AnyOf",
    "CostBudgetTermination",
    "GroupAgent",
    "GroupMember",
    "GroupSession",
    "GroupSessionFactory",
    "GroupTurnState",
    "LLMDirectedTurnManager",
    "MaxRoundsTermination",
    "PriorityTurnManager",
    "RoleIsolation",
    "RoundRobinTurnManager",
    "StopWordTermination",
    "TerminationCondition",
    "TerminationContext",
    "TokenBudgetTermination",
    "TopicBasedTurnManager",
    "TurnContext",
    "TurnManager",
    "build_turn_manager",
]
