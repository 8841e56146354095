"""The JSON export format of sessions, and its reader.

One document holds any number of sessions::

    {
      "format": "lexigram-ai-session/export",
      "version": 1,
      "exported_at": "2026-01-01T12:00:00+00:00",
      "sessions": [
        {
          "header": {"session_id": ..., "user_id": ..., "status": "active", ...},
          "fork_seq": 2,
          "turns": [{"turn_id": ..., "role": ..., "content": ..., "timestamp": ...}, ...],
          "checkpoints": [
            {"checkpoint_id": ..., "created_at": ..., "parent_checkpoint_id": ...,
             "metadata": {...}, "header": {...}, "turns": [...]}
          ]
        }
      ]
    }

``header`` is every ``SessionState`` field but ``turns`` (datetimes ISO-8601);
a checkpoint carries its own header (naming the same session and user) and the
turns it restores to, so a document restores without the store it came from.

``fork_seq`` is written for a branch only (a header with ``parent_session_id`` that
was forked, or imported with one): how many of the entry's first ``turns`` the
branch inherited from its parent. The turns after them are the branch's own, the
ones a merge appends to the parent; the import stores the branch with that fork
point (``SessionStore.create_session(..., fork_seq=)``). It is optional: documents
of earlier releases have none and import as before (the branch then has no fork
point, and a merge takes all of its turns), and an earlier release refuses a
document that has one as an unknown field. A target store whose backend does not
take ``fork_seq`` (written for an earlier store contract) refuses such a document
before writing anything, naming the branch.

Reading validates the whole document before anything is written and names the
offending place (``sessions[0].turns[3].timestamp: expected an ISO-8601 time, ...``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from lexigram.contracts.ai.session import SessionCheckpoint, SessionState

from lexigram.ai.session.cli.reader import HEADER_FIELDS, ExportedSession, read_entry
from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.manager.privacy import branch_fork_point as fork_point
from lexigram.ai.session.stores.codec import dumps, turn_to_dict

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "ExportedSession",
    "checkpoint_references",
    "dump_document",
    "fork_point",
    "header_to_dict",
    "parse_document",
    "session_to_dict",
    "write_document",
]

EXPORT_FORMAT = "lexigram-ai-session/export"
EXPORT_VERSION = 1

_DOCUMENT_KEYS = frozenset({"format", "version", "exported_at", "sessions"})


def header_to_dict(state: SessionState) -> dict[str, Any]:
    """Every field of ``state`` but ``turns``, JSON-ready."""
    data: dict[str, Any] = {}
    for name in HEADER_FIELDS:
        value = getattr(state, name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif hasattr(value, "value"):  # SessionStatus
            value = value.value
        data[name] = value
    return data


def session_to_dict(
    state: SessionState,
    checkpoints: list[SessionCheckpoint],
    *,
    fork_seq: int | None = None,
) -> dict[str, Any]:
    """The document entry of one session (``state`` with its turns).

    ``fork_seq``: for a branch, how many of the first ``state.turns`` it inherited
    (:func:`fork_point` reads it from the store); written only when given.
    """
    entry: dict[str, Any] = {"header": header_to_dict(state)}
    if fork_seq is not None:
        entry["fork_seq"] = fork_seq
    return entry | {
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


def parse_document(raw: bytes | str) -> list[ExportedSession]:
    """Validate a whole export document and rebuild its sessions; errors name the place.

    Besides each entry (see :mod:`.reader`): a session id appears once, a checkpoint
    id appears once in the whole document, and no checkpoint reference (a header's
    ``checkpoint_id``, a checkpoint's ``parent_checkpoint_id``) names a checkpoint
    the document gives to another session.
    """
    doc = _decode(raw)
    if not isinstance(doc, dict):
        raise SessionValidationError("document", "expected a JSON object")
    if doc.get("format") != EXPORT_FORMAT:
        raise SessionValidationError(
            "format", f"expected {EXPORT_FORMAT!r}, got {doc.get('format')!r}"
        )
    version = doc.get("version")
    if type(version) is not int or not 1 <= version <= EXPORT_VERSION:
        raise SessionValidationError(
            "version", f"unsupported version {version!r} (this release reads {EXPORT_VERSION})"
        )
    unknown = sorted(str(k) for k in doc if k not in _DOCUMENT_KEYS)
    if unknown:
        raise SessionValidationError(unknown[0], "unknown field")
    exported_at = doc.get("exported_at")
    if exported_at is not None and not isinstance(exported_at, str):
        raise SessionValidationError("exported_at", "expected an ISO-8601 time string")
    sessions = doc.get("sessions")
    if not isinstance(sessions, list):
        raise SessionValidationError("sessions", "expected a list")
    entries = [read_entry(item, f"sessions[{i}]") for i, item in enumerate(sessions)]
    _check_unique(entries)
    return entries


def _decode(raw: bytes | str) -> Any:
    """The JSON value of ``raw``, numbers exact.

    The standard library keeps integers of any size exact (orjson turns those past
    64 bits into floats), and reads a lone surrogate escape (``"\\ud800"``) and
    ``NaN``, so that the field checks refuse them naming the exact place.
    """
    repeated: list[_Repeated] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(items)
        if len(obj) == len(items):
            return obj
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                break
            seen.add(key)
        marked = _Repeated(obj)
        marked.key = key
        repeated.append(marked)
        return marked

    try:
        doc = json.loads(raw, object_pairs_hook=pairs)
    except (ValueError, RecursionError) as exc:
        raise SessionValidationError("document", f"invalid JSON: {exc}") from exc
    if repeated:  # JSON's last-one-wins would drop the first value silently
        place = _repeated_place(doc, "") or repeated[0].key
        raise SessionValidationError(place, "appears twice in one object (a repeated key)")
    return doc


class _Repeated(dict[str, Any]):
    """A JSON object of the document that repeats a key (``key``, the first repeated)."""

    key: str


def _repeated_place(value: Any, path: str) -> str | None:
    """The place (``sessions[0].turns[1].content``) of the first repeated key under ``value``."""
    if isinstance(value, _Repeated):
        return f"{path}.{value.key}" if path else value.key
    if isinstance(value, dict):
        for key, item in value.items():
            found = _repeated_place(item, f"{path}.{key}" if path else key)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _repeated_place(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _check_unique(entries: list[ExportedSession]) -> None:
    """Session ids and checkpoint ids unique; checkpoint references within a session."""
    sessions: set[str] = set()
    owner: dict[str, str] = {}
    for i, entry in enumerate(entries):
        sid = entry.state.session_id
        if sid in sessions:
            raise SessionValidationError(
                f"sessions[{i}].header.session_id", f"session {sid!r} appears twice"
            )
        sessions.add(sid)
        for k, cp in enumerate(entry.checkpoints):
            if cp.checkpoint_id in owner:
                raise SessionValidationError(
                    f"sessions[{i}].checkpoints[{k}].checkpoint_id",
                    f"checkpoint {cp.checkpoint_id!r} appears twice",
                )
            owner[cp.checkpoint_id] = sid
    for i, entry in enumerate(entries):
        sid = entry.state.session_id
        for where, ref in checkpoint_references(entry, f"sessions[{i}]"):
            if owner.get(ref, sid) != sid:
                raise SessionValidationError(
                    where, f"names checkpoint {ref!r} of another session ({owner[ref]!r})"
                )


def checkpoint_references(entry: ExportedSession, where: str) -> list[tuple[str, str]]:
    """Every checkpoint id ``entry`` names, with its place: ids, parents, header links."""
    refs: list[tuple[str, str]] = []
    if entry.state.checkpoint_id is not None:
        refs.append((f"{where}.header.checkpoint_id", entry.state.checkpoint_id))
    for k, cp in enumerate(entry.checkpoints):
        at = f"{where}.checkpoints[{k}]"
        refs.append((f"{at}.checkpoint_id", cp.checkpoint_id))
        if cp.parent_checkpoint_id is not None:
            refs.append((f"{at}.parent_checkpoint_id", cp.parent_checkpoint_id))
        if cp.state.checkpoint_id is not None:
            refs.append((f"{at}.header.checkpoint_id", cp.state.checkpoint_id))
    return refs


def write_document(data: bytes, output: str | None, out: TextIO, err: TextIO, done: str) -> int:
    """Write an export to ``output`` (stdout for None or ``-``); 1 if the file cannot be written.

    ``done`` is the line reported on ``err`` after a file was written.
    """
    if output in (None, "-"):
        out.write(data.decode())
        return 0
    try:
        Path(output).write_bytes(data)
    except OSError as exc:
        err.write(f"error: cannot write {output}: {exc}\n")
        return 1
    err.write(done + "\n")
    return 0
