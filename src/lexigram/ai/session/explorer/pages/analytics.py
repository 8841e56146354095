"""The analytics page: tokens and cost over turns, per model, per agent, per role, per tool."""

from __future__ import annotations

from lexigram.ai.session.explorer.html import el
from lexigram.ai.session.explorer.pages.context import PageContext
from lexigram.ai.session.explorer.pages.format import cost
from lexigram.ai.session.explorer.pages.layout import layout
from lexigram.ai.session.explorer.series import Usage, UsageSeries
from lexigram.ai.session.explorer.svg import bar_chart, line_chart
from lexigram.ai.session.stores.base import SessionRecord

__all__ = ["analytics_page"]


def _rows(usage: dict[str, Usage], key: str) -> list[tuple[str, float]]:
    rows = [(name, float(getattr(u, key))) for name, u in usage.items()]
    return sorted(rows, key=lambda r: -r[1])[:20]


def analytics_page(ctx: PageContext, record: SessionRecord, series: UsageSeries) -> str:
    """The page."""
    sid = record.state.session_id
    per_turn = [(float(b.last), b.tokens / (b.last - b.first + 1)) for b in series.buckets]
    charts = [
        ("Tokens over turns (cumulative)",
         line_chart("Cumulative tokens", [(float(b.last), float(b.cumulative_tokens))
                                          for b in series.buckets], x_label="turn")),
        ("Cost over turns (cumulative)",
         line_chart("Cumulative cost", [(float(b.last), b.cumulative_cost)
                                        for b in series.buckets],
                    x_label="turn", css_class="series-b")),
        ("Tokens per turn", line_chart("Tokens per turn", per_turn, x_label="turn",
                                       css_class="series-c")),
        ("Tokens per model", bar_chart("Tokens per model", _rows(series.by_model, "tokens"))),
        ("Cost per model", bar_chart("Cost per model", _rows(series.by_model, "cost"),
                                     css_class="series-b")),
        ("Tokens per agent", bar_chart("Tokens per agent", _rows(series.by_agent, "tokens"),
                                       css_class="series-c")),
        ("Cost per agent", bar_chart("Cost per agent", _rows(series.by_agent, "cost"),
                                     css_class="series-b")),
        ("Turns per role", bar_chart("Turns per role", _rows(series.by_role, "turns"))),
        ("Tool calls", bar_chart("Tool calls",
                                 sorted(((k, float(v)) for k, v in series.by_tool.items()),
                                        key=lambda r: -r[1])[:20], css_class="series-c")),
    ]
    figures = [el("figure", {"class": "chart-box"}, el("figcaption", None, caption), chart)
               for caption, chart in charts]
    totals = el("p", {"class": "totals"},
                f"{series.turns} turns · {series.tokens} tokens · cost {cost(series.cost)}")
    return layout(
        ctx, f"Analytics of {sid}",
        el("h1", None, el("span", {"class": "muted"}, "Analytics of "),
           el("a", {"href": ctx.session(sid)}, el("code", None, sid))),
        totals,
        el("div", {"class": "charts", "id": "charts"}, figures),
    )
