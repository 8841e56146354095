"""Aggregate analytics over a user's sessions."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.analytics.session import SessionAnalytics, compute, json_ready
from lexigram.ai.session.exceptions import SessionNotFoundError, SessionValidationError

__all__ = [
    "SessionSource",
    "UserSessionAnalytics",
    "aggregate",
    "iter_session_analytics",
    "user_analytics",
]


@dataclass(frozen=True, slots=True)
class UserSessionAnalytics:
    """Totals and averages over several sessions (normally one user's).

    Averages are per session; ``avg_response_time_ms`` is weighted by the number of
    user -> assistant pairs of each session (None when there is none).
    """

    user_id: str
    session_count: int
    total_turns: int
    total_tokens: int
    total_cost: float
    total_duration_seconds: float
    avg_turns_per_session: float
    avg_tokens_per_session: float
    avg_cost_per_session: float
    avg_duration_seconds: float
    avg_response_time_ms: float
    sessions_by_status: Mapping[str, int] = field(default_factory=dict)
    agents_used: list[str] = field(default_factory=list)
    tools_invoked: list[str] = field(default_factory=list)
    models_used: list[str] = field(default_factory=list)
    providers_used: list[str] = field(default_factory=list)
    tool_call_counts: Mapping[str, int] = field(default_factory=dict)
    first_activity_at: datetime | None = None
    last_activity_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (datetimes as ISO-8601)."""
        return json_ready(self)


def _merge_distinct(groups: Iterable[list[str]]) -> list[str]:
    seen: dict[str, None] = {}
    for group in groups:
        for name in group:
            seen.setdefault(name, None)
    return list(seen)


def aggregate(
    items: Iterable[SessionAnalytics | SessionState], *, user_id: str | None = None
) -> UserSessionAnalytics:
    """Aggregate :class:`SessionAnalytics` (or states, computed on the way).

    ``user_id`` defaults to the sessions' common user ("" when they differ).
    """
    rows: list[SessionAnalytics] = []
    for item in items:
        if isinstance(item, SessionState):
            rows.append(compute(item))
        elif isinstance(item, SessionAnalytics):
            rows.append(item)
        else:
            raise SessionValidationError(
                "items", f"expected SessionAnalytics or SessionState, got {type(item).__name__}"
            )
    if user_id is None:
        users = {r.user_id for r in rows}
        user_id = users.pop() if len(users) == 1 else ""
    n = len(rows)
    tools: Counter[str] = Counter()
    for row in rows:
        tools.update(row.tool_call_counts)
    pairs = sum(r.response_count for r in rows)
    weighted = sum(
        r.avg_response_time_ms * r.response_count for r in rows if r.response_count
    )
    turn_times = [t for r in rows for t in (r.first_turn_at, r.last_turn_at) if t is not None]
    total_turns = sum(r.total_turns for r in rows)
    total_tokens = sum(r.total_tokens for r in rows)
    total_cost = float(sum(r.total_cost for r in rows))
    total_duration = float(sum(r.duration_seconds for r in rows))
    return UserSessionAnalytics(
        user_id=user_id,
        session_count=n,
        total_turns=total_turns,
        total_tokens=total_tokens,
        total_cost=total_cost,
        total_duration_seconds=total_duration,
        avg_turns_per_session=total_turns / n if n else 0.0,
        avg_tokens_per_session=total_tokens / n if n else 0.0,
        avg_cost_per_session=total_cost / n if n else 0.0,
        avg_duration_seconds=total_duration / n if n else 0.0,
        avg_response_time_ms=weighted / pairs if pairs else 0.0,
        sessions_by_status=dict(Counter(r.status for r in rows)),
        agents_used=_merge_distinct(r.agents_used for r in rows),
        tools_invoked=list(tools),
        tool_call_counts=dict(tools),
        models_used=_merge_distinct(r.models_used for r in rows),
        providers_used=_merge_distinct(r.providers_used for r in rows),
        first_activity_at=min(turn_times, default=None),
        last_activity_at=max(turn_times, default=None),
    )


class SessionSource(Protocol):
    """What :func:`user_analytics` needs: ``SessionManagerImpl`` satisfies it."""

    async def list_sessions(
        self,
        user_id: str,
        *,
        status: SessionStatus | str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Any:
        """A page with ``items`` (header states) and ``next_cursor``."""
        ...

    async def get_turns(self, session_id: str, *, last: int | None = None) -> list[SessionTurn]:
        """The session's live turns."""
        ...


async def iter_session_analytics(
    manager: SessionSource,
    user_id: str,
    *,
    status: SessionStatus | str | None = None,
    include_turns: bool = True,
    page_size: int = 100,
) -> AsyncIterator[SessionAnalytics]:
    """:class:`SessionAnalytics` of each of the user's sessions, page by page.

    One session's turns are in memory at a time. ``include_turns=False`` reads only
    headers: totals and durations, no per-turn figures.
    """
    cursor: str | None = None
    while True:
        page = await manager.list_sessions(user_id, status=status, limit=page_size, cursor=cursor)
        for header in page.items:
            state = header
            if include_turns and header.turn_count:
                try:
                    turns = await manager.get_turns(header.session_id)
                except SessionNotFoundError:  # deleted between the page and the read
                    continue
                state = replace(header, turns=turns)
            yield compute(state)
        cursor = page.next_cursor
        if not cursor:
            return


async def user_analytics(
    manager: SessionSource,
    user_id: str,
    *,
    status: SessionStatus | str | None = None,
    include_turns: bool = True,
    page_size: int = 100,
) -> UserSessionAnalytics:
    """Aggregate analytics over every session of ``user_id`` (paging through them)."""
    rows = [
        row
        async for row in iter_session_analytics(
            manager, user_id, status=status, include_turns=include_turns, page_size=page_size
        )
    ]
    return aggregate(rows, user_id=user_id)
