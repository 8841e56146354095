"""Mapping between OpenAI Agents SDK items and lexigram :class:`SessionTurn`s.

Pure functions on plain dicts: this module does not import the SDK.

One item becomes one turn:

=========================  ===========  =============================================
item ``type``              turn role    turn content
=========================  ===========  =============================================
``message`` (or no type    the item's   the string content, or the text of the
but a ``role``)            ``role``     content parts joined by newlines (``[image]``,
                                        ``[file: name]`` stand for non-text parts)
``function_call``          assistant    ``name(arguments)``
``custom_tool_call``       assistant    ``name(input)``
``reasoning``              assistant    the summary texts (else the reasoning texts)
``*_output`` (tool         tool         the output text (text parts joined; other
outputs)                                values as compact JSON)
``mcp_approval_response``  user         ``[mcp_approval_response]``
anything else              assistant    ``[type]`` (``[type: name]`` when named)
=========================  ===========  =============================================

Tool calls (``*_call`` items) also fill ``turn.tool_calls``; ``function_call`` gives
``{"id": call_id, "type": "function", "name": ..., "arguments": ...}``.

The item itself is kept whole in ``turn.metadata["openai_item"]`` (with its type in
``"openai_item_type"`` and, for calls and outputs, ``"call_id"``), so
:func:`turn_to_item` gives back exactly the item that was stored. Every turn gets a
fresh lexigram turn id; the item's own ``id``/``call_id`` stay inside the item (the
SDK does not guarantee they are unique in a history).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session.exceptions import CorruptRecordError, SessionValidationError
from lexigram.ai.session.manager.core import new_turn_id
from lexigram.ai.session.stores.codec import dumps, loads

__all__ = [
    "ITEM_KEY",
    "ITEM_TYPE_KEY",
    "item_kind",
    "item_role",
    "item_text",
    "item_to_turn",
    "turn_to_item",
]

#: Turn metadata key holding the item's full original JSON.
ITEM_KEY = "openai_item"
#: Turn metadata key holding the item's type (``message``, ``function_call``, ...).
ITEM_TYPE_KEY = "openai_item_type"
#: Turn metadata key holding the ``call_id`` of a tool call or tool output.
CALL_ID_KEY = "call_id"

#: Roles an SDK message may carry; a turn written elsewhere with another role is
#: handed to the SDK as an assistant message.
_MESSAGE_ROLES = frozenset({"user", "assistant", "system", "developer"})
_TEXT_PART_TYPES = frozenset(
    {"input_text", "output_text", "text", "summary_text", "reasoning_text"}
)


def item_kind(item: Mapping[str, Any], *, field: str = "item") -> str:
    """The item's type: its ``type``, or ``message`` for a bare ``{"role", "content"}`` item."""
    kind = item.get("type")
    if kind is None:
        if "role" in item:
            return "message"
        raise SessionValidationError(f"{field}.type", "the item has neither 'type' nor 'role'")
    if not isinstance(kind, str) or not kind:
        raise SessionValidationError(f"{field}.type", f"must be a non-empty string, got {kind!r}")
    return kind


def item_role(item: Mapping[str, Any], kind: str, *, field: str = "item") -> str:
    """The turn role for an item of type ``kind`` (see the module table)."""
    if kind == "message":
        role = item.get("role")
        if not isinstance(role, str) or not role.strip():
            raise SessionValidationError(
                f"{field}.role", f"must be a non-empty string, got {role!r}"
            )
        return role
    if kind == "mcp_approval_response":
        return "user"
    if kind.endswith("_output"):
        return "tool"
    return "assistant"


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if not isinstance(part, Mapping):
        return ""
    kind = part.get("type")
    if kind in _TEXT_PART_TYPES:
        text = part.get("text")
        return text if isinstance(text, str) else ""
    if kind == "refusal":
        refusal = part.get("refusal")
        return refusal if isinstance(refusal, str) else ""
    if kind == "input_image":
        return "[image]"
    if kind == "input_file":
        name = part.get("filename")
        return f"[file: {name}]" if isinstance(name, str) and name else "[file]"
    if kind == "input_audio":
        return "[audio]"
    return f"[{kind}]" if isinstance(kind, str) and kind else ""


def _content_text(value: Any) -> str:
    """A string as is, a list of content parts as their texts joined by newlines."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(text for text in (_part_text(p) for p in value) if text)
    return dumps(value, field="item").decode()


def item_text(item: Mapping[str, Any], kind: str) -> str:
    """A readable text of the item for the turn's ``content`` (see the module table)."""
    if kind == "message":
        return _content_text(item.get("content"))
    if kind == "function_call":
        return f"{item.get('name', '')}({item.get('arguments', '')})"
    if kind == "custom_tool_call":
        return f"{item.get('name', '')}({item.get('input', '')})"
    if kind == "reasoning":
        text = _content_text(item.get("summary"))
        return text or _content_text(item.get("content")) or "[reasoning]"
    if kind.endswith("_output") and "output" in item:
        return _content_text(item.get("output"))
    name = item.get("name")
    return f"[{kind}: {name}]" if isinstance(name, str) and name else f"[{kind}]"


def _tool_calls(item: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    if kind == "function_call":
        return [
            {
                "id": item.get("call_id"),
                "type": "function",
                "name": item.get("name"),
                "arguments": item.get("arguments"),
            }
        ]
    if kind == "custom_tool_call":
        return [
            {
                "id": item.get("call_id"),
                "type": "custom",
                "name": item.get("name"),
                "input": item.get("input"),
            }
        ]
    if kind.endswith("_call"):
        call: dict[str, Any] = {"id": item.get("call_id", item.get("id")), "type": kind}
        if isinstance(item.get("name"), str):
            call["name"] = item["name"]
        return [call]
    return []


def _exact_json_copy(item: Any, *, field: str) -> dict[str, Any]:
    """A JSON round trip of ``item`` that must compare equal to it (nothing lost)."""
    if not isinstance(item, Mapping):
        raise SessionValidationError(
            field, f"expected a dict (an SDK input item), got {type(item).__name__}"
        )
    for key in item:
        if not isinstance(key, str):
            raise SessionValidationError(field, f"keys must be strings, got {key!r}")
    copy = loads(dumps(item, field=field), record=field)
    if copy != item:
        raise SessionValidationError(
            field,
            "the item does not survive a JSON round trip unchanged "
            "(tuples, NaN/inf floats or other non-JSON values)",
        )
    if not isinstance(copy, dict):  # pragma: no cover - a Mapping encodes as an object
        raise SessionValidationError(field, "expected a JSON object")
    return copy


def item_to_turn(item: Any, *, now: datetime, field: str = "item") -> SessionTurn:
    """The turn that stores ``item`` (a fresh turn id, ``now`` as its timestamp).

    Raises :class:`SessionValidationError` naming ``field`` (e.g. ``items[2]``) when the
    item is not a JSON object that survives a round trip unchanged, or lacks a type.
    """
    copy = _exact_json_copy(item, field=field)
    kind = item_kind(copy, field=field)
    metadata: dict[str, Any] = {ITEM_KEY: copy, ITEM_TYPE_KEY: kind}
    call_id = copy.get("call_id")
    if isinstance(call_id, str):
        metadata[CALL_ID_KEY] = call_id
    return SessionTurn(
        turn_id=new_turn_id(),
        role=item_role(copy, kind, field=field),
        content=item_text(copy, kind),
        timestamp=now,
        tool_calls=_tool_calls(copy, kind),
        metadata=metadata,
    )


def turn_to_item(turn: SessionTurn) -> dict[str, Any]:
    """The SDK item a turn stands for.

    A turn written by the adapter gives back its stored item exactly. A turn written
    by other code (``manager.add_message``, a group session, ...) is handed over as a
    plain message ``{"role": ..., "content": ...}``; roles the SDK does not know for
    messages (e.g. ``tool``) become ``assistant``.
    """
    raw = turn.metadata.get(ITEM_KEY)
    if type(raw) is dict:  # the common case first: a turn the adapter wrote
        return raw
    if raw is None:
        role = turn.role if turn.role in _MESSAGE_ROLES else "assistant"
        return {"role": role, "content": turn.content}
    if not isinstance(raw, dict):
        raise CorruptRecordError(
            f"turn {turn.turn_id!r}",
            f"metadata.{ITEM_KEY}: expected a JSON object, got {type(raw).__name__}",
        )
    return raw
