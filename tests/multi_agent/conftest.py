"""Scripted agents and a scripted model for the group-session tests (no network)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from lexigram.contracts.ai.llm import ChatMessage, Completion
from lexigram.contracts.ai.session import SessionTurn
from lexigram.result import Err, Ok, Result

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.stores.in_memory import InMemorySessionStore


class ScriptedAgent:
    """Replies from a script; records every call it gets.

    A script item that is an exception is raised, a ``Result`` is returned as is,
    anything else is returned as ``Ok(item)``. Past the end of the script the agent
    answers ``"<name> #<n>"``.
    """

    def __init__(self, name: str, script: Sequence[Any] = ()) -> None:
        self.name = name
        self.script = list(script)
        self.calls: list[tuple[str, list[SessionTurn]]] = []

    async def execute(self, *, message: str, history: Sequence[SessionTurn]) -> Result[Any, Any]:
        self.calls.append((message, list(history)))
        n = len(self.calls)
        item: Any = self.script[n - 1] if n <= len(self.script) else f"{self.name} #{n}"
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, Ok | Err):
            return item
        return Ok(item)


class ScriptedLLM:
    """Implements ``LLMClientProtocol.complete`` with canned answers; records prompts."""

    def __init__(self, answers: Sequence[Any]) -> None:
        self.answers = list(answers)
        self.prompts: list[list[ChatMessage]] = []

    async def complete(
        self,
        messages: Sequence[Any],
        *,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        tools: Sequence[Any] | None = None,
        stop_sequences: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> Any:
        self.prompts.append(list(messages))
        answer = self.answers.pop(0) if self.answers else ""
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, Err):
            return answer
        return Ok(Completion(content=answer, model="scripted"))

    def stream_chat(self, messages: list[Any], **kwargs: Any) -> Any:
        raise NotImplementedError

    async def health_check(self, timeout: float = 5.0) -> Any:  # noqa: ASYNC109 - the contract
        return None

    async def close(self) -> None:
        return None


def make_manager(**config: Any) -> SessionManagerImpl:
    """A manager over a fresh in-memory store; auto-checkpoints off unless asked."""
    settings: dict[str, Any] = {"auto_checkpoint_interval": None}
    settings.update(config)
    return SessionManagerImpl(InMemorySessionStore(), SessionConfig(**settings))


@pytest.fixture
def manager() -> SessionManagerImpl:
    """A manager over a fresh in-memory store with the default config."""
    return make_manager()


@pytest.fixture
async def session_id(manager: SessionManagerImpl) -> str:
    """A new ACTIVE session of ``manager``."""
    return (await manager.create("alice")).session_id


def speakers(turns: Sequence[SessionTurn]) -> list[str]:
    """The agent of every agent turn, in order."""
    return [t.metadata["agent"] for t in turns if "agent" in t.metadata]
