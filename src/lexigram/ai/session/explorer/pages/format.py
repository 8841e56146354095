"""Small formatting helpers shared by the pages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from lexigram.ai.session.explorer.html import Markup, el

__all__ = ["SHOWN_CHARS", "age", "cost", "pretty_json", "shown", "status_badge", "when"]


def age(moment: datetime, now: datetime | None = None) -> str:
    """How long ago ``moment`` was, in the largest whole unit (``42 s``, ``3 min``, ``2 d``)."""
    seconds = max(0.0, ((now or datetime.now(UTC)) - moment).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def when(moment: datetime) -> Markup:
    """A ``<time>`` showing the UTC time, with the ISO value as its datetime.

    A time stored with another offset (a turn stamped ``12:00+05:30``) is shown in UTC
    like every other time on the page; the ``datetime`` attribute keeps it as stored.
    """
    shown = moment.astimezone(UTC) if moment.tzinfo is not None else moment
    return el("time", {"datetime": moment.isoformat(), "title": "UTC"},
              shown.strftime("%Y-%m-%d %H:%M:%S"))


def cost(value: float) -> str:
    """A cost with four decimals."""
    return f"{value:.4f}"


def pretty_json(value: Any) -> str:
    """``value`` as indented JSON (anything not JSON shown by its ``str``)."""
    try:
        return orjson.dumps(
            value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str
        ).decode()
    except TypeError:
        return repr(value)


def status_badge(status: str) -> Markup:
    """A coloured status label."""
    return el("span", {"class": f"badge status-{status}"}, status)


#: Characters of one text or JSON block shown on a page: a page of 200 turns of 100 KB
#: each weighed 40 MB and took a browser 10 s to load; a 1 MB system prompt, variables
#: and metadata with ten 100 KB checkpoints made a 34 MB session page (outside audits).
SHOWN_CHARS = 20_000


def shown(text: str, whole_in: str) -> list[object]:
    """``text``, or its first :data:`SHOWN_CHARS` characters and a note saying where the
    whole value is (``whole_in``: the JSON API path that returns it)."""
    if len(text) <= SHOWN_CHARS:
        return [text]
    rest = len(text) - SHOWN_CHARS
    return [text[:SHOWN_CHARS],
            el("p", {"class": "cut"}, f"… {rest:,} more characters not shown here; "
               f"the JSON API ({whole_in}) returns the whole value.")]

