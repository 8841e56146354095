"""Argument checks shared by the group-session modules; errors name the field."""

from __future__ import annotations

import math
from typing import Any

from lexigram.ai.session.exceptions import SessionValidationError

__all__ = ["names_of", "require_int", "require_name", "require_positive_number"]


def require_int(field: str, value: Any, minimum: int) -> int:
    """``value`` when it is an integer >= ``minimum`` (bools refused)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise SessionValidationError(field, f"must be an integer >= {minimum}, got {value!r}")
    return value


def require_positive_number(field: str, value: Any) -> float:
    """``value`` as a float when it is a finite number > 0."""
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise SessionValidationError(field, f"must be a number > 0, got {value!r}")
    return float(value)


def require_name(field: str, value: Any) -> str:
    """``value`` when it is a non-empty string (an agent name, a keyword, ...)."""
    if not isinstance(value, str) or not value.strip():
        raise SessionValidationError(field, f"must be a non-empty string, got {value!r}")
    return value


def names_of(value: Any, field: str) -> set[str] | None:
    """A ``visible_to`` / ``hidden_from`` value as a set of names (None when not set).

    A name, or a list (tuple, set) of names; anything else is refused naming ``field``.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return {value}
    if isinstance(value, list | tuple | set | frozenset) and all(isinstance(v, str) for v in value):
        return set(value)
    raise SessionValidationError(field, f"expected a name or a list of names, got {value!r}")
