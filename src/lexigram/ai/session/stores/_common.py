"""Small pieces the store implementations share (status checks, copies, cursors)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import orjson
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.exceptions import (
    SessionCapacityError,
    SessionClosedError,
    SessionExpiredError,
    SessionTransitionError,
    SessionValidationError,
    TurnLimitReachedError,
)
from lexigram.ai.session.stores.base import LIVE_STATUSES, SessionPatch
from lexigram.ai.session.stores.codec import build_turn, state_with
from lexigram.ai.session.validation import check_batch_ids

__all__ = [
    "parse_cursor",
    "apply_patch",
    "check_append",
    "check_batch_ids",
    "copy_state",
    "copy_turn",
    "effective_status",
    "json_copy",
    "refuse_taken_checkpoint",
    "require_writable",
]


def refuse_taken_checkpoint(checkpoint_id: str, owner: str | None, session_id: str) -> None:
    """Refuse saving ``checkpoint_id`` for ``session_id`` when ``owner`` (another session)
    holds it: the other session would lose its checkpoint, and a restore by that id
    would restore this one (``save_checkpoint`` of the store contract)."""
    if owner is not None and owner != session_id:
        raise SessionValidationError(
            "checkpoint.checkpoint_id",
            f"checkpoint {checkpoint_id!r} belongs to session {owner!r}; "
            "give the copy a new checkpoint id",
        )


def effective_status(
    status: SessionStatus, expires_at: datetime | None, now: datetime
) -> SessionStatus:
    """EXPIRED for a live session whose deadline has passed, else ``status``."""
    if status in LIVE_STATUSES and expires_at is not None and expires_at <= now:
        return SessionStatus.EXPIRED
    return status


def require_writable(session_id: str, status: SessionStatus) -> None:
    """Raise the error a write to a session in ``status`` deserves (ACTIVE/SUSPENDED pass)."""
    if status == SessionStatus.CLOSED:
        raise SessionClosedError(session_id)
    if status == SessionStatus.EXPIRED:
        raise SessionExpiredError(session_id)


def check_append(
    session_id: str,
    status: SessionStatus,
    turn_count: int,
    batch: int,
    max_turns: int | None,
) -> None:
    """The status and cap checks of an append, in the order the store contract gives."""
    if max_turns is not None:
        if turn_count >= max_turns:
            raise TurnLimitReachedError(session_id, max_turns)
        if turn_count + batch > max_turns:
            raise SessionCapacityError(
                f"session {session_id!r}: {batch} turns would pass "
                f"max_turns_per_session={max_turns} ({turn_count} recorded)"
            )
    require_writable(session_id, status)
    if status == SessionStatus.SUSPENDED:
        raise SessionTransitionError(session_id, SessionStatus.SUSPENDED, SessionStatus.ACTIVE)


def json_copy(value: Any) -> Any:
    """A deep copy of a JSON value as the durable stores read it back (tuples as lists)."""
    # A JSON round trip copies faster than deepcopy and normalises values exactly as
    # the durable stores do (tuples become lists, non-string keys become strings).
    return orjson.loads(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))


def copy_turn(turn: SessionTurn) -> SessionTurn:
    """A plain :class:`SessionTurn` copy of ``turn`` sharing no mutable container with it."""
    return build_turn(
        {
            "turn_id": turn.turn_id,
            "role": turn.role,
            "content": turn.content,
            "timestamp": turn.timestamp,
            "tool_calls": json_copy(turn.tool_calls) if turn.tool_calls else [],
            "skill_results": json_copy(turn.skill_results) if turn.skill_results else [],
            "metadata": json_copy(turn.metadata) if turn.metadata else {},
            "tokens_used": turn.tokens_used,
            "cost": turn.cost,
            "model": turn.model,
            "provider": turn.provider,
        }
    )


def copy_state(state: SessionState, turns: list[SessionTurn] | None = None) -> SessionState:
    """A copy of ``state`` sharing no mutable container with it (``turns`` replaces the list).

    ``metadata`` and ``variables`` are copied through JSON, as the durable stores keep
    them (a tuple comes back as a list).
    """
    return state_with(
        state,
        turns=[copy_turn(t) for t in state.turns] if turns is None else turns,
        metadata=json_copy(state.metadata) if state.metadata else {},
        active_tools=list(state.active_tools),
        active_skills=list(state.active_skills),
        variables=json_copy(state.variables) if state.variables else {},
    )


def apply_patch(state: SessionState, patch: SessionPatch, now: datetime) -> SessionState:
    """The header after ``patch`` (containers copied), with ``updated_at`` = ``now``."""
    changes: dict[str, Any] = {"updated_at": now}
    if patch.variables is not None:
        changes["variables"] = json_copy(patch.variables)
    if patch.metadata is not None:
        changes["metadata"] = json_copy(patch.metadata)
    if patch.active_tools is not None:
        changes["active_tools"] = list(patch.active_tools)
    if patch.active_skills is not None:
        changes["active_skills"] = list(patch.active_skills)
    if patch.system_prompt is not None:
        changes["system_prompt"] = patch.system_prompt
    elif patch.clear_system_prompt:
        changes["system_prompt"] = None
    return state_with(state, **changes)


def branch_header(
    point: SessionState,
    branch: SessionState,
    source_id: str,
    *,
    turns: list[SessionTurn],
    turn_count: int,
    total_tokens: int,
    total_cost: float,
) -> SessionState:
    """A new branch's state: the fork point's fields under the branch's identity.

    ``point`` is the source header (or the checkpoint's) the branch starts from;
    ``branch`` carries the new id, owner, name and times chosen by the caller.
    """
    return replace(
        point,
        turns=turns,
        session_id=branch.session_id,
        user_id=branch.user_id,
        status=SessionStatus.ACTIVE,
        created_at=branch.created_at,
        updated_at=branch.updated_at,
        checkpoint_id=None,
        parent_session_id=branch.parent_session_id or source_id,
        branch_name=branch.branch_name,
        turn_count=turn_count,
        total_tokens=total_tokens,
        total_cost=total_cost,
    )


def parse_cursor(cursor: str | None) -> int | None:
    """The position a listing cursor names: a decimal integer in ``0..2**63-1``.

    Anything else (not a string of digits, negative, too large for a 64-bit column)
    is refused the same way on every backend, naming ``cursor``.
    """
    if cursor is None:
        return None
    text = cursor if isinstance(cursor, str) else None
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 19:
        raise SessionValidationError("cursor", f"not a cursor this store issued: {cursor!r}")
    value = int(text)
    if value > 2**63 - 1:
        raise SessionValidationError("cursor", f"not a cursor this store issued: {cursor!r}")
    return value
