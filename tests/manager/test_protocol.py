"""A manager that is not a ``SessionManagerImpl`` but has its API is accepted everywhere."""

from __future__ import annotations

from typing import Any

import pytest

from lexigram.ai.session.context.session_context import SessionContext
from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.integrations.openai_agents import OpenAIAgentsSession
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.manager.protocol import SessionManagerAPI
from lexigram.ai.session.middleware.session_middleware import SessionMiddleware
from lexigram.ai.session.stores.in_memory import InMemorySessionStore


class Wrapped:
    """Delegates to a real manager and counts the calls (a tracing wrapper)."""

    def __init__(self, inner: SessionManagerImpl) -> None:
        self.inner = inner
        self.config = inner.config
        self.store = inner.store
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if callable(target):
            self.calls.append(name)
        return target


@pytest.fixture
def real() -> SessionManagerImpl:
    return SessionManagerImpl(InMemorySessionStore())


def test_the_real_and_a_wrapped_manager_satisfy_the_protocol(real: SessionManagerImpl) -> None:
    assert isinstance(real, SessionManagerAPI)
    assert isinstance(Wrapped(real), SessionManagerAPI)
    assert not isinstance(object(), SessionManagerAPI)


async def test_the_agents_adapter_writes_through_a_wrapped_manager(
    real: SessionManagerImpl,
) -> None:
    wrapped = Wrapped(real)
    session = OpenAIAgentsSession(wrapped, "conv-1")  # type: ignore[arg-type]
    await session.add_items([{"role": "user", "content": "hello"}])
    turns = await real.get_turns("conv-1")
    assert [t.content for t in turns] == ["hello"]
    assert "add_turns" in wrapped.calls or "add_message" in wrapped.calls


def test_context_and_middleware_accept_a_wrapped_manager(real: SessionManagerImpl) -> None:
    wrapped = Wrapped(real)
    SessionContext(session_manager=wrapped)  # type: ignore[arg-type]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    middleware = SessionMiddleware(app, session_manager=wrapped)  # type: ignore[arg-type]
    assert middleware._manager is wrapped


def test_something_else_is_still_refused_naming_the_field() -> None:
    with pytest.raises(SessionValidationError) as info:
        OpenAIAgentsSession(object(), "conv-1")  # type: ignore[arg-type]
    assert info.value.field == "manager"
