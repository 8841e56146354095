"""Checks of what callers hand the adapter: settings, limits, and item errors' names."""

from __future__ import annotations

import re
from typing import Any

from agents.memory.session_settings import SessionSettings, coerce_session_settings

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.integrations.openai_agents.errors import SessionTypeError
from lexigram.ai.session.integrations.openai_agents.mapping import ITEM_KEY

__all__ = ["check_limit", "coerce_settings", "item_error"]


def coerce_settings(value: Any) -> SessionSettings:
    """``SessionSettings`` from an instance, a dict or None, as the SDK's sessions do.

    An unknown key or a value of the wrong type raises :class:`SessionTypeError`
    (``TypeError: Unknown session settings: limitt``, as in the SDK); a bad value of a
    known key raises :class:`SessionValidationError`. Both name ``session_settings``.
    """
    if value is None:
        return SessionSettings()
    try:
        return coerce_session_settings(value)
    except TypeError as exc:
        raise SessionTypeError("session_settings", str(exc)) from exc
    except ValueError as exc:
        raise SessionValidationError("session_settings", str(exc)) from exc


_ITEM_FIELD = re.compile(rf"turns\[(\d+)\]\.metadata\.{ITEM_KEY}(.*)", re.DOTALL)
#: A refusal of the whole stored turn (MariaDB's size check names ``turns[i]``) or of its
#: text (made from the item): the caller's ``items[i]``.
_WHOLE_TURN = re.compile(r"turns\[(\d+)\](?:\.content)?")


def item_error(exc: SessionValidationError) -> SessionValidationError | None:
    """The manager's refusal of a stored item, renamed to the caller's ``items[i]...``."""
    match = _ITEM_FIELD.fullmatch(exc.field)
    if match is not None:
        return SessionValidationError(f"items[{match.group(1)}]{match.group(2)}", exc.problem)
    whole = _WHOLE_TURN.fullmatch(exc.field)
    if whole is not None:
        return SessionValidationError(f"items[{whole.group(1)}]", exc.problem)
    return None


def check_limit(limit: Any) -> int | None:
    """``limit`` as an int or None; anything else raises :class:`SessionTypeError`.

    ``True`` and ``False`` are the integers 1 and 0, as in the SDK's own sessions.
    """
    if limit is None or type(limit) is int:
        return limit
    if not isinstance(limit, int):
        raise SessionTypeError("limit", f"must be an integer or None, got {limit!r}")
    return int(limit)
