"""``StateDiff``: the difference between two session states, and its application.

``StateDiff.apply(old, StateDiff.compute(old, new)) == new`` for any two states.
Turns are compared as a log: the diff keeps the longest common prefix of turns and
lists the turns that follow it in ``new``, so appending K turns gives a diff of K
turns whatever the history's length.
"""

from __future__ import annotations

import copy
from dataclasses import fields, replace
from typing import Any

from lexigram.contracts.ai.session import SessionState

from lexigram.ai.session.exceptions import SessionValidationError

__all__ = ["StateDiff"]

_SCALAR_FIELDS = tuple(f.name for f in fields(SessionState) if f.name != "turns")


class StateDiff:
    """Computes and applies diffs between :class:`SessionState` values."""

    @staticmethod
    def compute(old: SessionState, new: SessionState) -> dict[str, Any]:
        """The diff turning ``old`` into ``new``.

        Shape: ``{"fields": {name: value, ...}, "turns": {"keep": n, "append": [...]}}``
        where ``keep`` is how many leading turns of ``old`` stay.
        """
        changed = {
            name: copy.deepcopy(getattr(new, name))
            for name in _SCALAR_FIELDS
            if getattr(old, name) != getattr(new, name)
            or type(getattr(old, name)) is not type(getattr(new, name))
        }
        keep = 0
        for a, b in zip(old.turns, new.turns, strict=False):
            if a != b:
                break
            keep += 1
        return {
            "fields": changed,
            "turns": {"keep": keep, "append": copy.deepcopy(new.turns[keep:])},
        }

    @staticmethod
    def apply(base: SessionState, diff: dict[str, Any]) -> SessionState:
        """``base`` with ``diff`` applied (a new state; ``base`` is not changed)."""
        try:
            changed: dict[str, Any] = diff["fields"]
            keep: int = diff["turns"]["keep"]
            appended = diff["turns"]["append"]
        except (KeyError, TypeError) as exc:
            raise SessionValidationError("diff", f"not a StateDiff: missing {exc}") from exc
        unknown = set(changed) - set(_SCALAR_FIELDS)
        if unknown:
            raise SessionValidationError("diff.fields", f"unknown field(s) {sorted(unknown)}")
        if not 0 <= keep <= len(base.turns):
            raise SessionValidationError(
                "diff.turns.keep", f"{keep} is outside the base's {len(base.turns)} turns"
            )
        turns = copy.deepcopy(base.turns[:keep]) + copy.deepcopy(list(appended))
        return replace(
            base,
            turns=turns,
            **{name: copy.deepcopy(value) for name, value in changed.items()},
        )
