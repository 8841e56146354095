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
any other ``type``         assistant    ``[type]`` (``[type: name]`` when named)
an ``EncryptedSession``    ``data``     ``[encrypted item]``
envelope
any other JSON value       ``data``     ``[item]``
(no ``type`` nor ``role``,
or not an object)
=========================  ===========  =============================================

``data`` is the neutral role: no lexigram feature gives it a meaning (the context
pruner does not keep it, analytics do not count it as a reply); its
``openai_item_type`` is ``encrypted`` or ``opaque``.

Tool calls (``*_call`` items) also fill ``turn.tool_calls``; ``function_call`` gives
``{"id": call_id, "type": "function", "name": ..., "arguments": ...}``.

The item itself is kept whole in ``turn.metadata["openai_item"]`` (with its type in
``"openai_item_type"`` and, for calls and outputs, ``"call_id"``), so
:func:`turn_to_item` gives back exactly the item that was stored (equal, keys in
the same order). Every turn gets a fresh lexigram turn id; the item's own
``id``/``call_id`` stay inside the item (the SDK does not guarantee they are unique
in a history).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.integrations.openai_agents.errors import SessionTypeError
from lexigram.ai.session.manager.core import new_turn_id
from lexigram.ai.session.stores.codec import dumps, loads
from lexigram.ai.session.validation import MAX_JSON_DEPTH, escape_surrogates

__all__ = [
    "CALL_ID_KEY",
    "ENCRYPTED_KIND",
    "ITEM_JSON_KEY",
    "ITEM_KEY",
    "ITEM_TYPE_KEY",
    "NEUTRAL_ROLE",
    "OPAQUE_KIND",
    "item_kind",
    "item_role",
    "item_text",
    "item_to_turn",
    "turn_to_item",
    "turns_to_items",
]

#: Turn metadata key holding the item's full original JSON.
ITEM_KEY = "openai_item"
#: Turn metadata key holding, instead of :data:`ITEM_KEY`, the item as ASCII JSON text
#: (``\\udXXX`` escapes) when it holds a lone surrogate, which no backend stores as text.
ITEM_JSON_KEY = "openai_item_json"
#: Turn metadata key holding the item's type (``message``, ``function_call``, ...).
ITEM_TYPE_KEY = "openai_item_type"
#: Turn metadata key holding the ``call_id`` of a tool call or tool output.
CALL_ID_KEY = "call_id"
#: Role of the turn of an item whose shape is not known (see the module table).
NEUTRAL_ROLE = "data"
#: ``openai_item_type`` of an ``EncryptedSession`` envelope.
ENCRYPTED_KIND = "encrypted"
#: ``openai_item_type`` of any other item with neither ``type`` nor ``role``.
OPAQUE_KIND = "opaque"

#: Roles an SDK message may carry; a turn written elsewhere with another role is
#: handed to the SDK as an assistant message.
_MESSAGE_ROLES = frozenset({"user", "assistant", "system", "developer"})
_TEXT_PART_TYPES = frozenset(
    {"input_text", "output_text", "text", "summary_text", "reasoning_text"}
)
_ENVELOPE_KEYS = frozenset({"__enc__", "v", "kid", "payload"})
#: Stands for "no stored item" on the read path (a stored item may be JSON ``null``).
_MISSING: Any = object()


def _is_envelope(item: dict[str, Any]) -> bool:
    """An ``EncryptedSession`` envelope: ``{"__enc__": 1, "v", "kid", "payload"}``."""
    return item.keys() == _ENVELOPE_KEYS and item["__enc__"] == 1


def _has_role(item: dict[str, Any]) -> bool:
    role = item.get("role")
    return isinstance(role, str) and bool(role.strip())


def item_kind(item: Any) -> str | None:
    """The SDK type of a readable item, or None for an item of unknown shape.

    The item's ``type`` when it is a non-empty string (a ``message`` must also carry
    a role); ``message`` for a bare ``{"role", "content"}`` item; None for anything
    else (no ``type`` nor ``role``, an envelope, a value that is not an object).
    """
    if type(item) is not dict:
        return None
    kind = item.get("type")
    if isinstance(kind, str) and kind:
        return kind if kind != "message" or _has_role(item) else None
    if kind is None and _has_role(item):
        return "message"
    return None


def item_role(item: dict[str, Any], kind: str) -> str:
    """The turn role for a readable item of type ``kind`` (see the module table)."""
    if kind == "message":
        return str(item["role"])
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
    if kind is None and ("stdout" in part or "stderr" in part):
        # a shell call's output: its streams, stdout first
        streams = (part.get("stdout"), part.get("stderr"))
        return "\n".join(text for text in streams if isinstance(text, str) and text)
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


def _exact_json_copy(item: Any, *, field: str) -> Any:
    """A JSON round trip of ``item`` that must compare equal to it (nothing lost).

    Raises :class:`SessionTypeError` (a ``TypeError`` too, as the SDK's sessions
    raise) naming ``field`` when the item cannot be stored as JSON unchanged.
    """
    try:
        raw = dumps(item, field=field)
    except SessionValidationError as exc:
        if "Recursion limit" in exc.problem:  # orjson's own depth limit (254 levels)
            raise RecursionError from None  # named as too deep by item_to_turn
        raise SessionTypeError(field, exc.problem) from exc.__cause__
    copy = loads(raw, record=field)
    if copy != item:
        raise SessionTypeError(
            field,
            "the item does not survive a JSON round trip unchanged "
            "(a tuple, a NaN/inf float, a non-string key or another non-JSON value)",
        )
    return copy


def _without_surrogates(value: Any) -> Any:
    """``value`` with every lone surrogate of its strings written as ``\\udXXX``."""
    if isinstance(value, str):
        return escape_surrogates(value)
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_surrogates(v) for v in value]
    return value


def _escaped_json(item: Any) -> str | None:
    """``item`` as ASCII JSON text when it survives the round trip unchanged (what the
    SDK's own sessions store with ``json.dumps``); else None."""
    try:
        text = json.dumps(item, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return None
    return text if json.loads(text) == item else None


def item_to_turn(item: Any, *, now: datetime, field: str = "item") -> SessionTurn:
    """The turn that stores ``item`` (a fresh turn id, ``now`` as its timestamp).

    Any JSON value is accepted; one of unknown shape becomes a neutral turn (role
    ``data``). Raises :class:`SessionTypeError` naming ``field`` (e.g. ``items[2]``)
    when the item does not survive a JSON round trip unchanged. An item holding a lone
    surrogate is kept as escaped JSON text (:data:`ITEM_JSON_KEY`); its turn's content
    and tool calls show the surrogate as ``\\udXXX``. An item nested deeper than
    :data:`~lexigram.ai.session.validation.MAX_JSON_DEPTH` levels is refused with
    ``SessionValidationError`` naming ``field``, however deep (a thousand levels raised
    a raw ``RecursionError``).
    """
    try:
        return _item_to_turn(item, now=now, field=field)
    except RecursionError:
        raise SessionValidationError(
            field, f"nested deeper than {MAX_JSON_DEPTH} levels"
        ) from None


def _item_to_turn(item: Any, *, now: datetime, field: str) -> SessionTurn:
    try:
        copy = _exact_json_copy(item, field=field)
        kept: dict[str, Any] = {ITEM_KEY: copy}
    except SessionTypeError:
        # Kept as escaped text only when a lone surrogate is what JSON could not hold.
        copy = _without_surrogates(item)
        text = None if copy == item else _escaped_json(item)
        if text is None:
            raise
        kept = {ITEM_JSON_KEY: text}
    kind = item_kind(copy)
    if kind is None:
        envelope = type(copy) is dict and _is_envelope(copy)
        return SessionTurn(
            turn_id=new_turn_id(),
            role=NEUTRAL_ROLE,
            content="[encrypted item]" if envelope else "[item]",
            timestamp=now,
            metadata={**kept, ITEM_TYPE_KEY: ENCRYPTED_KIND if envelope else OPAQUE_KIND},
        )
    metadata: dict[str, Any] = {**kept, ITEM_TYPE_KEY: kind}
    call_id = copy.get("call_id")
    if isinstance(call_id, str):
        metadata[CALL_ID_KEY] = call_id
    return SessionTurn(
        turn_id=new_turn_id(),
        role=item_role(copy, kind),
        content=item_text(copy, kind),
        timestamp=now,
        tool_calls=_tool_calls(copy, kind),
        metadata=metadata,
    )


def turn_to_item(turn: SessionTurn) -> Any:
    """The SDK item a turn stands for.

    A turn written by the adapter gives back its stored item exactly. A turn written
    by other code (``manager.add_message``, a group session, ...) is handed over as a
    plain message ``{"role": ..., "content": ...}``; roles the SDK does not know for
    messages (e.g. ``tool``) become ``assistant``.
    """
    metadata = turn.metadata
    if ITEM_KEY in metadata:
        return metadata[ITEM_KEY]
    text = metadata.get(ITEM_JSON_KEY)
    if isinstance(text, str):
        return json.loads(text)
    role = turn.role if turn.role in _MESSAGE_ROLES else "assistant"
    return {"role": role, "content": turn.content}


def turns_to_items(turns: list[SessionTurn]) -> list[Any]:
    """:func:`turn_to_item` of each turn, in order (the read path of ``get_items``)."""
    missing = _MISSING
    items = [turn.metadata.get(ITEM_KEY, missing) for turn in turns]
    if missing in items:  # some turns were written by other code
        return [
            turn_to_item(turn) if item is missing else item
            for item, turn in zip(items, turns, strict=True)
        ]
    return items
