"""``SessionAnalytics``: what one session did, computed from its state."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from lexigram.contracts.ai.session import SessionState, SessionTurn

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.validation import check_turns

__all__ = ["SessionAnalytics", "compute", "compute_share", "tool_names", "turn_key"]

_USER_ROLES = frozenset({"user", "human"})
_REPLY_ROLES = frozenset({"assistant", "ai", "agent"})


def json_ready(report: Any) -> dict[str, Any]:
    """A dataclass report as a JSON-ready dict (datetimes as ISO-8601, mappings as dicts)."""
    data: dict[str, Any] = asdict(report)
    for key, value in data.items():
        if isinstance(value, datetime):
            data[key] = value.isoformat()
        elif isinstance(value, Mapping):
            data[key] = dict(value)
    return data


@dataclass(frozen=True, slots=True)
class SessionAnalytics:
    """Figures of one session.

    * ``total_turns``/``total_tokens``/``total_cost`` — from the turns when the
      state carries them, else from the state's stored counters.
    * ``duration_seconds`` — from the first turn's timestamp to the last turn's; 0
      for a session without turns. For a header whose turns were not read
      (``turns == []`` but ``turn_count > 0``): ``created_at`` to ``updated_at``,
      the nearest the header can tell.
    * ``agents_used`` — distinct ``metadata["agent"]`` values of the turns, in order
      of first appearance (group sessions tag each agent turn this way).
    * ``tools_invoked`` — distinct tool names, in order of first call, from each
      turn's ``tool_calls`` (``name``, ``function.name``, ``tool`` or ``tool_name``);
      ``tool_call_counts`` maps each to its number of calls.
    * ``avg_response_time_ms`` — mean time from a user turn to the first assistant
      turn after it (before the next user turn); 0.0 when there is no such pair
      (``response_count`` says how many pairs there were).
    * ``models_used`` / ``providers_used`` — distinct ``model`` / ``provider`` values.
    * ``turns_by_role`` — turns per role, roles lower-cased (``"User"`` and ``"user"``
      are one role, as response pairing reads them).
    """

    session_id: str
    total_turns: int
    total_tokens: int
    total_cost: float
    duration_seconds: float
    agents_used: list[str] = field(default_factory=list)
    tools_invoked: list[str] = field(default_factory=list)
    avg_response_time_ms: float = 0.0
    models_used: list[str] = field(default_factory=list)
    user_id: str = ""
    status: str = ""
    providers_used: list[str] = field(default_factory=list)
    tool_call_counts: Mapping[str, int] = field(default_factory=dict)
    turns_by_role: Mapping[str, int] = field(default_factory=dict)
    response_count: int = 0
    error_turns: int = 0
    first_turn_at: datetime | None = None
    last_turn_at: datetime | None = None

    @property
    def tool_calls(self) -> int:
        """Total number of tool calls."""
        return sum(self.tool_call_counts.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (datetimes as ISO-8601)."""
        return json_ready(self)


def tool_names(tool_calls: Iterable[Any]) -> list[str]:
    """The tool names of a turn's ``tool_calls`` (OpenAI, Anthropic and flat shapes)."""
    names: list[str] = []
    for call in tool_calls:
        if not isinstance(call, Mapping):
            continue
        function = call.get("function")
        name = None
        if isinstance(function, Mapping):
            name = function.get("name")
        for key in ("name", "tool", "tool_name"):
            if name:
                break
            name = call.get(key)
        if isinstance(name, str) and name:
            names.append(name)
    return names


def _distinct(values: Iterable[Any]) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        if isinstance(value, str) and value:
            seen.setdefault(value, None)
    return list(seen)


def _response_pairs(turns: Sequence[SessionTurn]) -> list[tuple[int, float]]:
    """The index of each reply turn that answers a user turn, with the time it took (ms)."""
    pairs: list[tuple[int, float]] = []
    asked: datetime | None = None
    for at, turn in enumerate(turns):
        role = turn.role.lower()
        if role in _USER_ROLES:
            asked = turn.timestamp
        elif role in _REPLY_ROLES and asked is not None:
            gap = (turn.timestamp - asked).total_seconds() * 1000.0
            if gap >= 0:
                pairs.append((at, gap))
            asked = None
    return pairs


def turn_key(turn: SessionTurn) -> tuple[str, datetime]:
    """What identifies a turn among the sessions of one family (a branch and its source).

    A fork or a merge copies a turn with its id and its timestamp; two turns that merely
    share an id (callers numbering their turns "t1", "t2" in each session) have the
    same timestamp only by accident.
    """
    return (turn.turn_id, turn.timestamp)


def _duration_seconds(state: SessionState, turns: list[SessionTurn]) -> float:
    """First turn to last turn; 0 without turns; created..updated for an unread header."""
    if turns:
        stamps = [t.timestamp for t in turns]
        return max((max(stamps) - min(stamps)).total_seconds(), 0.0)
    if state.turn_count > 0:
        return max((state.updated_at - state.created_at).total_seconds(), 0.0)
    return 0.0


def compute(state: SessionState) -> SessionAnalytics:
    """The :class:`SessionAnalytics` of ``state`` (full state, or header-only for totals).

    A hand-built state whose turns a store would refuse raises
    ``SessionValidationError`` naming the turn's field (``state.turns[i].cost``).
    """
    return compute_share(state)


def compute_share(
    state: SessionState, seen: set[tuple[str, datetime]] | None = None
) -> SessionAnalytics:
    """:func:`compute`, counting only the turns not in ``seen`` (then added to it).

    What a session adds to the figures of its family (a branch and its source share
    the turns the fork or a merge copied): the turn-based figures cover the turns
    not seen before, a response pair counts when its reply turn does; the session's
    own figures (``duration_seconds``, ``first_turn_at``, ``last_turn_at``, the
    status) are the whole session's. ``seen=None`` is :func:`compute`.
    """
    if not isinstance(state, SessionState):
        kind = type(state).__name__
        raise SessionValidationError("state", f"expected a SessionState, got {kind}")
    # Every turn as a store keeps it (a zone as its fixed offset, a naive time as UTC),
    # so that times compare as instants across a DST change; a turn a store would refuse
    # is named. (A state read from a store costs a type test per turn.)
    turns = list(check_turns(state.turns, "state.turns"))
    new = [True] * len(turns)
    if seen is not None:
        new = [turn_key(t) not in seen for t in turns]
        seen.update(turn_key(t) for t in turns)
    counted = [t for t, is_new in zip(turns, new, strict=True) if is_new]
    if turns:
        total_turns = len(counted)
        total_tokens = sum(t.tokens_used for t in counted)
        total_cost = float(sum(t.cost for t in counted))
    else:
        total_turns, total_tokens = state.turn_count, state.total_tokens
        total_cost = float(state.total_cost)
    duration = _duration_seconds(state, turns)
    tools: Counter[str] = Counter()
    for turn in counted:
        tools.update(tool_names(turn.tool_calls))
    # A pair counts where its reply turn does (once in a family).
    gaps = [gap for at, gap in _response_pairs(turns) if new[at]]
    status = state.status.value if hasattr(state.status, "value") else str(state.status)
    return SessionAnalytics(
        session_id=state.session_id,
        total_turns=total_turns,
        total_tokens=total_tokens,
        total_cost=total_cost,
        duration_seconds=duration,
        agents_used=_distinct(t.metadata.get("agent") for t in counted),
        tools_invoked=list(tools),
        tool_call_counts=dict(tools),
        avg_response_time_ms=sum(gaps) / len(gaps) if gaps else 0.0,
        models_used=_distinct(t.model for t in counted),
        user_id=state.user_id,
        status=status,
        providers_used=_distinct(t.provider for t in counted),
        # Roles count as response pairing reads them: "User" and "user" are one role.
        turns_by_role=dict(Counter(t.role.lower() for t in counted)),
        response_count=len(gaps),
        error_turns=sum(1 for t in counted if t.metadata.get("error")),
        first_turn_at=min((t.timestamp for t in turns), default=None),
        last_turn_at=max((t.timestamp for t in turns), default=None),
    )
