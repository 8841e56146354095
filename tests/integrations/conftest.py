"""Fixtures of the OpenAI Agents SDK integration tests.

``make_manager`` builds a :class:`SessionManagerImpl` over a store of the backend the
test is parametrised with: every spec of ``tests/stores/backends`` (``all_specs()``),
so a newly registered backend is picked up without touching these tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from agents import set_tracing_disabled

from lexigram.ai.session.manager.core import SessionManagerImpl
from tests.stores.backends import BackendSpec, StoreFactory, all_specs

set_tracing_disabled(True)  # the SDK would otherwise try to export traces over the network

SPECS = all_specs()

MakeManager = Callable[..., Awaitable[SessionManagerImpl]]


@pytest.fixture(params=[pytest.param(s, id=s.name, marks=s.marks) for s in SPECS])
async def store_factory(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """A factory of store instances on one test-private namespace of one backend."""
    spec: BackendSpec = request.param
    async with spec.open() as factory:
        yield factory


@pytest.fixture
def make_manager(store_factory: StoreFactory) -> MakeManager:
    """``await make_manager(**config)``: a manager over a new store instance of the backend."""

    async def make(**config: Any) -> SessionManagerImpl:
        return SessionManagerImpl(await store_factory(), config)

    return make


def sample_items() -> list[dict[str, Any]]:
    """One of every item shape a Runner stores, with structured content parts."""
    return [
        {"role": "user", "content": "What's the weather in Paris? naïve 🎉"},
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "And what is in this picture?"},
                {
                    "type": "input_image",
                    "image_url": "https://example.com/cat.png",
                    "detail": "auto",
                },
                {"type": "input_file", "file_id": "file-1", "filename": "notes.pdf"},
            ],
        },
        {"role": "developer", "content": "Answer in one sentence."},
        {
            "id": "rs_1",
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": "Need the weather tool."}],
            "encrypted_content": "gAAAAB-opaque",
        },
        {
            "id": "fc_1",
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris", "units": "metric"}',
            "status": "completed",
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny, 21.5°C"},
        {
            "type": "function_call_output",
            "call_id": "call_2",
            "output": [
                {"type": "input_text", "text": "chart attached"},
                {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
            ],
        },
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [
                {
                    "type": "output_text",
                    "text": "It is sunny, 21.5°C.",
                    "annotations": [
                        {"type": "url_citation", "url": "https://w.example", "title": None,
                         "start_index": 0, "end_index": 8}
                    ],
                    "logprobs": [],
                },
                {"type": "refusal", "refusal": "I cannot describe the picture."},
            ],
        },
        {
            "type": "custom_tool_call",
            "call_id": "call_3",
            "name": "shell",
            "input": "ls -la",
            "id": "ctc_1",
        },
        {"type": "custom_tool_call_output", "call_id": "call_3", "output": "total 0"},
        {"type": "item_reference", "id": "msg_0"},
    ]
