"""Strict decoding of one session entry of an export document.

Every value is checked with the same rules the stores apply to a caller's input
(:mod:`lexigram.ai.session.validation`): ids, text without lone surrogates, JSON
values, token counts in ``0..2**53-1`` and finite non-negative costs. JSON types are
taken as they are (a token count written as ``"5"`` or ``5.0`` is refused, not
converted), unknown fields are refused, and turn ids may not repeat within a
session's turns or within a checkpoint's turns. Each error is a
:class:`SessionValidationError` naming the place (``sessions[0].turns[3].cost``).

The counters of a header (``turn_count``, ``total_tokens``, ``total_cost``) are
type-checked, then recomputed from the turns, so that an imported session's totals
always equal the sums over its live turns. A checkpoint's header names its session's
id and user (``...checkpoints[k].header.session_id`` / ``.user_id`` otherwise). A
branch's optional ``fork_seq`` (how many of its first turns it inherited) is an
integer in ``0..len(turns)``, given only with a ``parent_session_id``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any

from lexigram.contracts.ai.session import (
    SessionCheckpoint,
    SessionState,
    SessionStatus,
    SessionTurn,
)

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.validation import (
    check_cost,
    check_id,
    check_json,
    check_names,
    check_optional_id,
    check_optional_text,
    check_tokens,
    check_totals,
    check_turn,
)

__all__ = ["HEADER_FIELDS", "ExportedSession", "read_entry"]

#: Every ``SessionState`` field but ``turns``: the keys of an exported header.
HEADER_FIELDS = tuple(f.name for f in fields(SessionState) if f.name != "turns")

_HEADER_KEYS = frozenset(HEADER_FIELDS)
_TURN_KEYS = frozenset(f.name for f in fields(SessionTurn))
_TURN_REQUIRED = ("turn_id", "role", "content", "timestamp")
_HEADER_REQUIRED = ("session_id", "user_id", "status", "created_at", "updated_at")
_ENTRY_KEYS = frozenset({"header", "fork_seq", "turns", "checkpoints"})
_CHECKPOINT_KEYS = frozenset(
    {"checkpoint_id", "created_at", "parent_checkpoint_id", "metadata", "header", "turns"}
)


@dataclass(frozen=True)
class ExportedSession:
    """One session of a document: full state (with turns) and its checkpoints.

    ``fork_seq``: for a branch, how many of the first ``state.turns`` it inherited
    from its parent (its fork point); None when the document gives none.
    """

    state: SessionState
    checkpoints: list[SessionCheckpoint] = field(default_factory=list)
    fork_seq: int | None = None


def _object(data: Any, where: str, allowed: frozenset[str]) -> dict[str, Any]:
    """``data`` when it is a JSON object holding only ``allowed`` keys."""
    if not isinstance(data, dict):
        raise SessionValidationError(where, "expected an object")
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise SessionValidationError(f"{where}.{unknown[0]}", "unknown field")
    return data


def _required(data: dict[str, Any], names: tuple[str, ...], where: str) -> None:
    for name in names:
        if name not in data:
            raise SessionValidationError(f"{where}.{name}", "is missing")


#: The earliest instant every backend stores in a header or a checkpoint (microseconds
#: since the epoch, >= 0 on Redis): the import refuses earlier ones before writing. (A
#: live session's deadline past year 9999 is refused against the target store's
#: ``session_ttl``, see :mod:`.importing`.)
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


def _time(value: Any, where: str, *, stored: bool = False) -> datetime:
    """An ISO-8601 time (naive: UTC); ``stored``: a header's or checkpoint's instant,
    which must lie in the range every backend stores."""
    if not isinstance(value, str):
        raise SessionValidationError(where, f"expected an ISO-8601 time, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise SessionValidationError(where, f"expected an ISO-8601 time, got {value!r}") from exc
    parsed = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    if not stored:
        return parsed
    try:
        parsed.astimezone(UTC)  # stores keep a header's instants in UTC
    except OverflowError:
        problem = "past year 9999 in UTC" if parsed.year > 1970 else "before 1970-01-01T00:00:00Z"
        raise SessionValidationError(
            where, f"{value!r} is {problem}, which no backend stores"
        ) from None
    if parsed < _EARLIEST:
        raise SessionValidationError(
            where, f"{value!r} is before 1970-01-01T00:00:00Z, which not every backend stores"
        )
    return parsed


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SessionValidationError(where, f"expected an object, got {type(value).__name__}")
    check_json(value, where)
    return value


def _turn(data: Any, where: str) -> SessionTurn:
    item = _object(data, where, _TURN_KEYS)
    _required(item, _TURN_REQUIRED, where)
    turn = SessionTurn(
        turn_id=item["turn_id"],
        role=item["role"],
        content=item["content"],
        timestamp=_time(item["timestamp"], f"{where}.timestamp"),
        tool_calls=item.get("tool_calls", []),
        skill_results=item.get("skill_results", []),
        metadata=item.get("metadata", {}),
        tokens_used=item.get("tokens_used", 0),
        cost=item.get("cost", 0.0),
        model=item.get("model"),
        provider=item.get("provider"),
    )
    turn = check_turn(turn, where)
    cost = check_cost(turn.cost, f"{where}.cost")
    return turn if type(turn.cost) is float else replace(turn, cost=cost)


def _turns(data: Any, where: str) -> list[SessionTurn]:
    if not isinstance(data, list):
        raise SessionValidationError(where, "expected a list of turns")
    turns: list[SessionTurn] = []
    seen: dict[str, int] = {}
    for j, item in enumerate(data):
        turn = _turn(item, f"{where}[{j}]")
        first = seen.setdefault(turn.turn_id, j)
        if first != j:
            raise SessionValidationError(
                f"{where}[{j}].turn_id", f"turn id {turn.turn_id!r} repeats {where}[{first}]"
            )
        turns.append(turn)
    return turns


def _status(value: Any, where: str) -> SessionStatus:
    try:
        return SessionStatus(value)
    except ValueError:
        known = ", ".join(s.value for s in SessionStatus)
        raise SessionValidationError(where, f"unknown status {value!r}; one of {known}") from None


def _state(data: Any, turns: list[SessionTurn], where: str) -> SessionState:
    """The state of a header and its turns, counters recomputed from the turns."""
    header = _object(data, where, _HEADER_KEYS)
    _required(header, _HEADER_REQUIRED, where)
    at = f"{where}."
    check_tokens(header.get("total_tokens", 0), f"{at}total_tokens")
    check_cost(header.get("total_cost", 0.0), f"{at}total_cost")
    count = header.get("turn_count", 0)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise SessionValidationError(f"{at}turn_count", f"expected an integer >= 0, got {count!r}")
    tokens = 0
    cost = 0.0
    for turn in turns:
        tokens += turn.tokens_used
        cost += turn.cost
    check_totals(tokens, cost, prefix=at)
    return SessionState(
        session_id=check_id(header["session_id"], f"{at}session_id"),
        user_id=check_id(header["user_id"], f"{at}user_id"),
        status=_status(header["status"], f"{at}status"),
        turns=turns,
        metadata=_dict(header.get("metadata", {}), f"{at}metadata"),
        active_tools=check_names(_list(header.get("active_tools", []), f"{at}active_tools"),
                                 f"{at}active_tools"),
        active_skills=check_names(_list(header.get("active_skills", []), f"{at}active_skills"),
                                  f"{at}active_skills"),
        system_prompt=check_optional_text(header.get("system_prompt"), f"{at}system_prompt"),
        variables=_dict(header.get("variables", {}), f"{at}variables"),
        created_at=_time(header["created_at"], f"{at}created_at", stored=True),
        updated_at=_time(header["updated_at"], f"{at}updated_at", stored=True),
        checkpoint_id=check_optional_id(header.get("checkpoint_id"), f"{at}checkpoint_id"),
        total_tokens=tokens,
        total_cost=cost,
        turn_count=len(turns),
        parent_session_id=check_optional_id(
            header.get("parent_session_id"), f"{at}parent_session_id"
        ),
        branch_name=check_optional_id(header.get("branch_name"), f"{at}branch_name"),
    )


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise SessionValidationError(where, f"expected a list, got {type(value).__name__}")
    return value


def _checkpoint(data: Any, owner: SessionState, where: str) -> SessionCheckpoint:
    """The checkpoint at ``where`` of the session ``owner`` (its header names that very
    session and user: a checkpoint is never stored under another user's id)."""
    session_id = owner.session_id
    item = _object(data, where, _CHECKPOINT_KEYS)
    _required(item, ("checkpoint_id", "created_at", "header"), where)
    state = _state(item["header"], _turns(item.get("turns", []), f"{where}.turns"),
                   f"{where}.header")
    if state.session_id != session_id:
        raise SessionValidationError(
            f"{where}.header.session_id", "does not match the session it belongs to"
        )
    if state.user_id != owner.user_id:
        raise SessionValidationError(
            f"{where}.header.user_id",
            f"{state.user_id!r} does not match the user of the session it belongs to "
            f"({owner.user_id!r})",
        )
    return SessionCheckpoint(
        checkpoint_id=check_id(item["checkpoint_id"], f"{where}.checkpoint_id"),
        session_id=session_id,
        state=state,
        created_at=_time(item["created_at"], f"{where}.created_at", stored=True),
        parent_checkpoint_id=check_optional_id(
            item.get("parent_checkpoint_id"), f"{where}.parent_checkpoint_id"
        ),
        metadata=_dict(item.get("metadata", {}), f"{where}.metadata"),
    )


def read_entry(data: Any, where: str) -> ExportedSession:
    """Decode and check the document entry at ``where`` (e.g. ``sessions[0]``)."""
    entry = _object(data, where, _ENTRY_KEYS)
    _required(entry, ("header",), where)
    state = _state(entry["header"], _turns(entry.get("turns", []), f"{where}.turns"),
                   f"{where}.header")
    fork_seq = _fork_seq(entry.get("fork_seq"), state, f"{where}.fork_seq")
    raw_cps = _list(entry.get("checkpoints", []), f"{where}.checkpoints")
    checkpoints = [
        _checkpoint(cp, state, f"{where}.checkpoints[{k}]")
        for k, cp in enumerate(raw_cps)
    ]
    return ExportedSession(state=state, checkpoints=checkpoints, fork_seq=fork_seq)


def _fork_seq(value: Any, state: SessionState, where: str) -> int | None:
    """A branch's fork point: how many of its first turns it inherited (absent or null:
    none, as in documents of earlier releases)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SessionValidationError(where, f"expected an integer, got {value!r}")
    if state.parent_session_id is None:
        raise SessionValidationError(
            where, "only a branch (a header with parent_session_id) has a fork point"
        )
    if not 0 <= value <= len(state.turns):
        raise SessionValidationError(
            where,
            f"must be in 0..{len(state.turns)} (the number of the session's turns), "
            f"got {value}",
        )
    return value
