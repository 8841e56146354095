"""Container bindings of the sub-packages beyond the core (context, web, groups)."""

from __future__ import annotations

from typing import Any

from lexigram.contracts.ai.session import ContextPrunerProtocol

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.context.pruner import RelevanceContextPruner
from lexigram.ai.session.middleware.di import exported_types as web_types
from lexigram.ai.session.middleware.di import register_web_services
from lexigram.ai.session.multi_agent.di import exported_types as group_types
from lexigram.ai.session.multi_agent.di import register_group_services
from lexigram.ai.session.stores.base import SessionStore

__all__ = ["exported_types", "register_extensions"]


def register_extensions(container: Any, store: SessionStore, config: SessionConfig) -> None:
    """Bind the context pruner, the web middleware and context, and the group factory."""
    del store  # every extension reaches the store through the manager
    pruner = RelevanceContextPruner()
    container.singleton(RelevanceContextPruner, pruner)
    container.singleton(ContextPrunerProtocol, pruner)
    register_web_services(container, config)
    register_group_services(container, config)


def exported_types() -> list[type]:
    """Types the extensions make resolvable."""
    return [RelevanceContextPruner, ContextPrunerProtocol, *web_types(), *group_types()]
