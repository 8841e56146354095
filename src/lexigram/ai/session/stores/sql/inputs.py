"""Checks and encodings of what callers hand the SQL store, before any I/O."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from lexigram.contracts.ai.session import SessionState, SessionTurn

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.stores.base import SessionPatch
from lexigram.ai.session.stores.codec import dumps, validate_turn
from lexigram.ai.session.stores.sql.rows import encode_prompt, turn_params

__all__ = [
    "checked_turn",
    "first_repeat",
    "nul_fields_of",
    "patch_params",
    "refuse_nul",
    "turn_rows",
]


def first_repeat(turns: Sequence[SessionTurn]) -> str | None:
    """The first turn id that a batch repeats, or None."""
    seen: set[str] = set()
    for turn in turns:
        if turn.turn_id in seen:
            return turn.turn_id
        seen.add(turn.turn_id)
    return None


def checked_turn(turn: Any) -> SessionTurn:
    """``turn`` when its fields have the right types (cheap); else the codec names the field."""
    if (
        type(turn) is SessionTurn
        and type(turn.tool_calls) is list
        and type(turn.skill_results) is list
        and type(turn.metadata) is dict
        and all(type(c) is dict for c in turn.tool_calls)
        and all(type(c) is dict for c in turn.skill_results)
        and all(type(k) is str for k in turn.metadata)
        and type(turn.turn_id) is str
        and turn.turn_id.strip()
        and type(turn.role) is str
        and turn.role.strip()
        and type(turn.content) is str
        and isinstance(turn.timestamp, datetime)
        and turn.timestamp.tzinfo is not None
        and type(turn.tokens_used) is int
        and turn.tokens_used >= 0
        and type(turn.cost) in (float, int)
        and turn.cost >= 0
        and (turn.model is None or type(turn.model) is str)
        and (turn.provider is None or type(turn.provider) is str)
    ):
        return turn
    return validate_turn(turn)


def turn_rows(session_id: str, turns: Sequence[SessionTurn]) -> list[dict[str, Any]]:
    """Checked, encoded ``turns`` rows (``seq`` set later by the script)."""
    return [turn_params(session_id, 0, checked_turn(t)) for t in turns]


_NUL = "\x00"
_TURN_TEXT = ("turn_id",)
_HEADER_TEXT = ("session_id", "user_id", "checkpoint_id", "parent_session_id", "branch_name")


def refuse_nul(values: Sequence[tuple[str, str | None]]) -> None:
    """PostgreSQL ``text`` cannot hold NUL: refuse it up front, naming the field."""
    for field, value in values:
        if value is not None and _NUL in value:
            raise SessionValidationError(
                field, "contains the NUL character, which PostgreSQL text cannot store"
            )


def nul_fields_of(
    state: SessionState | None, turns: Sequence[SessionTurn]
) -> list[tuple[str, str | None]]:
    """The id-like text fields of a header and of turns, named, for :func:`refuse_nul`."""
    found: list[tuple[str, str | None]] = []
    if state is not None:
        found.extend((f"state.{n}", getattr(state, n)) for n in _HEADER_TEXT)
    for turn in turns:
        found.extend((f"turn.{n}", getattr(turn, n, None)) for n in _TURN_TEXT)
    return found


def patch_params(patch: SessionPatch) -> dict[str, Any]:
    """The bound parameters of a header patch (None = column unchanged)."""
    def enc(value: Any, name: str) -> str | None:
        return None if value is None else dumps(value, field=name).decode()

    prompt_set = patch.system_prompt is not None or patch.clear_system_prompt
    return {
        "p_metadata": enc(patch.metadata, "metadata"),
        "p_active_tools": enc(patch.active_tools, "active_tools"),
        "p_active_skills": enc(patch.active_skills, "active_skills"),
        "p_variables": enc(patch.variables, "variables"),
        "p_prompt_set": 1 if prompt_set else 0,
        "p_prompt": encode_prompt(patch.system_prompt),
    }
