"""JSON encoding of turns and session headers shared by every durable store.

JSON only (orjson), never pickle. Encoding a value that JSON cannot hold raises
:class:`SessionValidationError` naming the field; decoding a stored record that
does not match the schema raises :class:`CorruptRecordError` naming the record
and the field.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from itertools import repeat
from operator import attrgetter, itemgetter, setitem
from typing import Any

import orjson
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from lexigram.ai.session.exceptions import CorruptRecordError, SessionValidationError
from lexigram.ai.session.stores.gc_pause import paused_gc

__all__ = [
    "EPOCH",
    "HEADER_JSON_FIELDS",
    "build_state",
    "build_turn",
    "state_with",
    "decode_turn_document",
    "fast_turn",
    "from_epoch_us",
    "to_epoch_us",
    "decode_header_fields",
    "decode_turn",
    "dumps",
    "encode_header_fields",
    "encode_turn",
    "loads",
    "turn_from_dict",
    "turn_to_dict",
    "turns_from_array",
    "turns_from_documents",
    "turns_from_texts",
    "validate_turn",
]

_OPTS = orjson.OPT_NON_STR_KEYS

#: Header fields that hold JSON containers.
HEADER_JSON_FIELDS = ("metadata", "active_tools", "active_skills", "variables")


class _TurnModel(BaseModel):
    """Schema a turn must satisfy, on the way in and on the way out of a store."""

    model_config = ConfigDict(extra="forbid", strict=False)

    turn_id: str
    role: str
    content: str
    timestamp: datetime
    tool_calls: list[dict[str, Any]] = []
    skill_results: list[dict[str, Any]] = []
    metadata: dict[str, Any] = {}
    tokens_used: int = 0
    cost: float = 0.0
    model: str | None = None
    provider: str | None = None

    @field_validator("turn_id", "role")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a non-empty string")
        return value

    @field_validator("tokens_used", "cost")
    @classmethod
    def _not_negative(cls, value: float) -> float:
        if value < 0 or value != value:
            raise ValueError("must be >= 0")
        return value

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def dumps(value: Any, *, field: str) -> bytes:
    """Encode ``value`` as JSON, naming ``field`` when it cannot be encoded."""
    try:
        return orjson.dumps(value, option=_OPTS)
    except TypeError as exc:
        raise SessionValidationError(field, f"value cannot be stored as JSON: {exc}") from exc


def loads(raw: bytes | str, *, record: str) -> Any:
    """Decode JSON ``raw``, naming ``record`` when it is not valid JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CorruptRecordError(record, f"invalid JSON: {exc}") from exc


def validate_turn(turn: Any) -> SessionTurn:
    """Check a turn handed in by a caller; return it with a timezone-aware timestamp.

    Raises :class:`SessionValidationError` naming the first offending field.
    """
    if not isinstance(turn, SessionTurn):
        raise SessionValidationError("turn", f"expected a SessionTurn, got {type(turn).__name__}")
    data = {name: getattr(turn, name) for name in _TurnModel.model_fields}
    try:
        model = _TurnModel.model_validate(data, strict=True)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise SessionValidationError(f"turn.{loc}", err["msg"]) from exc
    for name in ("tool_calls", "skill_results", "metadata"):
        dumps(getattr(turn, name), field=f"turn.{name}")
    if model.timestamp is not turn.timestamp:
        return replace(turn, timestamp=model.timestamp)
    return turn


def turn_to_dict(turn: SessionTurn) -> dict[str, Any]:
    """A JSON-ready dict of ``turn`` (timestamp as ISO-8601)."""
    return {
        "turn_id": turn.turn_id,
        "role": turn.role,
        "content": turn.content,
        "timestamp": turn.timestamp.isoformat(),
        "tool_calls": turn.tool_calls,
        "skill_results": turn.skill_results,
        "metadata": turn.metadata,
        "tokens_used": turn.tokens_used,
        "cost": turn.cost,
        "model": turn.model,
        "provider": turn.provider,
    }


def turn_from_dict(data: Any, *, record: str) -> SessionTurn:
    """Rebuild a turn from its stored dict; a mismatch raises ``CorruptRecordError``."""
    try:
        model = _TurnModel.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "turn"
        raise CorruptRecordError(record, f"field {loc}: {err['msg']}") from exc
    return SessionTurn(
        turn_id=model.turn_id,
        role=model.role,
        content=model.content,
        timestamp=model.timestamp,
        tool_calls=model.tool_calls,
        skill_results=model.skill_results,
        metadata=model.metadata,
        tokens_used=model.tokens_used,
        cost=model.cost,
        model=model.model,
        provider=model.provider,
    )


def encode_turn(turn: SessionTurn) -> bytes:
    """Encode one turn as JSON bytes."""
    return dumps(turn_to_dict(turn), field="turn")


def decode_turn(raw: bytes | str, *, record: str) -> SessionTurn:
    """Decode one turn from JSON bytes; ``record`` names it in errors."""
    return turn_from_dict(loads(raw, record=record), record=record)


def encode_header_fields(state: SessionState) -> dict[str, bytes]:
    """The JSON container fields of a session header, each encoded on its own."""
    return {name: dumps(getattr(state, name), field=f"state.{name}") for name in HEADER_JSON_FIELDS}


class _HeaderModel(BaseModel):
    model_config = ConfigDict(extra="ignore")

    session_id: str
    user_id: str
    status: SessionStatus
    metadata: dict[str, Any] = {}
    active_tools: list[str] = []
    active_skills: list[str] = []
    system_prompt: str | None = None
    variables: dict[str, Any] = {}
    created_at: datetime
    updated_at: datetime
    checkpoint_id: str | None = None
    total_tokens: int = 0
    total_cost: float = 0.0
    turn_count: int = 0
    parent_session_id: str | None = None
    branch_name: str | None = None


def decode_header_fields(data: dict[str, Any], *, record: str) -> SessionState:
    """Build a header-only :class:`SessionState` (no turns) from decoded stored fields."""
    try:
        model = _HeaderModel.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "header"
        raise CorruptRecordError(record, f"field {loc}: {err['msg']}") from exc
    return SessionState(
        session_id=model.session_id,
        user_id=model.user_id,
        status=model.status,
        turns=[],
        metadata=model.metadata,
        active_tools=model.active_tools,
        active_skills=model.active_skills,
        system_prompt=model.system_prompt,
        variables=model.variables,
        created_at=_aware(model.created_at),
        updated_at=_aware(model.updated_at),
        checkpoint_id=model.checkpoint_id,
        total_tokens=model.total_tokens,
        total_cost=model.total_cost,
        turn_count=model.turn_count,
        parent_session_id=model.parent_session_id,
        branch_name=model.branch_name,
    )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


# ------------------------------------------------------------------ fast paths
# Stores read turns by the thousand (get_state of a long session). Every stored turn
# was validated field by field on its way in, so the read path only checks the
# structure that damage would break, and builds the turn by installing the decoded
# dict as the instance's ``__dict__`` (several times cheaper than ``__init__``).
# Anything that fails the checks goes through ``turn_from_dict``, which raises
# ``CorruptRecordError`` naming the record and the field.

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_TURN_FIELDS = tuple(f.name for f in fields(SessionTurn))
_TURN_KEYS = frozenset(_TURN_FIELDS)
_FIELD_COUNT = len(_TURN_FIELDS)
_CAN_INSTALL_DICT = (
    tuple(_TurnModel.model_fields) == _TURN_FIELDS
    and not hasattr(SessionTurn, "__slots__")
    and not hasattr(SessionTurn, "__post_init__")
)
_new = object.__new__
_set_attr = object.__setattr__
_from_iso = datetime.fromisoformat


def to_epoch_us(value: datetime) -> int:
    """``value`` as integer microseconds since the epoch (a naive value counts as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // _US


def from_epoch_us(value: int) -> datetime:
    """The UTC datetime ``value`` microseconds after the epoch."""
    # Positional (days, seconds, microseconds): a third cheaper than the keyword form.
    return EPOCH + timedelta(0, 0, value)


def fast_turn(data: Any) -> SessionTurn | None:
    """A turn from its decoded stored document when the structure is intact, else None.

    Checks what damage would break: a JSON object with exactly the turn's fields,
    text content and an ISO-8601 timestamp with an offset (every field was validated
    when the turn was written). Takes ownership of ``data`` (its timestamp becomes a
    datetime). None means "decode it with :func:`turn_from_dict`", which names what
    is wrong.
    """
    if not (_CAN_INSTALL_DICT and type(data) is dict and data.keys() == _TURN_KEYS):
        return None
    try:
        stamp = _from_iso(data["timestamp"])
    except (TypeError, ValueError):
        return None
    if stamp.tzinfo is None or type(data["content"]) is not str:
        return None
    data["timestamp"] = stamp
    turn = _new(SessionTurn)
    _set_attr(turn, "__dict__", data)
    return turn


_dict_len = dict.__len__
_get_stamp = itemgetter("timestamp")
_get_content = itemgetter("content")
_get_tz = attrgetter("tzinfo")
_FIELD_COUNT_ONLY = {_FIELD_COUNT}
# The instance-dict slot's own setter: what ``object.__setattr__(turn, "__dict__", d)``
# calls after looking the name up along the class's MRO (a third cheaper per turn).
_DICT_SLOT = next((vars(c)["__dict__"] for c in SessionTurn.__mro__ if "__dict__" in vars(c)), None)
_install_dict = _DICT_SLOT.__set__ if _CAN_INSTALL_DICT and _DICT_SLOT is not None else None


def turns_from_documents(docs: list[Any]) -> list[SessionTurn] | None:
    """Turns from decoded stored documents when every one is intact, else None.

    The checks of :func:`fast_turn`, each done for the whole list in one C-level pass
    (a few times cheaper per turn than a Python loop): every document is a JSON object
    with exactly the turn's fields, text content and an ISO-8601 timestamp with an
    offset. On success takes ownership of ``docs`` (their timestamps become datetimes);
    on None nothing was changed, and the caller decodes them one by one to name what
    is wrong.
    """
    if not docs:
        return []
    if _install_dict is None:
        return None
    try:
        # Each has exactly 11 keys and together they have only the turn's 11: so each
        # has exactly the turn's fields.
        if set(map(_dict_len, docs)) != _FIELD_COUNT_ONLY or set().union(*docs) != _TURN_KEYS:
            return None
        stamps = list(map(_from_iso, map(_get_stamp, docs)))
    except (TypeError, ValueError):  # not a dict, or a timestamp that is not ISO text
        return None
    if None in map(_get_tz, stamps) or not all(
        map(isinstance, map(_get_content, docs), repeat(str))
    ):
        return None
    deque(map(setitem, docs, repeat("timestamp"), stamps), 0)
    turns: list[SessionTurn] = list(map(_new, repeat(SessionTurn, len(docs))))
    deque(map(_install_dict, turns, docs), 0)
    return turns


def turns_from_texts(texts: Sequence[Any]) -> list[SessionTurn] | None:
    """Turns from their stored JSON texts (all ``str`` or all ``bytes``) when all are intact.

    Parses them as one JSON array (one orjson call instead of one per turn), see
    :func:`turns_from_array`. None means "decode them one by one", which names the
    damaged record and field.
    """
    if not texts:
        return []
    try:
        if type(texts[0]) is str:
            array: str | bytes = "[" + ",".join(texts) + "]"
        else:
            array = b"[" + b",".join(texts) + b"]"
    except TypeError:  # a text of another type
        return None
    return turns_from_array(array, len(texts))


def turns_from_array(array: str | bytes, count: int) -> list[SessionTurn] | None:
    """Turns from one JSON array of ``count`` stored turn texts joined with commas.

    The array has ``count`` elements only when each text is one JSON value: a damaged
    text cannot hide in it unless another damaged text completes it exactly, and
    every element must still pass :func:`turns_from_documents`. None when anything
    fails (the caller then decodes the rows one by one to name what is wrong). The
    garbage collector is paused while a long session is built (:mod:`.gc_pause`).
    """
    with paused_gc(count):
        return _turns_from_array(array, count)


def _turns_from_array(array: str | bytes, count: int) -> list[SessionTurn] | None:
    try:
        docs = orjson.loads(array)
    except (TypeError, ValueError):  # not JSON text
        return None
    if type(docs) is not list or len(docs) != count:
        return None
    return turns_from_documents(docs)


def build_turn(values: dict[str, Any]) -> SessionTurn:
    """A :class:`SessionTurn` of already checked field values (every field, in order).

    Installs ``values`` as the instance's ``__dict__`` (several times cheaper than
    the frozen dataclass's ``__init__``); falls back to ``__init__`` when the class
    does not allow it. Takes ownership of ``values``.
    """
    if _CAN_INSTALL_DICT and tuple(values) == _TURN_FIELDS:
        turn = _new(SessionTurn)
        _set_attr(turn, "__dict__", values)
        return turn
    return SessionTurn(**values)


_STATE_KEYS = tuple(f.name for f in fields(SessionState))
_CAN_INSTALL_STATE_DICT = not hasattr(SessionState, "__slots__") and not hasattr(
    SessionState, "__post_init__"
)


def build_state(values: dict[str, Any]) -> SessionState:
    """A :class:`SessionState` of already checked field values (every field, in order).

    Installs ``values`` as the instance's ``__dict__`` (a frozen dataclass's
    ``__init__`` sets each of its 17 fields through ``object.__setattr__``, several
    times slower); falls back to ``__init__`` when the class does not allow it.
    Takes ownership of ``values``.
    """
    if _CAN_INSTALL_STATE_DICT and tuple(values) == _STATE_KEYS:
        state = _new(SessionState)
        _set_attr(state, "__dict__", values)
        return state
    return SessionState(**values)


def state_with(state: SessionState, **changes: Any) -> SessionState:
    """``dataclasses.replace(state, **changes)`` for checked values, without ``__init__``.

    A subclass of :class:`SessionState` goes through ``dataclasses.replace``.
    """
    if type(state) is not SessionState:
        return replace(state, **changes)
    values = state.__dict__.copy()
    values.update(changes)
    return build_state(values)


def decode_turn_document(data: Any, *, record: str) -> SessionTurn:
    """A turn from its decoded stored document: fast when intact, else fully checked."""
    return fast_turn(data) or turn_from_dict(data, record=record)
