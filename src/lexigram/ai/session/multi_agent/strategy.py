"""Build the turn manager a strategy name (``SessionConfig.default_turn_strategy``) stands for."""

from __future__ import annotations

from lexigram.contracts.ai.llm import LLMClientProtocol

from lexigram.ai.session.config import TURN_STRATEGIES
from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.multi_agent.llm_directed import LLMDirectedTurnManager
from lexigram.ai.session.multi_agent.turn_managers import (
    PriorityTurnManager,
    RoundRobinTurnManager,
    TopicBasedTurnManager,
    TurnManager,
)

__all__ = ["build_turn_manager"]


def build_turn_manager(strategy: str, *, llm: LLMClientProtocol | None = None) -> TurnManager:
    """The turn manager a strategy name stands for.

    ``round_robin``, ``priority``, ``topic`` or ``llm_directed``.

    ``topic`` routes on the topics the agents declare with ``add_agent(topics=...)``;
    ``llm_directed`` needs ``llm``.
    """
    if strategy == "round_robin":
        return RoundRobinTurnManager()
    if strategy == "priority":
        return PriorityTurnManager()
    if strategy == "topic":
        return TopicBasedTurnManager()
    if strategy == "llm_directed":
        if llm is None:
            raise SessionValidationError(
                "default_turn_strategy",
                "strategy 'llm_directed' needs an LLM client: register an LLMClientProtocol "
                "in the container, pass llm=, or pass turn_manager=LLMDirectedTurnManager(client)",
            )
        return LLMDirectedTurnManager(llm)
    raise SessionValidationError(
        "default_turn_strategy",
        f"unknown strategy {strategy!r}; expected one of {sorted(TURN_STRATEGIES)}",
    )
