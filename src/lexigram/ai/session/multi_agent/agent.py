"""What an agent of a group session is, and how the group holds one.

An agent is any object with a ``name`` and ``async execute(*, message, history)``
returning a :mod:`lexigram.result` ``Result``. ``Ok`` carries the reply: a string,
an :class:`AgentReply` (content plus tokens, cost, model and turn metadata), or any
object with a ``content`` string (an LLM ``Completion``). ``Err`` carries the reason
the agent could not answer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from lexigram.contracts.ai.session import SessionTurn
from lexigram.result import Result

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.multi_agent._checks import names_of, require_int
from lexigram.ai.session.stores.codec import dumps
from lexigram.ai.session.validation import check_id

__all__ = ["AgentReply", "GroupAgent", "GroupMember", "check_agent", "reply_from_value"]


@runtime_checkable
class GroupAgent(Protocol):
    """A participant of a :class:`~lexigram.ai.session.multi_agent.GroupSession`."""

    @property
    def name(self) -> str:
        """Unique name of the agent within its group."""
        ...

    async def execute(self, *, message: str, history: Sequence[SessionTurn]) -> Result[Any, Any]:
        """Answer ``message`` (the newest turn visible to the agent) given ``history``.

        ``history`` holds the visible turns before ``message``, oldest first.
        """
        ...


@dataclass(frozen=True, slots=True)
class AgentReply:
    """A reply with accounting: becomes one assistant turn of the session.

    ``metadata`` is merged into the turn's metadata (the keys ``agent``,
    ``agent_role``, ``round`` and ``group`` are set by the group and win); put
    ``visible_to`` / ``hidden_from`` there to make the reply private.
    """

    content: str
    tokens_used: int = 0
    cost: float = 0.0
    model: str | None = None
    provider: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GroupMember:
    """An agent as the group sees it: the agent plus its role, priority and topics."""

    agent: GroupAgent
    role: str = "participant"
    priority: int = 0
    topics: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The agent's name."""
        return self.agent.name


def check_agent(agent: Any) -> str:
    """Return the agent's name; raise ``SessionValidationError`` when it is not an agent."""
    name = getattr(agent, "name", None)
    if not isinstance(name, str) or not name.strip():
        raise SessionValidationError("agent.name", f"must be a non-empty string, got {name!r}")
    check_id(name, "agent.name")  # the id rules: it is stored in turns and listed
    execute = getattr(agent, "execute", None)
    if execute is None or not callable(execute):
        raise SessionValidationError("agent.execute", f"agent {name!r} has no execute() method")
    return name


def reply_from_value(value: Any) -> AgentReply:
    """Turn an agent's ``Ok`` value into an :class:`AgentReply`.

    Raises ``SessionValidationError`` (field ``reply``) for a value of another kind.
    """
    if isinstance(value, AgentReply):
        _check_reply(value)
        return value
    if isinstance(value, str):
        return AgentReply(content=value)
    message = getattr(value, "message", None)
    if isinstance(message, str) and not isinstance(getattr(value, "content", None), str):
        # The framework's agent reply (``lexigram.contracts.ai.agents.types.AgentResponse``).
        return AgentReply(
            content=message,
            tokens_used=_nonnegative_int(getattr(value, "total_tokens", 0))
            or _nonnegative_int(getattr(value, "prompt_tokens", 0))
            + _nonnegative_int(getattr(value, "completion_tokens", 0)),
            cost=_nonnegative_cost(getattr(value, "total_cost", 0.0)),
        )
    content = getattr(value, "content", None)
    if isinstance(content, str):
        model = getattr(value, "model", None)
        return AgentReply(
            content=content,
            tokens_used=_usage_tokens(getattr(value, "usage", None)),
            model=model if isinstance(model, str) else None,
        )
    raise SessionValidationError(
        "reply",
        f"Ok value of type {type(value).__name__} is not a reply; "
        "expected a str, an AgentReply, an AgentResponse (a 'message' string) or an object "
        "with a 'content' string",
    )


def _check_reply(reply: AgentReply) -> None:
    if not isinstance(reply.content, str):
        raise SessionValidationError("reply.content", f"expected a string, got {reply.content!r}")
    require_int("reply.tokens_used", reply.tokens_used, 0)
    if not isinstance(reply.cost, int | float) or isinstance(reply.cost, bool) or reply.cost < 0:
        raise SessionValidationError("reply.cost", f"must be a number >= 0, got {reply.cost!r}")
    if not isinstance(reply.metadata, Mapping):
        raise SessionValidationError("reply.metadata", f"expected a dict, got {reply.metadata!r}")
    dumps(dict(reply.metadata), field="reply.metadata")
    for key in ("visible_to", "hidden_from"):  # what isolation reads back from the turn
        names_of(reply.metadata.get(key), f"reply.metadata.{key}")


def _nonnegative_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _nonnegative_cost(value: Any) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(value) and value >= 0 else 0.0


def _usage_tokens(usage: Any) -> int:
    if not isinstance(usage, Mapping):
        return 0
    total = usage.get("total_tokens")
    if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
        return total
    parts = [usage.get("prompt_tokens"), usage.get("completion_tokens")]
    return sum(p for p in parts if isinstance(p, int) and not isinstance(p, bool) and p >= 0)
