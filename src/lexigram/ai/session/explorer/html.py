"""A tiny HTML builder that escapes everything it is not told is markup.

Text passed to :func:`el` (children and attribute values) is escaped unless it is a
:class:`Markup`, which only this module and the SVG/page builders produce. So a
session id, a turn's content or a metadata value can never inject markup.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from urllib.parse import urlencode

__all__ = ["Markup", "el", "escape", "join", "url"]


class Markup(str):
    """A string of trusted HTML; everything else is escaped when rendered."""

    __slots__ = ()


_VOID = frozenset({"br", "hr", "img", "input", "meta", "link"})
_SVG_EMPTY = frozenset({"circle", "path", "line", "rect", "polyline", "polygon"})


def escape(value: object) -> Markup:
    """``value`` as HTML text (a :class:`Markup` is returned unchanged)."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


def _render(child: object) -> str:
    if child is None or child is False:
        return ""
    if isinstance(child, Markup):
        return child
    if isinstance(child, str | int | float):
        return html.escape(str(child), quote=True)
    if isinstance(child, Iterable):
        return "".join(_render(c) for c in child)
    return html.escape(str(child), quote=True)


def join(children: Iterable[object]) -> Markup:
    """Children rendered one after another (text escaped)."""
    return Markup("".join(_render(c) for c in children))


def el(tag: str, attrs: Mapping[str, object] | None = None, *children: object) -> Markup:
    """``<tag attrs>children</tag>``; attribute values and text are escaped.

    An attribute whose value is None or False is left out; True renders it bare.
    A trailing underscore in a name is dropped (``class_`` -> ``class``).
    """
    parts = [tag]
    for name, value in (attrs or {}).items():
        if value is None or value is False:
            continue
        key = name[:-1] if name.endswith("_") else name
        if value is True:
            parts.append(key)
        else:
            parts.append(f'{key}="{html.escape(str(value), quote=True)}"')
    opening = "<" + " ".join(parts) + ">"
    if tag in _VOID:
        return Markup(opening)
    if tag in _SVG_EMPTY and not children:
        return Markup(opening[:-1] + "/>")
    return Markup(opening + "".join(_render(c) for c in children) + f"</{tag}>")


def url(path: str, **query: object) -> str:
    """``path`` with the query parameters whose value is not None (values percent-encoded)."""
    pairs = [(k, str(v)) for k, v in query.items() if v is not None and v != ""]
    return path + ("?" + urlencode(pairs) if pairs else "")
