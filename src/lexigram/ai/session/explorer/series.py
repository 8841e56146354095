"""What the analytics charts plot: tokens and cost over turns, per model, per agent.

The turns are read in pages of :data:`CHUNK` (``get_turn_seqs``, one bounded query
each) and folded into at most :data:`MAX_POINTS` points per series, so the charts of
a 10,000-turn session stay small.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session.analytics.session import tool_names
from lexigram.ai.session.stores.base import SessionStore

__all__ = ["CHUNK", "MAX_POINTS", "Bucket", "Usage", "UsageSeries", "load_series", "summarize"]

CHUNK = 1000
MAX_POINTS = 200


@dataclass
class Usage:
    """Turns, tokens and cost of one model, agent or role."""

    turns: int = 0
    tokens: int = 0
    cost: float = 0.0

    def add(self, turn: SessionTurn) -> None:
        """Count ``turn``."""
        self.turns += 1
        self.tokens += turn.tokens_used
        self.cost += turn.cost


@dataclass(frozen=True)
class Bucket:
    """Turns ``first``..``last`` (1-based positions): their tokens and cost, and totals so far."""

    first: int
    last: int
    tokens: int
    cost: float
    cumulative_tokens: int
    cumulative_cost: float


@dataclass
class UsageSeries:
    """Everything the analytics page plots."""

    turns: int = 0
    tokens: int = 0
    cost: float = 0.0
    buckets: list[Bucket] = field(default_factory=list)
    by_model: dict[str, Usage] = field(default_factory=dict)
    by_agent: dict[str, Usage] = field(default_factory=dict)
    by_role: dict[str, Usage] = field(default_factory=dict)
    by_tool: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""

        def table(usage: dict[str, Usage]) -> dict[str, dict[str, float | int]]:
            return {k: {"turns": u.turns, "tokens": u.tokens, "cost": u.cost}
                    for k, u in usage.items()}

        return {
            "turns": self.turns,
            "tokens": self.tokens,
            "cost": self.cost,
            "buckets": [b.__dict__ for b in self.buckets],
            "by_model": table(self.by_model),
            "by_agent": table(self.by_agent),
            "by_role": table(self.by_role),
            "by_tool": dict(self.by_tool),
        }


class _Accumulator:
    """Folds turns one at a time, keeping only each turn's tokens and cost."""

    def __init__(self) -> None:
        self.series = UsageSeries()
        self.usage: list[tuple[int, float]] = []

    def add(self, turn: SessionTurn) -> None:
        series = self.series
        self.usage.append((turn.tokens_used, turn.cost))
        series.by_model.setdefault(turn.model or "(none)", Usage()).add(turn)
        agent = turn.metadata.get("agent")
        if isinstance(agent, str) and agent:
            series.by_agent.setdefault(agent, Usage()).add(turn)
        series.by_role.setdefault(turn.role, Usage()).add(turn)
        for name in tool_names(turn.tool_calls):
            series.by_tool[name] = series.by_tool.get(name, 0) + 1

    def finish(self) -> UsageSeries:
        series, usage = self.series, self.usage
        width = max(1, -(-len(usage) // MAX_POINTS))
        tokens_so_far, cost_so_far = 0, 0.0
        for start in range(0, len(usage), width):
            chunk = usage[start : start + width]
            tokens = sum(t for t, _ in chunk)
            cost = sum(c for _, c in chunk)
            tokens_so_far += tokens
            cost_so_far += cost
            series.buckets.append(
                Bucket(start + 1, start + len(chunk), tokens, cost, tokens_so_far, cost_so_far)
            )
        series.turns = len(usage)
        series.tokens = tokens_so_far
        series.cost = cost_so_far
        return series


def summarize(turns: list[SessionTurn]) -> UsageSeries:
    """The series of ``turns`` (in order)."""
    accumulator = _Accumulator()
    for turn in turns:
        accumulator.add(turn)
    return accumulator.finish()


async def load_series(store: SessionStore, session_id: str) -> UsageSeries:
    """Read the live turns of ``session_id`` page by page, folding each page as it comes.

    Only each turn's tokens and cost are kept between pages, so memory stays small
    whatever the turns hold.
    """
    accumulator = _Accumulator()
    after: int | None = None
    while True:
        page = await store.get_turn_seqs(session_id, after_seq=after, limit=CHUNK)
        for _, turn in page:
            accumulator.add(turn)
        if len(page) < CHUNK:
            break
        after = page[-1][0]
    return accumulator.finish()
