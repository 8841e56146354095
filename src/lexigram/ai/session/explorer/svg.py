"""Inline SVG charts drawn on the server: no chart library, no JavaScript.

Every text drawn comes from the data and is escaped by :func:`.html.el`. Each chart
is an ``<svg>`` with ``role="img"``, a ``<title>`` and one ``data-*`` summary so that
tests (and screen readers) can tell what it shows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from lexigram.ai.session.explorer.html import Markup, el, join

__all__ = ["bar_chart", "line_chart", "nice_ceiling"]

_W, _H = 640, 220
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 56, 12, 16, 28


def _fmt(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 1_000:
        return f"{value / 1_000:.1f}k"
    if value and value < 1:
        return f"{value:.4f}".rstrip("0")
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2f}"


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above ``value`` (1.0 for 0)."""
    if value <= 0:
        return 1.0
    scale = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * scale * (1 + 1e-9):
            return step * scale
    return 10.0 * scale  # pragma: no cover - the loop always returns


def line_chart(
    title: str,
    points: Sequence[tuple[float, float]],
    *,
    x_label: str,
    css_class: str = "series-a",
) -> Markup:
    """A line (with a shaded area) through ``points`` (x ascending)."""
    if not points:
        return el("p", {"class": "muted"}, f"{title}: no data")
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    top = nice_ceiling(max(ys))
    span = (x1 - x0) or 1.0
    plot_w, plot_h = _W - _PAD_L - _PAD_R, _H - _PAD_T - _PAD_B

    def sx(x: float) -> float:
        return _PAD_L + (x - x0) / span * plot_w

    def sy(y: float) -> float:
        return _PAD_T + plot_h - y / top * plot_h

    coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
    base = _PAD_T + plot_h
    area = f"{sx(x0):.1f},{base:.1f} {coords} {sx(x1):.1f},{base:.1f}"
    grid = []
    for i in range(5):
        value = top * i / 4
        y = sy(value)
        grid.append(el("line", {"class": "grid", "x1": _PAD_L, "x2": _W - _PAD_R,
                                "y1": f"{y:.1f}", "y2": f"{y:.1f}"}))
        grid.append(el("text", {"class": "axis", "x": _PAD_L - 6, "y": f"{y + 4:.1f}",
                                "text-anchor": "end"}, _fmt(value)))
    axis = [
        el("text", {"class": "axis", "x": _PAD_L, "y": _H - 8}, _fmt(x0)),
        el("text", {"class": "axis", "x": _W - _PAD_R, "y": _H - 8, "text-anchor": "end"},
           _fmt(x1)),
        el("text", {"class": "axis", "x": _PAD_L + plot_w / 2, "y": _H - 8,
                    "text-anchor": "middle"}, x_label),
    ]
    return el(
        "svg",
        {"class": f"chart line {css_class}", "viewBox": f"0 0 {_W} {_H}", "role": "img",
         "data-points": len(points), "data-max": f"{top:g}", "xmlns": "http://www.w3.org/2000/svg"},
        el("title", None, title),
        join(grid),
        el("polygon", {"class": "area", "points": area}),
        el("polyline", {"class": "stroke", "points": coords}),
        join(axis),
    )


def bar_chart(
    title: str, rows: Sequence[tuple[str, float]], *, unit: str = "", css_class: str = "series-a"
) -> Markup:
    """Horizontal bars, one per ``(label, value)``, largest first as given."""
    if not rows:
        return el("p", {"class": "muted"}, f"{title}: no data")
    bar_h, gap, label_w = 22, 8, 160
    height = _PAD_T + len(rows) * (bar_h + gap) + 4
    top = max(v for _, v in rows) or 1.0
    plot_w = _W - label_w - 90
    bars = []
    for i, (label, value) in enumerate(rows):
        y = _PAD_T + i * (bar_h + gap)
        width = max(1.0, value / top * plot_w) if value else 0.0
        bars.append(el(
            "g", {"class": "bar", "data-label": label, "data-value": f"{value:g}"},
            el("title", None, f"{label}: {_fmt(value)}{unit}"),
            el("text", {"class": "axis", "x": label_w - 8, "y": y + 15, "text-anchor": "end"},
               label if len(label) <= 24 else label[:23] + "…"),
            el("rect", {"x": label_w, "y": y, "width": f"{width:.1f}", "height": bar_h,
                        "rx": 3}),
            el("text", {"class": "value", "x": f"{label_w + width + 6:.1f}", "y": y + 15},
               f"{_fmt(value)}{unit}"),
        ))
    return el(
        "svg",
        {"class": f"chart bars {css_class}", "viewBox": f"0 0 {_W} {height}", "role": "img",
         "data-bars": len(rows), "xmlns": "http://www.w3.org/2000/svg"},
        el("title", None, title),
        join(bars),
    )
