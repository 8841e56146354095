"""The group-session factory is resolvable from a booted application."""

from __future__ import annotations

from typing import Any

import pytest
from lexigram.contracts.ai.llm import LLMClientProtocol
from lexigram.di.module import Module, module
from lexigram.di.provider import Provider

from lexigram import Application
from lexigram.ai.session import SessionModule
from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.exceptions import SessionCapacityError, SessionValidationError
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.multi_agent import (
    GroupSessionFactory,
    LLMDirectedTurnManager,
    PriorityTurnManager,
    RoundRobinTurnManager,
)
from lexigram.ai.session.multi_agent.di import exported_types

from .conftest import ScriptedAgent, ScriptedLLM, speakers


def _modules(config: SessionConfig, llm: Any = None) -> list[Any]:
    """``SessionModule.stub(config)``, plus an application module registering ``llm``."""
    modules: list[Any] = [SessionModule.stub(config)]
    if llm is not None:

        class LLMProvider(Provider):
            name = "test_llm"

            async def register(self, container: Any) -> None:
                container.singleton(LLMClientProtocol, llm)

        @module(providers=[LLMProvider], exports=[LLMClientProtocol], is_global=True)
        class LLMModule(Module):
            pass

        modules.append(LLMModule)
    return modules


def test_exported_types_are_exported_by_the_session_module() -> None:
    from lexigram.ai.session.di.extensions import exported_types as session_exports

    assert exported_types() == [GroupSessionFactory]
    assert GroupSessionFactory in session_exports()


async def test_factory_from_the_container_uses_manager_and_config() -> None:
    config = SessionConfig(default_turn_strategy="priority", max_agents_per_group=2)
    async with Application.boot(modules=_modules(config)) as app:
        factory = await app.container.resolve(GroupSessionFactory)
        assert factory is await app.container.resolve(GroupSessionFactory)  # singleton
        manager = await app.container.resolve(SessionManagerImpl)
        group = factory.create()
        assert group.manager is manager
        assert isinstance(group.turn_manager, PriorityTurnManager)
        group.add_agent(ScriptedAgent("low"), priority=1)
        group.add_agent(ScriptedAgent("high"), priority=2)
        with pytest.raises(SessionCapacityError):
            group.add_agent(ScriptedAgent("third"))
        sid = (await manager.create("alice")).session_id
        state = await group.run(sid, "go", max_rounds=1)
        assert speakers(state.turns) == ["high", "low"]
        assert isinstance(
            factory.create(RoundRobinTurnManager()).turn_manager, RoundRobinTurnManager
        )


async def test_llm_directed_strategy_uses_the_registered_client() -> None:
    llm = ScriptedLLM(["b", "a"])
    config = SessionConfig(default_turn_strategy="llm_directed")
    async with Application.boot(modules=_modules(config, llm=llm)) as app:
        factory = await app.container.resolve(GroupSessionFactory)
        group = factory.create()
        assert isinstance(group.turn_manager, LLMDirectedTurnManager)
        assert group.turn_manager.llm is llm
        group.add_agent(ScriptedAgent("a"))
        group.add_agent(ScriptedAgent("b"))
        manager = await app.container.resolve(SessionManagerImpl)
        sid = (await manager.create("alice")).session_id
        state = await group.run(sid, "go", max_rounds=1)
        assert speakers(state.turns) == ["b", "a"]
        assert len(llm.prompts) == 2


async def test_llm_directed_strategy_without_client_fails_clearly() -> None:
    config = SessionConfig(default_turn_strategy="llm_directed")
    async with Application.boot(modules=_modules(config)) as app:
        factory = await app.container.resolve(GroupSessionFactory)
        assert factory.llm is None
        with pytest.raises(SessionValidationError, match="LLMClientProtocol"):
            factory.create()
