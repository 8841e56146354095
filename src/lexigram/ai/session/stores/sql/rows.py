"""Rows ↔ contract objects: turns, session headers and checkpoint snapshots.

Encoding goes through :mod:`lexigram.ai.session.stores.codec` (JSON via orjson; a
value that cannot be stored raises ``SessionValidationError`` naming the field).
Decoding is the hot path of ``get_state``: each column is type-checked directly and
only a row that fails a check goes through the pydantic models of the codec, which
then raise ``CorruptRecordError`` naming the session and the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.exceptions import CorruptRecordError, SessionValidationError
from lexigram.ai.session.stores._common import effective_status
from lexigram.ai.session.stores.base import SessionRecord, TurnRange
from lexigram.ai.session.stores.codec import (
    HEADER_JSON_FIELDS,
    build_state,
    decode_header_fields,
    dumps,
    fast_turn,
    from_epoch_us,
    to_epoch_us,
    turn_from_dict,
    turn_to_dict,
    turns_from_documents,
    turns_from_texts,
)

__all__ = [
    "HEADER_COLUMNS",
    "TURN_COLUMNS",
    "TURN_FIELDS",
    "encode_turn_json",
    "encode_prompt",
    "from_us",
    "header_from_json",
    "header_params",
    "header_to_json",
    "record_from_row",
    "to_us",
    "turn_from_row",
    "turns_from_rows",
    "turn_params",
    "turns_from_json",
    "turns_to_json",
    "status_of_row",
    "user_of_row",
]

_EMPTY_LIST = "[]"
_EMPTY_DICT = "{}"

#: Columns of ``sessions`` read into a :class:`SessionRecord`, in this order.
HEADER_COLUMNS = (
    "session_id",
    "user_id",
    "status",
    "metadata",
    "active_tools",
    "active_skills",
    "system_prompt",
    "variables",
    "created_at",
    "updated_at",
    "checkpoint_id",
    "total_tokens",
    "total_cost",
    "turn_count",
    "parent_session_id",
    "branch_name",
    "expires_at",
    "fork_seq",
    "last_seq",
    "ordinal",
)
#: Columns of ``turns`` written per turn besides ``session_id``, ``seq`` and ``live``.
TURN_COLUMNS = ("turn_id", "tokens_used", "cost", "data")
#: The fields of a stored turn's JSON object (exactly those of ``SessionTurn``).
TURN_FIELDS = (
    "turn_id",
    "role",
    "content",
    "timestamp",
    "tool_calls",
    "skill_results",
    "metadata",
    "tokens_used",
    "cost",
    "model",
    "provider",
)

_STATUSES = {s.value: s for s in SessionStatus}


to_us = to_epoch_us
from_us = from_epoch_us


# ---------------------------------------------------------------------- turns
def turn_params(session_id: str, seq: int, turn: SessionTurn) -> dict[str, Any]:
    """The bound parameters of one ``turns`` row; a value JSON cannot hold is named."""
    return {
        "session_id": session_id,
        "seq": seq,
        "turn_id": turn.turn_id,
        "tokens_used": turn.tokens_used,
        "cost": float(turn.cost),
        "data": encode_turn_json(turn).decode(),
    }


def encode_turn_json(turn: SessionTurn) -> bytes:
    """The turn as one JSON object; ``SessionValidationError`` names a field JSON cannot hold."""
    data = turn_to_dict(turn)
    try:
        return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        for name in ("content", "tool_calls", "skill_results", "metadata", "role", "turn_id"):
            dumps(data[name], field=f"turn.{name}")
        raise SessionValidationError("turn", "cannot be stored as JSON") from None


def encode_prompt(value: str | None) -> str | None:
    """A system prompt as stored: a JSON string (NUL-safe on PostgreSQL), or NULL."""
    return None if value is None else dumps(value, field="system_prompt").decode()


def turn_from_row(row: Sequence[Any], session_id: str) -> SessionTurn:
    """Build a turn from a ``(seq, data)`` row."""
    return turns_from_rows([row], session_id)[0]


def turns_from_rows(rows: Sequence[Sequence[Any]], session_id: str) -> list[SessionTurn]:
    """Turns from ``(seq, data)`` rows, or ``(data,)`` rows (the loop of ``get_state``).

    Every row was validated field by field when it was written, so the read checks
    what damage would break: the text is a JSON object (orjson) with exactly the
    eleven fields and an ISO-8601 timestamp with an offset. All rows are parsed and
    checked together (:func:`codec.turns_from_texts`); when any check fails they are
    decoded one by one, and the damaged one goes through the codec's schema, which
    raises ``CorruptRecordError`` naming the session, the turn (``seq``, or its
    position for ``(data,)`` rows) and the field.
    """
    turns = turns_from_texts([row[-1] for row in rows])
    if turns is not None:
        return turns
    out: list[SessionTurn] = []
    append = out.append
    loads = orjson.loads
    for position, row in enumerate(rows, start=1):
        raw = row[-1]
        try:
            turn = fast_turn(loads(raw))
        except (ValueError, TypeError):  # not JSON text: the checked path names it
            turn = None
        if turn is None:
            seq = row[0] if len(row) > 1 else f"#{position}"
            turn = _checked_turn(seq, raw, session_id)
        append(turn)
    return out


def _checked_turn(seq: Any, raw: Any, session_id: str) -> SessionTurn:
    """Decode a row that failed the structural checks: check every field."""
    where = f"session {session_id!r} turn at seq {seq!r}"
    if not isinstance(raw, str | bytes):
        raise CorruptRecordError(where, "field data: not JSON text")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CorruptRecordError(where, f"field data: invalid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise CorruptRecordError(where, "field data: expected a JSON object")
    missing = [name for name in TURN_FIELDS if name not in data]
    if missing:
        raise CorruptRecordError(where, f"field {missing[0]}: missing")
    return turn_from_dict(data, record=f"session {session_id!r} turn {data['turn_id']!r}")


def turns_to_json(turns: Sequence[SessionTurn]) -> str:
    """Turns as one JSON array (checkpoints saved whole)."""
    return dumps([turn_to_dict(t) for t in turns], field="checkpoint.state.turns").decode()


def turns_from_json(raw: str, record: str) -> list[SessionTurn]:
    """The inverse of :func:`turns_to_json`; ``record`` names the checkpoint in errors."""
    data = _loads(raw, record, "inline_turns")
    if not isinstance(data, list):
        raise CorruptRecordError(record, "field inline_turns: expected a JSON array")
    # Decoded as live turns are (any ISO offset, datetime.timezone); one by one only to
    # name what is damaged.
    fast = turns_from_documents(data)
    if fast is not None:
        return fast
    return [turn_from_dict(item, record=f"{record} turn #{i}") for i, item in enumerate(data)]


# --------------------------------------------------------------------- headers
def header_params(state: SessionState) -> dict[str, Any]:
    """The bound parameters of the header columns of ``state`` (JSON fields named)."""
    params: dict[str, Any] = {
        "session_id": state.session_id,
        "user_id": state.user_id,
        "status": SessionStatus(state.status).value,
        "system_prompt": encode_prompt(state.system_prompt),
        "created_at": to_us(state.created_at),
        "updated_at": to_us(state.updated_at),
        "checkpoint_id": state.checkpoint_id,
        "total_tokens": state.total_tokens,
        "total_cost": float(state.total_cost),
        "turn_count": state.turn_count,
        "parent_session_id": state.parent_session_id,
        "branch_name": state.branch_name,
    }
    for name in HEADER_JSON_FIELDS:
        params[name] = dumps(getattr(state, name), field=f"state.{name}").decode()
    return params


_STATUS_AT = HEADER_COLUMNS.index("status")
_USER_AT = HEADER_COLUMNS.index("user_id")
_EXPIRES_AT = HEADER_COLUMNS.index("expires_at")


def status_of_row(row: Sequence[Any], now_us: int) -> SessionStatus | None:
    """The effective status of a header row from its status and deadline columns alone.

    None when the status column holds no status. The other columns are not read, so a
    session whose JSON fields are damaged still answers (``save`` replaces such a
    record, as on Redis).
    """
    status = _STATUSES.get(row[_STATUS_AT])
    expires = row[_EXPIRES_AT]
    if status is not None and type(expires) is int and expires <= now_us:
        return effective_status(status, from_us(expires), from_us(now_us))
    return status


def user_of_row(row: Sequence[Any]) -> Any:
    """The ``user_id`` column of a header row (not decoded further)."""
    return row[_USER_AT]


def record_from_row(row: Sequence[Any], now_us: int) -> SessionRecord:
    """A :class:`SessionRecord` from a row of :data:`HEADER_COLUMNS` (effective status).

    ``CorruptRecordError`` for a damaged row, a timestamp out of range included.
    """
    try:
        return _record_from_row(row, now_us)
    except OverflowError:  # a stored microsecond count past year 9999
        raise CorruptRecordError(
            f"session {row[0]!r}", "a timestamp is out of range"
        ) from None


def _record_from_row(row: Sequence[Any], now_us: int) -> SessionRecord:
    (
        session_id,
        user_id,
        status,
        metadata,
        tools,
        skills,
        prompt,
        variables,
        created,
        updated,
        checkpoint_id,
        tokens,
        cost,
        count,
        parent,
        branch,
        expires,
        fork_seq,
        last_seq,
        _ordinal,
    ) = row[:20]
    stored = _STATUSES.get(status)
    record = f"session {session_id!r}"
    meta = _loads(metadata, record, "metadata")
    tool_list = _loads(tools, record, "active_tools")
    skill_list = _loads(skills, record, "active_skills")
    var_map = _loads(variables, record, "variables")
    if prompt is not None:
        prompt = _loads(prompt, record, "system_prompt")
    if type(cost) is int:
        cost = float(cost)
    if not (
        stored is not None
        and type(user_id) is str
        and type(meta) is dict
        and type(var_map) is dict
        and type(tool_list) is list
        and type(skill_list) is list
        and all(type(t) is str for t in tool_list)
        and all(type(s) is str for s in skill_list)
        and (prompt is None or type(prompt) is str)
        and type(created) is int
        and type(updated) is int
        and type(tokens) is int
        and tokens >= 0
        and type(cost) is float
        and cost >= 0.0  # False for NaN too
        and cost - cost == 0.0  # finite (NaN and infinities are damage)
        and type(count) is int
        and count >= 0
        and (expires is None or type(expires) is int)
        and (fork_seq is None or type(fork_seq) is int)
        and type(last_seq) is int
    ):
        return _slow_record(row, now_us)
    expires_at = None if expires is None else from_us(expires)
    effective = stored
    if expires is not None and expires <= now_us:
        effective = effective_status(stored, expires_at, from_us(now_us))
    # Every value is checked above: the state is built without __init__ (build_state).
    state = build_state(
        {
            "session_id": session_id,
            "user_id": user_id,
            "status": effective,
            "turns": [],
            "metadata": meta,
            "active_tools": tool_list,
            "active_skills": skill_list,
            "system_prompt": prompt,
            "variables": var_map,
            "created_at": from_us(created),
            "updated_at": from_us(updated),
            "checkpoint_id": checkpoint_id,
            "total_tokens": tokens,
            "total_cost": cost,
            "turn_count": count,
            "parent_session_id": parent,
            "branch_name": branch,
        }
    )
    return SessionRecord(state=state, expires_at=expires_at, fork_seq=fork_seq, last_seq=last_seq)


def _slow_record(row: Sequence[Any], now_us: int) -> SessionRecord:
    """Validate a header row through the codec schema; raise naming the bad field."""
    data = dict(zip(HEADER_COLUMNS, row, strict=False))
    session_id = data["session_id"]
    record = f"session {session_id!r}"
    for name in HEADER_JSON_FIELDS:
        data[name] = _loads(data[name], record, name)
    if data["system_prompt"] is not None:
        data["system_prompt"] = _loads(data["system_prompt"], record, "system_prompt")
    for name in ("created_at", "updated_at"):
        if type(data[name]) is not int:
            raise CorruptRecordError(record, f"field {name}: expected integer microseconds")
        data[name] = from_us(data[name])
    for name in ("expires_at", "fork_seq", "last_seq"):
        value = data[name]
        if value is not None and type(value) is not int:
            raise CorruptRecordError(record, f"field {name}: expected an integer")
    if data["last_seq"] is None:
        raise CorruptRecordError(record, "field last_seq: missing")
    for name in ("total_tokens", "turn_count"):  # as Redis names them
        value = data[name]
        if type(value) is int and value < 0:
            raise CorruptRecordError(record, f"field {name}: not an integer >= 0: {value!r}")
    cost = data["total_cost"]
    if type(cost) in (int, float) and cost < 0:
        raise CorruptRecordError(record, f"field total_cost: not a number >= 0: {cost!r}")
    state = decode_header_fields(data, record=record)
    if state.total_cost - state.total_cost != 0.0:
        raise CorruptRecordError(record, "field total_cost: not a finite number")
    expires = data["expires_at"]
    expires_at = None if expires is None else from_us(expires)
    status = effective_status(state.status, expires_at, from_us(now_us))
    if status != state.status:
        state = _with_status(state, status)
    return SessionRecord(
        state=state, expires_at=expires_at, fork_seq=data["fork_seq"], last_seq=data["last_seq"]
    )


def _with_status(state: SessionState, status: SessionStatus) -> SessionState:
    from dataclasses import replace

    return replace(state, status=status)


def _loads(raw: Any, record: str, field: str) -> Any:
    if raw == _EMPTY_DICT:
        return {}
    if raw == _EMPTY_LIST:
        return []
    if not isinstance(raw, str | bytes):
        raise CorruptRecordError(record, f"field {field}: not JSON text")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CorruptRecordError(record, f"field {field}: invalid JSON: {exc}") from exc


# ----------------------------------------------------------------- checkpoints
def header_to_json(state: SessionState) -> str:
    """A header snapshot (no turns) as JSON text, for a checkpoint row."""
    data: dict[str, Any] = {
        "session_id": state.session_id,
        "user_id": state.user_id,
        "status": SessionStatus(state.status).value,
        "metadata": state.metadata,
        "active_tools": state.active_tools,
        "active_skills": state.active_skills,
        "system_prompt": state.system_prompt,
        "variables": state.variables,
        "created_at": to_us(state.created_at),
        "updated_at": to_us(state.updated_at),
        "checkpoint_id": state.checkpoint_id,
        "total_tokens": state.total_tokens,
        "total_cost": float(state.total_cost),
        "turn_count": state.turn_count,
        "parent_session_id": state.parent_session_id,
        "branch_name": state.branch_name,
    }
    return dumps(data, field="checkpoint.state").decode()


def header_from_json(raw: str, record: str) -> SessionState:
    """The inverse of :func:`header_to_json`; ``record`` names the checkpoint in errors."""
    data = _loads(raw, record, "header")
    if not isinstance(data, dict):
        raise CorruptRecordError(record, "field header: expected a JSON object")
    for name in ("created_at", "updated_at"):
        if type(data.get(name)) is not int:
            raise CorruptRecordError(record, f"field header.{name}: expected integer microseconds")
        data[name] = from_us(data[name])
    return decode_header_fields(data, record=record)


def ranges_to_json(ranges: Sequence[TurnRange]) -> str:
    """Turn ranges as JSON text."""
    return orjson.dumps([list(r) for r in ranges]).decode()


def ranges_from_json(raw: str, record: str) -> list[TurnRange]:
    """The inverse of :func:`ranges_to_json`."""
    data = _loads(raw, record, "ranges")
    if not isinstance(data, list) or not all(
        isinstance(r, list) and len(r) == 2 and all(type(x) is int for x in r) for r in data
    ):
        raise CorruptRecordError(record, "field ranges: expected [[first, last], ...]")
    return [(int(r[0]), int(r[1])) for r in data]
