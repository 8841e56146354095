"""The JSON export format of sessions, and its reader.

One document holds any number of sessions::

    {
      "format": "lexigram-ai-session/export",
      "version": 1,
      "exported_at": "2026-01-01T12:00:00+00:00",
      "sessions": [
        {
          "header": {"session_id": ..., "user_id": ..., "status": "active", ...},
          "turns": [{"turn_id": ..., "role": ..., "content": ..., "timestamp": ...}, ...],
          "checkpoints": [
            {"checkpoint_id": ..., "created_at": ..., "parent_checkpoint_id": ...,
             "metadata": {...}, "header": {...}, "turns": [...]}
          ]
        }
      ]
    }

``header`` is every ``SessionState`` field but ``turns`` (datetimes ISO-8601);
a checkpoint carries its own header and the turns it restores to, so a document
restores without the store it came from. Reading validates everything and names
the offending place (``sessions[0].turns[3]: field timestamp: ...``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from lexigram.contracts.ai.session import SessionCheckpoint, SessionState

from lexigram.ai.session.exceptions import CorruptRecordError, SessionValidationError
from lexigram.ai.session.stores.codec import (
    decode_header_fields,
    dumps,
    loads,
    turn_from_dict,
    turn_to_dict,
)

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "ExportedSession",
    "dump_document",
    "header_to_dict",
    "parse_document",
    "session_to_dict",
]

EXPORT_FORMAT = "lexigram-ai-session/export"
EXPORT_VERSION = 1

_HEADER_FIELDS = tuple(f.name for f in fields(SessionState) if f.name != "turns")


@dataclass(frozen=True)
class ExportedSession:
    """One session of a document: full state (with turns) and its checkpoints."""

    state: SessionState
    checkpoints: list[SessionCheckpoint] = field(default_factory=list)


def header_to_dict(state: SessionState) -> dict[str, Any]:
    """Every field of ``state`` but ``turns``, JSON-ready."""
    data: dict[str, Any] = {}
    for name in _HEADER_FIELDS:
        value = getattr(state, name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif hasattr(value, "value"):  # SessionStatus
            value = value.value
        data[name] = value
    return data


def session_to_dict(state: SessionState, checkpoints: list[SessionCheckpoint]) -> dict[str, Any]:
    """The document entry of one session (``state`` with its turns)."""
    return {
        "header": header_to_dict(state),
        "turns": [turn_to_dict(t) for t in state.turns],
        "checkpoints": [
            {
                "checkpoint_id": cp.checkpoint_id,
                "created_at": cp.created_at.isoformat(),
                "parent_checkpoint_id": cp.parent_checkpoint_id,
                "metadata": cp.metadata,
                "header": header_to_dict(cp.state),
                "turns": [turn_to_dict(t) for t in cp.state.turns],
            }
            for cp in checkpoints
        ],
    }


def dump_document(entries: list[dict[str, Any]], *, indent: bool = True) -> bytes:
    """The JSON bytes of a document holding ``entries`` (from :func:`session_to_dict`)."""
    import orjson

    doc = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "exported_at": datetime.now(UTC).isoformat(),
        "sessions": entries,
    }
    dumps(doc, field="document")  # names a field that cannot be encoded
    option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_INDENT_2 if indent else 0)
    return orjson.dumps(doc, option=option) + b"\n"


def _problem(where: str, exc: Exception) -> SessionValidationError:
    detail = exc.problem if isinstance(exc, CorruptRecordError) else str(exc)
    return SessionValidationError(where, detail)


def _header(data: Any, where: str) -> SessionState:
    if not isinstance(data, dict):
        raise SessionValidationError(where, "expected an object")
    try:
        return decode_header_fields(data, record=where)
    except CorruptRecordError as exc:
        raise _problem(where, exc) from exc


def _turns(data: Any, where: str) -> list[Any]:
    if not isinstance(data, list):
        raise SessionValidationError(where, "expected a list of turns")
    turns = []
    for j, item in enumerate(data):
        try:
            turns.append(turn_from_dict(item, record=f"{where}[{j}]"))
        except CorruptRecordError as exc:
            raise _problem(f"{where}[{j}]", exc) from exc
    return turns


def _time(value: Any, where: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise SessionValidationError(where, f"expected an ISO-8601 time, got {value!r}") from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _entry(data: Any, where: str) -> ExportedSession:
    if not isinstance(data, dict):
        raise SessionValidationError(where, "expected an object")
    header = _header(data.get("header"), f"{where}.header")
    turns = _turns(data.get("turns", []), f"{where}.turns")
    state = SessionState(**{**{n: getattr(header, n) for n in _HEADER_FIELDS}, "turns": turns})
    raw_cps = data.get("checkpoints", [])
    if not isinstance(raw_cps, list):
        raise SessionValidationError(f"{where}.checkpoints", "expected a list")
    checkpoints = []
    for k, cp in enumerate(raw_cps):
        at = f"{where}.checkpoints[{k}]"
        if not isinstance(cp, dict):
            raise SessionValidationError(at, "expected an object")
        cp_id = cp.get("checkpoint_id")
        if not isinstance(cp_id, str) or not cp_id:
            raise SessionValidationError(f"{at}.checkpoint_id", "must be a non-empty string")
        parent = cp.get("parent_checkpoint_id")
        if parent is not None and not isinstance(parent, str):
            raise SessionValidationError(f"{at}.parent_checkpoint_id", "must be a string or null")
        metadata = cp.get("metadata", {})
        if not isinstance(metadata, dict):
            raise SessionValidationError(f"{at}.metadata", "expected an object")
        cp_header = _header(cp.get("header"), f"{at}.header")
        if cp_header.session_id != state.session_id:
            raise SessionValidationError(
                f"{at}.header.session_id", "does not match the session it belongs to"
            )
        cp_turns = _turns(cp.get("turns", []), f"{at}.turns")
        checkpoints.append(
            SessionCheckpoint(
                checkpoint_id=cp_id,
                session_id=state.session_id,
                state=SessionState(
                    **{**{n: getattr(cp_header, n) for n in _HEADER_FIELDS}, "turns": cp_turns}
                ),
                created_at=_time(cp.get("created_at"), f"{at}.created_at"),
                parent_checkpoint_id=parent,
                metadata=metadata,
            )
        )
    return ExportedSession(state=state, checkpoints=checkpoints)


def parse_document(raw: bytes | str) -> list[ExportedSession]:
    """Validate an export document and rebuild its sessions; errors name the place."""
    try:
        doc = loads(raw, record="document")
    except CorruptRecordError as exc:
        raise _problem("document", exc) from exc
    if not isinstance(doc, dict):
        raise SessionValidationError("document", "expected a JSON object")
    if doc.get("format") != EXPORT_FORMAT:
        raise SessionValidationError(
            "format", f"expected {EXPORT_FORMAT!r}, got {doc.get('format')!r}"
        )
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version > EXPORT_VERSION:
        raise SessionValidationError(
            "version", f"unsupported version {version!r} (this release reads {EXPORT_VERSION})"
        )
    sessions = doc.get("sessions")
    if not isinstance(sessions, list):
        raise SessionValidationError("sessions", "expected a list")
    entries = [_entry(item, f"sessions[{i}]") for i, item in enumerate(sessions)]
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if entry.state.session_id in seen:
            raise SessionValidationError(
                f"sessions[{i}].header.session_id",
                f"session {entry.state.session_id!r} appears twice",
            )
        seen.add(entry.state.session_id)
    return entries
