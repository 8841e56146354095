"""The group-session factory is resolvable from a booted application."""

from __future__ import annotations

from typing import Any

import pytest
from lexigram.contracts.ai.llm import LLMClientProtocol
from lexigram.di.module import DynamicModule, Module, module
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
from lexigram.ai.session.multi_agent.di import exported_types, register_group_services

from .conftest import ScriptedAgent, ScriptedLLM, speakers


def _wired_by_session_provider() -> bool:
    from lexigram.ai.session.di.extensions import exported_types as session_exports

    return GroupSessionFactory in session_exports()


def _modules(config: SessionConfig, llm: Any = None) -> list[Any]:
    """SessionModule.stub(config), plus whatever the test needs next to it.

    Until the session provider calls ``register_group_services`` itself, a small
    provider does it here, exactly as the provider will.
    """
    wire = not _wired_by_session_provider()

    class Extras(Provider):
        name = "group_test_extras"
        dependencies = ("session",)

        async def register(self, container: Any) -> None:
            if llm is not None:
                container.singleton(LLMClientProtocol, llm)
            if wire:
                register_group_services(container, config)

    exports = [*(exported_types() if wire else []), LLMClientProtocol]

    @module(providers=[Extras], exports=exports, is_global=True)
    class ExtrasModule(Module):
        pass

    stub: DynamicModule = SessionModule.stub(config)
    return [stub, ExtrasModule]


def test_exported_types() -> None:
    assert exported_types() == [GroupSessionFactory]


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
