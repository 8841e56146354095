"""Container wiring of group sessions (called by the session provider)."""

from __future__ import annotations

from typing import Any

from lexigram.contracts.ai.llm import LLMClientProtocol

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.manager.protocol import SessionManagerAPI
from lexigram.ai.session.multi_agent.factory import GroupSessionFactory

__all__ = ["exported_types", "register_group_services"]


async def _optional_llm(resolver: Any) -> LLMClientProtocol | None:
    """The application's LLM client, or None when it registers none (or cannot see it)."""
    try:
        if hasattr(resolver, "has") and not resolver.has(LLMClientProtocol):
            return None
        # A factory gets a ServiceResolver, which has resolve() but no resolve_optional().
        getter = getattr(resolver, "resolve_optional", None) or resolver.resolve
        client: LLMClientProtocol | None = await getter(LLMClientProtocol)
    except Exception:
        return None
    return client


def register_group_services(container: Any, config: SessionConfig) -> None:
    """Bind :class:`GroupSessionFactory` as a singleton on the resolved session manager."""

    async def build(resolver: Any) -> GroupSessionFactory:
        manager: SessionManagerAPI = await resolver.resolve(SessionManagerAPI)
        return GroupSessionFactory(manager, config, llm=await _optional_llm(resolver))

    container.singleton(GroupSessionFactory, factory=build)


def exported_types() -> list[type]:
    """Types :func:`register_group_services` makes resolvable."""
    return [GroupSessionFactory]
