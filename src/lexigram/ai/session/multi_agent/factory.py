"""``GroupSessionFactory``: builds group sessions wired to the application's manager."""

from __future__ import annotations

from typing import Any

from lexigram.contracts.ai.llm import LLMClientProtocol

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.manager.protocol import SessionManagerAPI
from lexigram.ai.session.multi_agent.group_session import GroupSession
from lexigram.ai.session.multi_agent.isolation import RoleIsolation
from lexigram.ai.session.multi_agent.strategy import build_turn_manager
from lexigram.ai.session.multi_agent.turn_managers import TurnManager

__all__ = ["GroupSessionFactory"]


class GroupSessionFactory:
    """Makes :class:`GroupSession` objects on the container's session manager.

    Without an explicit ``turn_manager`` a group uses ``config.default_turn_strategy``
    (``llm_directed`` uses the ``LLMClientProtocol`` the application registered), and
    every group holds at most ``config.max_agents_per_group`` agents.
    """

    def __init__(
        self,
        session_manager: SessionManagerAPI,
        config: SessionConfig | None = None,
        llm: LLMClientProtocol | None = None,
    ) -> None:
        self.manager = session_manager
        self.config = config if config is not None else session_manager.config
        self.llm = llm

    @property
    def strategy(self) -> str:
        """The configured default turn strategy."""
        return self.config.default_turn_strategy

    def create(
        self,
        turn_manager: TurnManager | None = None,
        role_isolation: RoleIsolation | None = None,
        **options: Any,
    ) -> GroupSession:
        """A new, empty group; ``options`` go to :class:`GroupSession` (``termination``, ...)."""
        if turn_manager is None:
            llm = options.pop("llm", None) or self.llm
            turn_manager = build_turn_manager(self.strategy, llm=llm)
        return GroupSession(self.manager, turn_manager, role_isolation, **options)
