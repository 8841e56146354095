"""An OpenAI Agents SDK ``Runner`` whose history lives in a lexigram session on SQLite.

The model is scripted (the SDK's ``Model`` interface): no network, no API key.

Run:  python examples/openai_agents_session.py [--db PATH] [--in-memory]
Needs: pip install 'lexigram-ai-session[openai-agents]'
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.items import ModelResponse, TResponseInputItem, TResponseStreamEvent
from agents.models.interface import Model
from agents.usage import Usage
from lexigram.contracts.ai.session import SessionState
from lexigram.logging import configure_logging
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputItem,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseReasoningItem,
)
from openai.types.responses.response_reasoning_item import Summary

# The framework logs at INFO by default (LEX_LOGGING__LEVEL); keep this script's output
# to its own lines, including what is logged while the modules below are imported.
configure_logging(level="WARNING")

from lexigram.ai.session import SessionManager  # noqa: E402
from lexigram.ai.session.integrations.openai_agents import OpenAIAgentsSession  # noqa: E402

set_tracing_disabled(True)  # nothing leaves the machine


class ScriptedModel(Model):
    """Answers with the next scripted list of output items."""

    def __init__(self, responses: list[list[ResponseOutputItem]]) -> None:
        self.responses = responses

    async def get_response(
        self, system_instructions: str | None, input: str | list[TResponseInputItem],
        *args: Any, **kwargs: Any,
    ) -> ModelResponse:
        return ModelResponse(output=self.responses.pop(0), usage=Usage(), response_id=None)

    def stream_response(
        self, *args: Any, **kwargs: Any
    ) -> AsyncIterator[TResponseStreamEvent]:
        raise NotImplementedError


def _say(msg_id: str, text: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        id=msg_id, type="message", role="assistant", status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny, 21°C in {city}"


SCRIPT: list[list[ResponseOutputItem]] = [
    # run 1, model call 1: think, then call the tool
    [
        ResponseReasoningItem(
            id="rs_1", type="reasoning",
            summary=[Summary(type="summary_text", text="Look the weather up.")],
        ),
        ResponseFunctionToolCall(
            id="fc_1", call_id="call_1", name="get_weather",
            arguments='{"city": "Paris"}', type="function_call",
        ),
    ],
    # run 1, model call 2: answer from the tool output
    [_say("msg_1", "It is sunny and 21°C in Paris.")],
    # run 2: answer from the history the session gave back
    [_say("msg_2", "You asked about the weather in Paris.")],
]


def _config(db_path: Path, in_memory: bool) -> dict[str, Any]:
    if in_memory:
        return {"backend": "memory", "auto_checkpoint_interval": None}
    return {
        "database_url": f"sqlite+aiosqlite:///{db_path}",  # selects the sql backend
        "auto_checkpoint_interval": None,
    }


def _print_turns(state: SessionState) -> None:
    for n, turn in enumerate(state.turns, 1):
        kind = turn.metadata.get("openai_item_type", "-")
        calls = f"  tool_calls={turn.tool_calls}" if turn.tool_calls else ""
        print(f"  {n}. {turn.role:>9} [{kind}] {turn.content}{calls}")
    print(f"  turn_count={state.turn_count} status={state.status.value}")


async def main(db_path: Path, in_memory: bool) -> None:
    """Two runs on the conversation ``user_123``, then (on SQLite) a read after a restart."""
    config = _config(db_path, in_memory)
    agent = Agent(
        name="weather",
        instructions="Answer briefly.",
        model=ScriptedModel([list(r) for r in SCRIPT]),
        tools=[get_weather],
    )
    where = "in memory" if in_memory else f"SQLite file {db_path}"
    async with SessionManager.open(config) as manager:
        # Keyed by our own id, as SQLiteSession("user_123"): created on first use.
        session = OpenAIAgentsSession(manager, "user_123")
        first = await Runner.run(agent, "What's the weather in Paris?", session=session)
        print(f"run 1: {first.final_output}")
        second = await Runner.run(agent, "What did I just ask you?", session=session)
        print(f"run 2: {second.final_output}")
        state = await manager.get_state("user_123")
        assert state is not None
        print(f"\nstored turns of session {state.session_id} ({where}):")
        _print_turns(state)
    if in_memory:
        return
    # A new manager on the same file (a restart): the same id finds the same history.
    async with SessionManager.open(config) as manager:
        reopened = OpenAIAgentsSession(manager, "user_123")
        items = await reopened.get_items(limit=2)
        print(f"\nafter a restart, get_items(limit=2) -> {items}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="SQLite file (default: a new temporary file)")
    parser.add_argument("--in-memory", action="store_true", help="use the in-memory backend")
    args = parser.parse_args()
    db = args.db or Path(tempfile.mkdtemp(prefix="lexigram-agents-")) / "sessions.db"
    asyncio.run(main(db, args.in_memory))
