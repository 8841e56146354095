"""A scripted model for the OpenAI Agents SDK: the SDK's ``Model`` interface, no network.

Each ``get_response`` call returns the next scripted list of output items and keeps
the input it was given, so tests can check what history the ``Runner`` sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from agents import Agent, function_tool
from agents.items import ModelResponse, TResponseInputItem, TResponseStreamEvent
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputItem,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseReasoningItem,
)
from openai.types.responses.response_reasoning_item import Summary


class ScriptedModel(Model):
    """Returns scripted responses in order; records every input."""

    def __init__(self, responses: list[list[ResponseOutputItem]]) -> None:
        self.responses = list(responses)
        self.inputs: list[str | list[TResponseInputItem]] = []

    async def get_response(
        self, system_instructions: str | None, input: str | list[TResponseInputItem],
        *args: Any, **kwargs: Any,
    ) -> ModelResponse:
        self.inputs.append(input)
        if not self.responses:
            raise AssertionError("the scripted model ran out of responses")
        return ModelResponse(output=self.responses.pop(0), usage=Usage(), response_id=None)

    def stream_response(
        self, *args: Any, **kwargs: Any
    ) -> AsyncIterator[TResponseStreamEvent]:
        raise NotImplementedError("the scripted model does not stream")


def message(msg_id: str, text: str) -> ResponseOutputMessage:
    """An assistant message output item."""
    return ResponseOutputMessage(
        id=msg_id, type="message", role="assistant", status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


def reasoning(rs_id: str, text: str) -> ResponseReasoningItem:
    """A reasoning output item with one summary."""
    return ResponseReasoningItem(
        id=rs_id, type="reasoning", summary=[Summary(type="summary_text", text=text)]
    )


def function_call(fc_id: str, call_id: str, name: str, arguments: str) -> ResponseFunctionToolCall:
    """A function call output item."""
    return ResponseFunctionToolCall(
        id=fc_id, call_id=call_id, name=name, arguments=arguments, type="function_call"
    )


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city (a deterministic stand-in)."""
    return f"sunny in {city}"


def weather_script() -> list[list[ResponseOutputItem]]:
    """Two runs: run 1 reasons, calls a tool, answers; run 2 answers from history."""
    return [
        [
            reasoning("rs_1", "The user wants the weather; call the tool."),
            function_call("fc_1", "call_1", "get_weather", '{"city": "Paris"}'),
        ],
        [message("msg_1", "It is sunny in Paris.")],
        [message("msg_2", "You asked about the weather in Paris.")],
    ]


def weather_agent(model: ScriptedModel) -> Agent[Any]:
    """An agent on ``model`` with the weather tool."""
    return Agent(name="weather", instructions="Answer briefly.", model=model, tools=[get_weather])
