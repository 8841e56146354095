"""``StateDiff``: the difference between two session states, and its application.

``StateDiff.apply(old, StateDiff.compute(old, new)) == new`` for any two states, and
the round trip is exact, not merely ``==``: values that compare equal but differ
(``1`` and ``1.0``, ``True`` and ``1``, the same instant in two time zones, a key
order) are carried over as they are in ``new``.

Turns are compared as a log: the diff keeps the longest common prefix of turns and
lists the turns that follow it in ``new``, so appending K turns gives a diff of K
turns whatever the history's length. A diff is a plain dict::

    {
        "base": {"session_id": ..., "turns": n},     # what it was computed against
        "fields": {name: value, ...},                 # header fields that changed
        "turns": {"keep": k, "append": [SessionTurn, ...]},
    }

``apply`` checks the shape and that the base matches (same session id and turn
count, when ``base`` is present) and raises :class:`SessionValidationError` naming the
offending part otherwise. Neither function mutates its inputs; the result shares no
mutable value with them.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import fields, is_dataclass, replace
from datetime import datetime
from typing import Any

from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.exceptions import SessionValidationError

__all__ = ["StateDiff"]

_SCALAR_FIELDS = tuple(f.name for f in fields(SessionState) if f.name != "turns")
_DIFF_KEYS = frozenset({"base", "fields", "turns"})


def _same(a: Any, b: Any) -> bool:
    """Equality that also tells apart values ``==`` confuses (types, time zones, order)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, datetime):
        return bool(a == b and a.tzinfo == b.tzinfo and a.fold == b.fold)
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            _same(ka, kb) and _same(va, vb)
            for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if is_dataclass(a) and not isinstance(a, type):
        return all(_same(getattr(a, f.name), getattr(b, f.name)) for f in fields(a))
    return bool(a == b)


class StateDiff:
    """Computes and applies diffs between :class:`SessionState` values."""

    @staticmethod
    def compute(old: SessionState, new: SessionState) -> dict[str, Any]:
        """The diff turning ``old`` into ``new`` (see the module docstring for its shape)."""
        for name, state in (("old", old), ("new", new)):
            if not isinstance(state, SessionState):
                raise SessionValidationError(
                    name, f"expected a SessionState, got {type(state).__name__}"
                )
        changed = {
            name: copy.deepcopy(getattr(new, name))
            for name in _SCALAR_FIELDS
            if not _same(getattr(old, name), getattr(new, name))
        }
        keep = 0
        for a, b in zip(old.turns, new.turns, strict=False):
            if not _same(a, b):
                break
            keep += 1
        return {
            "base": {"session_id": old.session_id, "turns": len(old.turns)},
            "fields": changed,
            "turns": {"keep": keep, "append": copy.deepcopy(list(new.turns[keep:]))},
        }

    @staticmethod
    def is_empty(diff: Mapping[str, Any]) -> bool:
        """True when ``diff`` changes nothing (the two states were exactly the same)."""
        keep, appended = _turn_part(diff)
        base = diff.get("base")
        base_turns = base.get("turns") if isinstance(base, Mapping) else None
        return not _fields_part(diff) and not appended and keep == base_turns

    @staticmethod
    def apply(base: SessionState, diff: Mapping[str, Any]) -> SessionState:
        """``base`` with ``diff`` applied (a new state; neither argument is changed)."""
        if not isinstance(base, SessionState):
            raise SessionValidationError(
                "base", f"expected a SessionState, got {type(base).__name__}"
            )
        if not isinstance(diff, Mapping):
            raise SessionValidationError("diff", f"expected a dict, got {type(diff).__name__}")
        unknown_keys = set(diff) - _DIFF_KEYS
        if unknown_keys:
            raise SessionValidationError("diff", f"unknown key(s) {sorted(map(str, unknown_keys))}")
        _check_base(base, diff.get("base"))
        changed = _fields_part(diff)
        keep, appended = _turn_part(diff)
        if keep > len(base.turns):
            raise SessionValidationError(
                "diff.turns.keep", f"{keep} is more than the base's {len(base.turns)} turns"
            )
        turns = copy.deepcopy(base.turns[:keep]) + copy.deepcopy(appended)
        kept = {name: copy.deepcopy(getattr(base, name)) for name in _SCALAR_FIELDS}
        kept.update({name: copy.deepcopy(value) for name, value in _typed(changed).items()})
        return replace(base, turns=turns, **kept)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_cost(value: Any) -> bool:
    # NaN passes (a state may hold it; compute and apply carry it as it is)
    return isinstance(value, int | float) and not isinstance(value, bool) and not value < 0


#: What each changed field must be, with what the message says it expects. Only types
#: and signs: a diff is applied to states no store has checked (ids, texts and turns
#: are taken as they are, as ``compute`` takes them), but a value of the wrong kind
#: would make a state no code reading it expects (an outside time-travel audit).
_FIELD_KINDS: dict[str, tuple[Any, str]] = {
    "session_id": (lambda v: isinstance(v, str), "a string"),
    "user_id": (lambda v: isinstance(v, str), "a string"),
    "turn_count": (_is_count, "an integer >= 0"),
    "total_tokens": (_is_count, "an integer >= 0"),
    "total_cost": (_is_cost, "a number >= 0"),
    "created_at": (lambda v: isinstance(v, datetime), "a datetime"),
    "updated_at": (lambda v: isinstance(v, datetime), "a datetime"),
    "metadata": (lambda v: isinstance(v, dict), "a dict"),
    "variables": (lambda v: isinstance(v, dict), "a dict"),
    "active_tools": (lambda v: isinstance(v, list), "a list"),
    "active_skills": (lambda v: isinstance(v, list), "a list"),
    "system_prompt": (lambda v: v is None or isinstance(v, str), "a string or None"),
    "checkpoint_id": (lambda v: v is None or isinstance(v, str), "a string or None"),
    "parent_session_id": (lambda v: v is None or isinstance(v, str), "a string or None"),
    "branch_name": (lambda v: v is None or isinstance(v, str), "a string or None"),
}


def _typed(changed: dict[str, Any]) -> dict[str, Any]:
    """``changed`` with each value of the kind its field holds (``status`` as a
    :class:`SessionStatus`); a value of another kind refused, naming the field."""
    typed = dict(changed)
    for name, value in changed.items():
        if name == "status":
            try:
                typed[name] = SessionStatus(value)
            except ValueError:
                raise SessionValidationError(
                    "diff.fields.status",
                    f"expected one of {[s.value for s in SessionStatus]}, got {value!r}",
                ) from None
            continue
        kind = _FIELD_KINDS.get(name)
        if kind is not None and not kind[0](value):
            raise SessionValidationError(
                f"diff.fields.{name}", f"expected {kind[1]}, got {value!r:.80}"
            )
    return typed


def _check_base(base: SessionState, expected: Any) -> None:
    if expected is None:
        return
    if not isinstance(expected, Mapping):
        raise SessionValidationError("diff.base", f"expected a dict, got {type(expected).__name__}")
    sid = expected.get("session_id")
    if sid is not None and sid != base.session_id:
        raise SessionValidationError(
            "diff.base.session_id",
            f"the diff was computed against session {sid!r}, not {base.session_id!r}",
        )
    count = expected.get("turns")
    if count is not None and count != len(base.turns):
        raise SessionValidationError(
            "diff.base.turns",
            f"the diff was computed against {count} turns, the base has {len(base.turns)}",
        )


def _fields_part(diff: Mapping[str, Any]) -> dict[str, Any]:
    changed = diff.get("fields", {})
    if not isinstance(changed, Mapping):
        raise SessionValidationError(
            "diff.fields", f"expected a dict, got {type(changed).__name__}"
        )
    unknown = set(changed) - set(_SCALAR_FIELDS)
    if unknown:
        raise SessionValidationError("diff.fields", f"unknown field(s) {sorted(map(str, unknown))}")
    return dict(changed)


def _turn_part(diff: Mapping[str, Any]) -> tuple[int, list[SessionTurn]]:
    part = diff.get("turns")
    if not isinstance(part, Mapping):
        raise SessionValidationError(
            "diff.turns", "missing, or not a dict with 'keep' and 'append'"
        )
    keep = part.get("keep")
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 0:
        raise SessionValidationError("diff.turns.keep", f"must be an integer >= 0, got {keep!r}")
    appended = part.get("append", [])
    if not isinstance(appended, list | tuple):
        raise SessionValidationError(
            "diff.turns.append", f"expected a list of SessionTurn, got {type(appended).__name__}"
        )
    for i, item in enumerate(appended):
        if not isinstance(item, SessionTurn):
            raise SessionValidationError(
                f"diff.turns.append[{i}]", f"expected a SessionTurn, got {type(item).__name__}"
            )
    return keep, list(appended)
