"""Lexigram sessions for the OpenAI Agents SDK.

Install with ``pip install 'lexigram-ai-session[openai-agents]'``.

:class:`OpenAIAgentsSession` wraps a :class:`SessionManagerImpl` and one session id and
follows the SDK's ``agents.memory.Session`` protocol, so a ``Runner`` keeps its history
in a durable, concurrency-safe lexigram session::

    from lexigram.ai.session.integrations.openai_agents import OpenAIAgentsSession

    session = await OpenAIAgentsSession.create(manager, user_id="alice")
    await Runner.run(agent, "Hello", session=session)

Importing this package imports the SDK; nothing else in ``lexigram.ai.session`` does.
"""

from __future__ import annotations

try:
    import agents as _agents
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "lexigram.ai.session.integrations.openai_agents needs the OpenAI Agents SDK: "
        "pip install 'lexigram-ai-session[openai-agents]'"
    ) from exc

from lexigram.ai.session.integrations.openai_agents.errors import SessionTypeError
from lexigram.ai.session.integrations.openai_agents.mapping import (
    ENCRYPTED_KIND,
    ITEM_KEY,
    ITEM_TYPE_KEY,
    NEUTRAL_ROLE,
    OPAQUE_KIND,
    item_to_turn,
    turn_to_item,
    turns_to_items,
)
from lexigram.ai.session.integrations.openai_agents.session import OpenAIAgentsSession

__all__ = [
    "ENCRYPTED_KIND",
    "ITEM_KEY",
    "ITEM_TYPE_KEY",
    "NEUTRAL_ROLE",
    "OPAQUE_KIND",
    "OpenAIAgentsSession",
    "SessionTypeError",
    "item_to_turn",
    "turn_to_item",
    "turns_to_items",
]
