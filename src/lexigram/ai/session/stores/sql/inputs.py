"""Checks and encodings of what callers hand the SQL store, before any I/O."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lexigram.contracts.ai.session import SessionState, SessionTurn

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.stores.base import SessionPatch
from lexigram.ai.session.stores.codec import dumps
from lexigram.ai.session.stores.sql.rows import encode_prompt, turn_params
from lexigram.ai.session.validation import (
    MAX_ID_LENGTH,
    check_id,
    check_json,
    check_names,
    check_optional_text,
    check_patch_type,
    check_state,
    check_totals,
    check_turn,
    check_turns,
)

_INF = float("inf")

__all__ = [
    "batch_totals",
    "checked_id",
    "checked_state",
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


def turn_rows(session_id: str, turns: Sequence[SessionTurn]) -> list[dict[str, Any]]:
    """Checked, encoded ``turns`` rows (``seq`` set later by the script).

    Errors name ``turns[i].<field>``.
    """
    rows = []
    for index, checked in enumerate(check_turns(turns, "turns")):
        field = f"turns[{index}]"
        try:
            rows.append(turn_params(session_id, 0, checked))
        except SessionValidationError as exc:
            check_turn(checked, field)  # names the exact field when the rules refuse it
            raise SessionValidationError(f"{field}.{exc.field.removeprefix('turn.')}",
                                         exc.problem) from None
    return rows


def batch_totals(turns: Sequence[SessionTurn]) -> tuple[int, float]:
    """The tokens and cost a checked batch adds, refused when they cannot be stored.

    Each turn was checked alone; their sums must also fit (``total_tokens``,
    ``total_cost``) before anything is written.
    """
    tokens = 0
    cost = 0.0
    for turn in turns:
        tokens += turn.tokens_used
        cost += turn.cost
    check_totals(tokens, cost)
    return tokens, cost


def checked_id(value: Any, field: str) -> str:
    """An id argument (``session_id``, ``user_id``, ``checkpoint_id``), or refused."""
    if type(value) is str and 0 < len(value) <= MAX_ID_LENGTH and value.isascii() and (
        value.isprintable() and not value.isspace()
    ):
        return value
    return check_id(value, field)


def checked_state(state: Any, field: str = "state") -> SessionState:
    """A whole session handed to the store (create, save, a branch), or refused."""
    return check_state(state, field)


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
    """The bound parameters of a header patch (None = column unchanged); fields checked."""
    check_patch_type(patch)
    def enc(value: Any, name: str) -> str | None:
        if value is None:
            return None
        if name in ("active_tools", "active_skills"):
            check_names(value, name)
        else:
            check_json(value, name)
        return dumps(value, field=name).decode()

    check_optional_text(patch.system_prompt, "system_prompt")
    prompt_set = patch.system_prompt is not None or patch.clear_system_prompt
    return {
        "p_metadata": enc(patch.metadata, "metadata"),
        "p_active_tools": enc(patch.active_tools, "active_tools"),
        "p_active_skills": enc(patch.active_skills, "active_skills"),
        "p_variables": enc(patch.variables, "variables"),
        "p_prompt_set": 1 if prompt_set else 0,
        "p_prompt": encode_prompt(patch.system_prompt),
    }
