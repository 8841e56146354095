"""Items map to readable turns and back without loss (pure functions, no store)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.integrations.openai_agents import (
    ITEM_KEY,
    ITEM_TYPE_KEY,
    NEUTRAL_ROLE,
    item_to_turn,
    turn_to_item,
    turns_to_items,
)
from lexigram.ai.session.stores.codec import validate_turn

from .conftest import sample_items

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _by_type(kind: str) -> dict[str, Any]:
    return next(i for i in sample_items() if i.get("type", "message") == kind)


def test_every_sample_item_round_trips_and_is_a_valid_turn() -> None:
    items = sample_items()
    turns = [item_to_turn(item, now=NOW) for item in items]
    assert [turn_to_item(validate_turn(t)) for t in turns] == items
    assert len({t.turn_id for t in turns}) == len(turns)
    assert all(t.metadata[ITEM_KEY] == item for t, item in zip(turns, items, strict=True))


def test_messages_keep_their_role_and_text() -> None:
    items = sample_items()
    easy = item_to_turn(items[0], now=NOW)
    assert (easy.role, easy.content) == ("user", items[0]["content"])
    parts = item_to_turn(items[1], now=NOW)
    assert parts.role == "user"
    assert parts.content == "And what is in this picture?\n[image]\n[file: notes.pdf]"
    assert item_to_turn(items[2], now=NOW).role == "developer"
    out = item_to_turn(_by_type("message") | {"role": "assistant"}, now=NOW)
    assert out.role == "assistant"
    assistant = item_to_turn(items[7], now=NOW)
    assert assistant.content == "It is sunny, 21.5°C.\nI cannot describe the picture."
    assert assistant.tool_calls == []


def test_function_call_fills_tool_calls() -> None:
    turn = item_to_turn(_by_type("function_call"), now=NOW)
    assert turn.role == "assistant"
    assert turn.content == 'get_weather({"city": "Paris", "units": "metric"})'
    assert turn.tool_calls == [
        {
            "id": "call_1",
            "type": "function",
            "name": "get_weather",
            "arguments": '{"city": "Paris", "units": "metric"}',
        }
    ]
    assert turn.metadata["call_id"] == "call_1"
    assert turn.metadata["openai_item_type"] == "function_call"


def test_outputs_are_tool_turns_with_their_text() -> None:
    items = [i for i in sample_items() if str(i.get("type", "")).endswith("_output")]
    turns = [item_to_turn(i, now=NOW) for i in items]
    assert [t.role for t in turns] == ["tool", "tool", "tool"]
    assert [t.content for t in turns] == ["sunny, 21.5°C", "chart attached\n[image]", "total 0"]
    assert [t.metadata["call_id"] for t in turns] == ["call_1", "call_2", "call_3"]


def test_reasoning_and_other_items() -> None:
    rs = item_to_turn(_by_type("reasoning"), now=NOW)
    assert (rs.role, rs.content) == ("assistant", "Need the weather tool.")
    custom = item_to_turn(_by_type("custom_tool_call"), now=NOW)
    assert custom.content == "shell(ls -la)"
    assert custom.tool_calls == [
        {"id": "call_3", "type": "custom", "name": "shell", "input": "ls -la"}
    ]
    ref = item_to_turn({"type": "item_reference", "id": "msg_0"}, now=NOW)
    assert (ref.role, ref.content) == ("assistant", "[item_reference]")
    search = item_to_turn({"type": "web_search_call", "id": "ws_1", "status": "completed"}, now=NOW)
    assert search.tool_calls == [{"id": "ws_1", "type": "web_search_call"}]
    approval = item_to_turn(
        {"type": "mcp_approval_response", "approval_request_id": "a", "approve": True}, now=NOW
    )
    assert approval.role == "user"


@pytest.mark.parametrize(
    "item",
    [
        {"role": "user", "content": ("a", "b")},
        {"role": "user", "content": "x", "score": math.nan},
        {"role": "user", "content": "x", "score": math.inf},
        {"role": "user", "content": object()},
        {1: "x", "role": "user"},
        {"role": "user", "content": "x", "n": 2**64},
        ("a", "b"),
    ],
)
def test_items_that_are_not_json_are_refused_as_type_errors(item: Any) -> None:
    """Where the SDK's sessions raise ``TypeError``, so does the adapter (field named)."""
    with pytest.raises(TypeError) as info:
        item_to_turn(item, now=NOW, field="items[4]")
    assert isinstance(info.value, SessionValidationError)
    assert info.value.field == "items[4]"
    assert "items[4]" in str(info.value)


ENVELOPE = {"__enc__": 1, "v": 1, "kid": "hkdf-v1", "payload": "gAAAAABn-opaque-token=="}


@pytest.mark.parametrize(
    ("item", "kind", "content"),
    [
        (ENVELOPE, "encrypted", "[encrypted item]"),
        ({"content": "no role or type"}, "opaque", "[item]"),
        ({"__enc__": 1, "payload": "incomplete envelope"}, "opaque", "[item]"),
        ({"type": "message", "role": "", "content": "x"}, "opaque", "[item]"),
        ({"type": 3}, "opaque", "[item]"),
        ({"type": None, "x": [1, 2]}, "opaque", "[item]"),
        ("hello", "opaque", "[item]"),
        ([1, {"a": None}], "opaque", "[item]"),
        (42, "opaque", "[item]"),
        (None, "opaque", "[item]"),
        ({}, "opaque", "[item]"),
    ],
)
def test_items_of_unknown_shape_become_neutral_turns(item: Any, kind: str, content: str) -> None:
    turn = validate_turn(item_to_turn(item, now=NOW, field="items[0]"))
    assert (turn.role, turn.content, turn.tool_calls) == (NEUTRAL_ROLE, content, [])
    assert turn.metadata == {ITEM_KEY: item, ITEM_TYPE_KEY: kind}
    back = turn_to_item(turn)
    assert back == item and type(back) is type(item)


def test_key_order_is_kept() -> None:
    item = {"z": 1, "payload": "p", "__enc__": 1, "kid": "k", "v": 1, "a": {"y": 1, "b": 2}}
    back = turn_to_item(item_to_turn(item, now=NOW))
    assert list(back) == list(item) and list(back["a"]) == ["y", "b"]
    envelope = turn_to_item(item_to_turn(dict(reversed(list(ENVELOPE.items()))), now=NOW))
    assert list(envelope) == ["payload", "kid", "v", "__enc__"]


def test_the_stored_item_is_a_copy() -> None:
    item = {"role": "user", "content": [{"type": "input_text", "text": "a"}]}
    turn = item_to_turn(item, now=NOW)
    item["content"][0]["text"] = "changed"
    assert turn.metadata[ITEM_KEY]["content"][0]["text"] == "a"


def _turn(role: str, content: str, metadata: dict[str, Any]) -> SessionTurn:
    return SessionTurn(turn_id="t1", role=role, content=content, timestamp=NOW, metadata=metadata)


def test_turns_written_by_other_code_become_plain_messages() -> None:
    assert turn_to_item(_turn("user", "hi", {})) == {"role": "user", "content": "hi"}
    assert turn_to_item(_turn("system", "rules", {})) == {"role": "system", "content": "rules"}
    assert turn_to_item(_turn("tool", "42", {})) == {"role": "assistant", "content": "42"}


def test_turns_to_items_mixes_adapter_and_foreign_turns() -> None:
    ours = item_to_turn(ENVELOPE, now=NOW)
    foreign = _turn("tool", "42", {})
    assert turns_to_items([ours, foreign, ours]) == [
        ENVELOPE, {"role": "assistant", "content": "42"}, ENVELOPE
    ]


def test_a_shell_call_output_keeps_its_streams_as_text() -> None:
    from datetime import UTC, datetime

    from lexigram.ai.session.integrations.openai_agents.mapping import item_to_turn

    item = {
        "type": "shell_call_output",
        "call_id": "sh1",
        "output": [{"stdout": "a\nb\n", "stderr": "warn", "outcome": {"type": "exit"}}],
    }
    turn = item_to_turn(item, now=datetime.now(UTC), field="items[0]")
    assert turn.role == "tool" and turn.content == "a\nb\n\nwarn"
