"""Aggregate analytics over a user's sessions."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.analytics.session import (
    SessionAnalytics,
    compute,
    compute_share,
    json_ready,
)
from lexigram.ai.session.exceptions import (
    CorruptRecordError,
    EncryptionKeyError,
    SessionNotFoundError,
    SessionValidationError,
)

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
    user -> assistant pairs of each session (0.0 when there is none). The turn-based
    figures count each turn once in a family of sessions (a branch, its source and
    their branches, recursively): a fork copies its source's turns and a merge copies
    a branch's turns into its parent, each under its id and timestamp.
    ``damaged_session_ids`` lists the sessions left out because they could not be
    read (undecodable, or encrypted under keys this process does not have).
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
    damaged_session_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (datetimes as ISO-8601)."""
        return json_ready(self)


def _merge_distinct(groups: Iterable[list[str]]) -> list[str]:
    seen: dict[str, None] = {}
    for group in groups:
        for name in group:
            seen.setdefault(name, None)
    return list(seen)


_Seen = set[tuple[str, datetime]]


class _Families:
    """Sessions linked by ``parent_session_id``: a branch and its source, recursively.

    Only linked sessions are held (a union-find over their ids), and a family's seen
    turns only while a member of it may still come: a session in no family costs
    nothing. ``expect`` says how many of a family's members will be counted; its
    seen turns are dropped once that many have been.
    """

    def __init__(self) -> None:
        self._up: dict[str, str] = {}
        self._seen: dict[str, _Seen] = {}
        self._left: dict[str, int] = {}
        self._open: set[str] = set()  # families whose members may not all be known

    def _find(self, sid: str) -> str:
        up = self._up
        while up[sid] != sid:
            up[sid] = up[up[sid]]  # path halving
            sid = up[sid]
        return sid

    def link(self, sid: str, parent: str | None) -> None:
        """Record that ``sid`` was forked from ``parent`` (nothing when None)."""
        if not parent or parent == sid:
            return
        for name in (sid, parent):
            self._up.setdefault(name, name)
        a, b = self._find(sid), self._find(parent)
        if a != b:
            self._up[a] = b
            if a in self._seen:  # a link found late joins two families' seen turns
                self._seen.setdefault(b, set()).update(self._seen.pop(a))
            self._left[b] = self._left.pop(a, 0) + self._left.get(b, 0)
            if a in self._open:
                self._open.discard(a)
                self._open.add(b)

    def join(self, sid: str, parent: str | None) -> None:
        """:meth:`link` for a session met after the families were counted: a branch
        forked meanwhile leaves its family's seen turns to the end."""
        if parent and sid not in self._up:
            self.link(sid, parent)
            if sid in self._up:
                self._open.add(self._find(sid))

    def expect(self, sid: str, *, known: bool = True) -> None:
        """One more member of ``sid``'s family will be counted (``known=False``: its
        family may have members not listed yet, so its seen turns stay to the end)."""
        if sid in self._up:
            root = self._find(sid)
            self._left[root] = self._left.get(root, 0) + 1
            if not known:
                self._open.add(root)

    def seen(self, sid: str) -> _Seen | None:
        """The seen turns of ``sid``'s family; None when it is in no family."""
        if sid not in self._up:
            return None
        return self._seen.setdefault(self._find(sid), set())

    def counted(self, sid: str) -> None:
        """``sid`` was counted: drop its family's seen turns once all its members were."""
        if sid not in self._up:
            return
        root = self._find(sid)
        left = self._left.get(root, 0) - 1
        self._left[root] = left
        if left <= 0 and root not in self._open:
            self._seen.pop(root, None)


def _row(item: SessionAnalytics | SessionState, seen: _Seen | None) -> SessionAnalytics:
    if isinstance(item, SessionState):
        return compute_share(item, seen)
    if isinstance(item, SessionAnalytics):
        return item
    raise SessionValidationError(
        "items", f"expected SessionAnalytics or SessionState, got {type(item).__name__}"
    )


def aggregate(
    items: Iterable[SessionAnalytics | SessionState], *, user_id: str | None = None
) -> UserSessionAnalytics:
    """Aggregate :class:`SessionAnalytics` (or states, computed on the way).

    ``user_id`` defaults to the sessions' common user ("" when they differ). States
    with their turns count each turn of a family (sessions linked by
    ``parent_session_id``, among those given) once; :class:`SessionAnalytics` rows and
    header-only states are summed as they are.
    """
    given = list(items)
    families = _Families()
    for item in given:
        if isinstance(item, SessionState):
            families.link(item.session_id, item.parent_session_id)
    rows = [_row(item, _seen_of(families, item)) for item in given]
    return _aggregate_rows(rows, user_id)


def _seen_of(families: _Families, item: object) -> _Seen | None:
    return families.seen(item.session_id) if isinstance(item, SessionState) else None


def _aggregate_rows(rows: list[SessionAnalytics], user_id: str | None) -> UserSessionAnalytics:
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
        """A page with ``items`` (header states), ``next_cursor`` and ``damaged`` (the
        ids of sessions on the page that could not be read)."""
        ...

    async def get_turns(self, session_id: str, *, last: int | None = None) -> list[SessionTurn]:
        """The session's live turns."""
        ...


def _check_options(include_turns: object, page_size: object) -> None:
    if not isinstance(include_turns, bool):
        raise SessionValidationError(
            "include_turns", f"expected a bool, got {type(include_turns).__name__}"
        )
    if (
        not isinstance(page_size, int)
        or isinstance(page_size, bool)
        or not 1 <= page_size <= 10_000
    ):
        raise SessionValidationError(
            "page_size", f"must be an integer in 1..10000, got {page_size!r}"
        )


async def _headers(
    manager: SessionSource,
    user_id: str,
    status: SessionStatus | str | None,
    page_size: int,
    damaged: list[str] | None,
) -> AsyncIterator[SessionState]:
    """The user's session headers, page by page (the unreadable ones' ids to ``damaged``)."""
    cursor: str | None = None
    while True:
        page = await manager.list_sessions(user_id, status=status, limit=page_size, cursor=cursor)
        if damaged is not None:
            damaged.extend(getattr(page, "damaged", None) or ())
        for header in page.items:
            yield header
        cursor = page.next_cursor
        if not cursor:
            return


async def _with_turns(
    manager: SessionSource, header: SessionState, damaged: list[str] | None
) -> SessionState | None:
    """``header`` with its turns; None when it was deleted meanwhile or cannot be read
    (then its id goes to ``damaged``)."""
    if not header.turn_count:
        return header
    try:
        turns = await manager.get_turns(header.session_id)
    except SessionNotFoundError:  # deleted between the page and the read
        return None
    except (CorruptRecordError, EncryptionKeyError):
        if damaged is not None:
            damaged.append(header.session_id)
        return None
    return replace(header, turns=turns)


async def iter_session_analytics(
    manager: SessionSource,
    user_id: str,
    *,
    status: SessionStatus | str | None = None,
    include_turns: bool = True,
    page_size: int = 100,
    damaged: list[str] | None = None,
) -> AsyncIterator[SessionAnalytics]:
    """:class:`SessionAnalytics` of each of the user's sessions, page by page.

    One session's turns are in memory at a time. ``include_turns=False`` reads only
    headers: totals and durations, no per-turn figures. Each session's figures are
    its own: a branch's include the turns it inherited from its source. The ids of
    sessions left out because they could not be read are appended to ``damaged``
    when given.
    """
    _check_options(include_turns, page_size)
    async for header in _headers(manager, user_id, status, page_size, damaged):
        state = await _with_turns(manager, header, damaged) if include_turns else header
        if state is not None:
            yield compute(state)


async def user_analytics(
    manager: SessionSource,
    user_id: str,
    *,
    status: SessionStatus | str | None = None,
    include_turns: bool = True,
    page_size: int = 100,
) -> UserSessionAnalytics:
    """Aggregate analytics over every session of ``user_id`` (paging through them).

    Each turn counts once in a family of sessions linked by ``parent_session_id``
    (what a fork and a merge copy between a branch and its source): a first pass
    over the headers finds the families, and only a family's seen turns are held,
    while its members are counted. With ``include_turns=False`` the members of a
    family still have their turns read (for their totals only); other sessions are
    counted from their headers. Sessions that cannot be read are left out and named
    in ``damaged_session_ids``.
    """
    _check_options(include_turns, page_size)
    families = _Families()
    links: list[tuple[str, str]] = []
    named: set[str] = set()  # the sources the branches listed so far name
    listed: set[str] = set()  # the ones of those listed after (the stores' order)
    async for header in _headers(manager, user_id, status, page_size, None):
        if header.session_id in named:
            listed.add(header.session_id)
        if header.parent_session_id:
            links.append((header.session_id, header.parent_session_id))
            named.add(header.parent_session_id)
    for sid, parent in links:
        families.link(sid, parent)
    # The members to be counted: every branch listed, and each source listed after a
    # branch named it. A source that is not (not listed, or listed out of that order)
    # leaves its family's seen turns to the end.
    branches = {sid for sid, _ in links}
    for sid in branches:
        families.expect(sid)
    for parent in named - branches:
        families.expect(parent, known=parent in listed)
    del links, named, listed, branches
    damaged: list[str] = []
    rows: list[SessionAnalytics] = []
    async for header in _headers(manager, user_id, status, page_size, damaged):
        # A branch forked since the first pass joins its family here.
        families.join(header.session_id, header.parent_session_id)
        seen = families.seen(header.session_id)
        if include_turns or (seen is not None and header.turn_count):
            state = await _with_turns(manager, header, damaged)
            if state is None:
                families.counted(header.session_id)
                continue
            row = compute_share(state, seen)
            if not include_turns:  # the header's figures, with the family's totals
                row = replace(
                    compute(header),
                    total_turns=row.total_turns,
                    total_tokens=row.total_tokens,
                    total_cost=row.total_cost,
                )
        else:
            row = compute(header)
        families.counted(header.session_id)
        rows.append(row)
    return replace(_aggregate_rows(rows, user_id), damaged_session_ids=damaged)
