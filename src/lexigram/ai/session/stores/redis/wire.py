"""How session headers, turns and times are written to and read from Redis.

Turns are stored as the JSON document :func:`encode_turn` produces (the same shape
as ``stores.codec.encode_turn``: orjson, never pickle). Headers are Redis hashes of
short field names to strings; their JSON containers (metadata, variables, tools,
skills) are encoded one field each. Times are integer microseconds since the epoch
so that Lua scripts can compare deadlines exactly.

Reading is on the hot path (``get_state`` of a long session), so turns are rebuilt
with a fast path that checks the shape of each document and falls back to the
pydantic schema of ``stores.codec`` (which names the bad field) on any doubt.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.exceptions import CorruptRecordError, SessionValidationError
from lexigram.ai.session.stores import codec
from lexigram.ai.session.stores._common import effective_status
from lexigram.ai.session.stores.base import SessionRecord

__all__ = [
    "EPOCH",
    "decode_header",
    "decode_turns",
    "encode_header",
    "encode_turn",
    "from_us",
    "header_record",
    "to_us",
]

EPOCH = codec.EPOCH
_TURN_OPTS = orjson.OPT_NON_STR_KEYS | orjson.OPT_NAIVE_UTC
_STATUSES = {s.value: s for s in SessionStatus}
_EMPTY_JSON: dict[type, str] = {dict: "{}", list: "[]"}


to_us = codec.to_epoch_us
from_us = codec.from_epoch_us


# ------------------------------------------------------------------------ turns
def encode_turn(turn: Any) -> bytes:
    """One turn as JSON bytes; a value JSON cannot hold raises ``SessionValidationError``."""
    if not isinstance(turn, SessionTurn):
        raise SessionValidationError("turn", f"expected a SessionTurn, got {type(turn).__name__}")
    try:
        return orjson.dumps(turn, option=_TURN_OPTS)
    except TypeError:
        # Name the offending field (validate_turn checks each one), else say "turn".
        codec.validate_turn(turn)
        return codec.encode_turn(turn)


def decode_turns(items: list[Any], *, record: str) -> list[SessionTurn]:
    """Rebuild turns from their decoded JSON documents (fresh objects every call)."""
    decode = codec.decode_turn_document
    return [decode(data, record=record) for data in items]


# ---------------------------------------------------------------------- headers
def _text(name: str, value: Any, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or (not optional and not value):
        raise SessionValidationError(f"state.{name}", f"expected a non-empty string, got {value!r}")
    return value


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SessionValidationError(f"state.{name}", f"expected an integer >= 0, got {value!r}")
    return value


def _when(name: str, value: Any) -> int:
    if not isinstance(value, datetime):
        raise SessionValidationError(f"state.{name}", f"expected a datetime, got {value!r}")
    return to_us(value)


def encode_header(
    state: SessionState,
    *,
    expires_at: datetime | None,
    last_seq: int,
    fork_seq: int | None = None,
    ordinal: int | None = None,
) -> dict[str, bytes | str]:
    """The hash fields of ``state``'s header (turns excluded); bad values name the field."""
    try:
        status = SessionStatus(state.status)
    except ValueError:
        raise SessionValidationError("state.status", f"unknown status {state.status!r}") from None
    cost = state.total_cost
    if isinstance(cost, bool) or not isinstance(cost, int | float) or cost != cost or cost < 0:
        raise SessionValidationError("state.total_cost", f"expected a number >= 0, got {cost!r}")
    fields: dict[str, bytes | str] = {
        "id": _text("session_id", state.session_id) or "",
        "u": _text("user_id", state.user_id) or "",
        "s": status.value,
        "ca": str(_when("created_at", state.created_at)),
        "ua": str(_when("updated_at", state.updated_at)),
        "tt": str(_int("total_tokens", state.total_tokens)),
        "tc": repr(float(cost)),
        "n": str(_int("turn_count", state.turn_count)),
        "ls": str(last_seq),
    }
    for name, key in (
        ("metadata", "m"),
        ("active_tools", "ta"),
        ("active_skills", "sk"),
        ("variables", "v"),
    ):
        value = getattr(state, name)
        kind = dict if name in ("metadata", "variables") else list
        if not isinstance(value, kind):
            raise SessionValidationError(
                f"state.{name}", f"expected a {kind.__name__}, got {value!r}"
            )
        fields[key] = codec.dumps(value, field=f"state.{name}")
    for name, key in (
        ("system_prompt", "sp"),
        ("checkpoint_id", "cp"),
        ("parent_session_id", "ps"),
        ("branch_name", "bn"),
    ):
        text = _text(name, getattr(state, name), optional=True)
        if text is not None:
            fields[key] = text
    if expires_at is not None:
        fields["ex"] = str(to_us(expires_at))
    if fork_seq is not None:
        fields["fs"] = str(fork_seq)
    if ordinal is not None:
        fields["o"] = str(ordinal)
    return fields


class _Corrupt(Exception):
    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem


def _req(data: Mapping[str, Any], key: str, name: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise _Corrupt(name, "missing" if value is None else f"not a string: {value!r}")
    return value


def _req_id(data: Mapping[str, Any], key: str, name: str) -> str:
    """A required id field: a string that is not empty (no store writes a blank id)."""
    value = _req(data, key, name)
    if not value:
        raise _Corrupt(name, "empty")
    return value


def _opt(data: Mapping[str, Any], key: str, name: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise _Corrupt(name, f"not a string: {value!r}")
    return value


def _num(data: Mapping[str, Any], key: str, name: str, *, default: str | None = None) -> int:
    raw = data.get(key, default)
    # isascii: "²" is a digit to isdigit() and no number to int() (a bare ValueError
    # broke the whole listing; a regression audit)
    if not isinstance(raw, str) or not raw.isascii() or not raw.isdigit():
        raise _Corrupt(name, "missing" if raw is None else f"not an integer >= 0: {raw!r}")
    return int(raw)


def _json(
    data: Mapping[str, Any], key: str, name: str, kind: type[dict[str, Any] | list[Any]]
) -> Any:
    raw = data.get(key)
    if raw is None or raw == _EMPTY_JSON[kind]:
        return kind()  # the usual value, without a parse
    try:
        value = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise _Corrupt(name, f"invalid JSON: {exc}") from None
    if type(value) is not kind:
        raise _Corrupt(name, f"expected a JSON {'object' if kind is dict else 'array'}")
    if kind is list and not all(type(v) is str for v in value):
        raise _Corrupt(name, "expected a list of strings")
    return value


def _instant(data: Mapping[str, Any], key: str, field: str) -> datetime:
    """The stored microsecond count ``data[key]`` as a datetime; out of range is damage."""
    try:
        return from_us(_num(data, key, field))
    except OverflowError:
        raise _Corrupt(field, "out of range") from None


def decode_header(data: Mapping[str, Any], *, record: str) -> tuple[SessionState, int | None]:
    """The header-only state stored in ``data`` (as stored) and its deadline in µs.

    Raises :class:`CorruptRecordError` naming ``record`` and the bad field.
    """
    try:
        status = _STATUSES.get(_req(data, "s", "status"))
        if status is None:
            raise _Corrupt("status", f"unknown status {data.get('s')!r}")
        raw_cost = _req(data, "tc", "total_cost")
        try:
            cost = float(raw_cost)
        except ValueError:
            raise _Corrupt("total_cost", f"not a number: {raw_cost!r}") from None
        if cost - cost != 0.0:
            raise _Corrupt("total_cost", f"not a finite number: {raw_cost!r}")
        if cost < 0:  # as the SQL stores (costs are >= 0)
            raise _Corrupt("total_cost", f"not a number >= 0: {raw_cost!r}")
        state = codec.build_state(
            {
                "session_id": _req_id(data, "id", "session_id"),
                "user_id": _req_id(data, "u", "user_id"),
                "status": status,
                "turns": [],
                "metadata": _json(data, "m", "metadata", dict),
                "active_tools": _json(data, "ta", "active_tools", list),
                "active_skills": _json(data, "sk", "active_skills", list),
                "system_prompt": _opt(data, "sp", "system_prompt"),
                "variables": _json(data, "v", "variables", dict),
                "created_at": _instant(data, "ca", "created_at"),
                "updated_at": _instant(data, "ua", "updated_at"),
                "checkpoint_id": _opt(data, "cp", "checkpoint_id"),
                "total_tokens": _num(data, "tt", "total_tokens"),
                "total_cost": cost,
                "turn_count": _num(data, "n", "turn_count"),
                "parent_session_id": _opt(data, "ps", "parent_session_id"),
                "branch_name": _opt(data, "bn", "branch_name"),
            }
        )
        expires = _num(data, "ex", "expires_at") if data.get("ex") is not None else None
        if expires is not None:
            _instant(data, "ex", "expires_at")
    except _Corrupt as bad:
        raise CorruptRecordError(record, f"field {bad.field}: {bad.problem}") from None
    return state, expires


def header_record(data: Mapping[str, Any], *, record: str, now: datetime) -> SessionRecord:
    """A :class:`SessionRecord` from a stored header, status made effective at ``now``."""
    state, expires_us = decode_header(data, record=record)
    expires_at = None if expires_us is None else from_us(expires_us)
    status = effective_status(state.status, expires_at, now)
    if status is not state.status:
        state = _with_status(state, status)
    try:
        fork_seq = _num(data, "fs", "fork_seq") if data.get("fs") is not None else None
        last_seq = _num(data, "ls", "last_seq", default="0")
    except _Corrupt as bad:
        raise CorruptRecordError(record, f"field {bad.field}: {bad.problem}") from None
    return SessionRecord(state=state, expires_at=expires_at, fork_seq=fork_seq, last_seq=last_seq)


def _with_status(state: SessionState, status: SessionStatus) -> SessionState:
    from dataclasses import replace

    return replace(state, status=status)
