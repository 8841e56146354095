"""The adapter inside a booted lexigram application, driven by the SDK's Runner."""

from __future__ import annotations

from typing import Any

from agents import Runner
from lexigram.contracts.ai.session import SessionManagerProtocol, SessionTurn

from lexigram import Application
from lexigram.ai.session import SessionModule
from lexigram.ai.session.integrations.openai_agents import OpenAIAgentsSession
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.stores.in_memory import InMemorySessionStore

from .scripted import ScriptedModel, weather_agent, weather_script


async def test_runner_keeps_history_in_a_booted_apps_session() -> None:
    async with Application.boot(modules=[SessionModule.stub()]) as app:
        manager = await app.container.resolve(SessionManagerProtocol)
        assert isinstance(manager, SessionManagerImpl)
        session = await OpenAIAgentsSession.create(manager, user_id="alice")
        agent = weather_agent(ScriptedModel(weather_script()))
        await Runner.run(agent, "Weather in Paris?", session=session)
        result = await Runner.run(agent, "What did I ask?", session=session)
        assert result.final_output == "You asked about the weather in Paris."
        state = await manager.get_state(session.session_id)
        assert state is not None
        assert [(t.role, t.content) for t in state.turns] == [
            ("user", "Weather in Paris?"),
            ("assistant", "The user wants the weather; call the tool."),
            ("assistant", 'get_weather({"city": "Paris"})'),
            ("tool", "sunny in Paris"),
            ("assistant", "It is sunny in Paris."),
            ("user", "What did I ask?"),
            ("assistant", "You asked about the weather in Paris."),
        ]
        assert state.turn_count == 7


class _RecordingStore(InMemorySessionStore):
    """The real in-memory store, noting how many turns each read asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.lasts: list[int | None] = []

    async def get_turns(self, session_id: str, **kwargs: Any) -> list[SessionTurn]:
        self.lasts.append(kwargs.get("last"))
        return await super().get_turns(session_id, **kwargs)


async def test_limit_reads_only_the_newest_turns_from_the_store() -> None:
    store = _RecordingStore()
    session = await OpenAIAgentsSession.create(SessionManagerImpl(store), user_id="alice")
    await session.add_items([{"role": "user", "content": str(n)} for n in range(200)])
    items = await session.get_items(limit=50)
    assert [i["content"] for i in items] == [str(n) for n in range(150, 200)]
    assert store.lasts == [50]
    session.session_settings = session.session_settings.__class__(limit=7)
    assert len(await session.get_items()) == 7
    assert store.lasts == [50, 7]
