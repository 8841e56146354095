"""``analytics.compute`` and the aggregate over a user's sessions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session import InMemorySessionStore, SessionConfig, SessionManagerImpl
from lexigram.ai.session.analytics import (
    SessionAnalytics,
    UserSessionAnalytics,
    aggregate,
    compute,
    tool_names,
    user_analytics,
)
from lexigram.ai.session.exceptions import SessionValidationError

T0 = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)


def turn(
    seconds: float, role: str, *, tokens: int = 0, cost: float = 0.0, **extra: Any
) -> SessionTurn:
    return SessionTurn(
        turn_id=f"t{seconds}-{role}",
        role=role,
        content=f"{role} at {seconds}",
        timestamp=T0 + timedelta(seconds=seconds),
        tokens_used=tokens,
        cost=cost,
        **extra,
    )


def state(turns: list[SessionTurn], **fields: Any) -> SessionState:
    base: dict[str, Any] = {
        "session_id": "s1",
        "user_id": "alice",
        "status": SessionStatus.ACTIVE,
        "turns": turns,
        "created_at": T0 - timedelta(seconds=10),
        "updated_at": T0,
    }
    base.update(fields)
    return SessionState(**base)


def test_compute_counts_everything_from_the_turns() -> None:
    turns = [
        turn(0, "system", tokens=5),
        turn(1, "user", tokens=10),
        turn(1.5, "assistant", tokens=20, cost=0.25, model="m-large", provider="acme",
             metadata={"agent": "planner"},
             tool_calls=[{"function": {"name": "search", "arguments": "{}"}},
                         {"name": "calc"}]),
        turn(2, "tool"),
        turn(3, "assistant", tokens=7, cost=0.5, model="m-small", provider="acme",
             metadata={"agent": "writer"},
             tool_calls=[{"type": "function", "function": {"name": "search"}}]),
        turn(10, "user", tokens=3),
        turn(10.2, "assistant", tokens=4, model="m-large", provider="other",
             metadata={"agent": "planner"}),
        turn(20, "user"),  # never answered
    ]
    result = compute(state(turns, updated_at=T0 + timedelta(seconds=15)))
    assert isinstance(result, SessionAnalytics)
    assert result.session_id == "s1" and result.user_id == "alice" and result.status == "active"
    assert result.total_turns == 8
    assert result.total_tokens == 49
    assert result.total_cost == pytest.approx(0.75)
    # first turn at T0, last at T0+20 (created_at and updated_at do not count)
    assert result.duration_seconds == 20.0
    assert result.agents_used == ["planner", "writer"]
    assert result.tools_invoked == ["search", "calc"]
    assert result.tool_call_counts == {"search": 2, "calc": 1}
    assert result.tool_calls == 3
    # user@1 -> assistant@1.5 (500 ms), user@10 -> assistant@10.2 (200 ms)
    assert result.response_count == 2
    assert result.avg_response_time_ms == pytest.approx(350.0)
    assert result.models_used == ["m-large", "m-small"]
    assert result.providers_used == ["acme", "other"]
    assert result.turns_by_role == {"system": 1, "user": 3, "assistant": 3, "tool": 1}
    assert result.first_turn_at == T0 and result.last_turn_at == T0 + timedelta(seconds=20)
    json.dumps(result.to_dict())  # JSON-ready


def test_compute_on_a_header_uses_the_stored_counters() -> None:
    header = state([], turn_count=12, total_tokens=340, total_cost=1.5,
                   updated_at=T0 + timedelta(minutes=5))
    result = compute(header)
    assert (result.total_turns, result.total_tokens, result.total_cost) == (12, 340, 1.5)
    assert result.duration_seconds == pytest.approx(310.0)
    assert result.avg_response_time_ms == 0.0 and result.response_count == 0
    assert result.agents_used == []


def test_a_session_without_turns_lasts_zero_seconds() -> None:
    empty = state([], updated_at=T0 + timedelta(minutes=5))
    result = compute(empty)
    assert result.duration_seconds == 0.0
    assert (result.total_turns, result.first_turn_at, result.last_turn_at) == (0, None, None)
    one = compute(state([turn(7, "user")], updated_at=T0 + timedelta(minutes=5)))
    assert one.duration_seconds == 0.0


def test_compute_rejects_what_is_not_a_state() -> None:
    with pytest.raises(SessionValidationError) as err:
        compute({"session_id": "x"})  # type: ignore[arg-type]
    assert err.value.field == "state"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tool_calls": None}, "state.turns[1].tool_calls"),
        ({"tokens_used": None}, "state.turns[1].tokens_used"),
        ({"cost": float("nan")}, "state.turns[1].cost"),
    ],
)
def test_compute_names_the_bad_turn_field_of_a_hand_built_state(
    change: dict[str, Any], field: str
) -> None:
    """A bare TypeError (or a NaN total) came out of a hand-built state's odd turn."""
    now = datetime.now(UTC)
    turns = [
        SessionTurn(turn_id="t0", role="user", content="q", timestamp=now),
        SessionTurn(turn_id="t1", role="assistant", content="a", timestamp=now, **change),
    ]
    state = SessionState(session_id="s", user_id="u", status=SessionStatus.ACTIVE, turns=turns)
    with pytest.raises(SessionValidationError, match=field.replace("[", r"\[").replace("]", r"\]")):
        compute(state)


def test_tool_names_understands_the_common_shapes() -> None:
    calls = [
        {"function": {"name": "a"}},
        {"name": "b"},
        {"tool": "c"},
        {"tool_name": "d"},
        {"id": "no-name"},
        "not a dict",
    ]
    assert tool_names(calls) == ["a", "b", "c", "d"]


def test_aggregate_weights_response_time_by_pairs_and_sums_tools() -> None:
    one = compute(state([turn(0, "user"), turn(1, "assistant", tokens=10, cost=1.0,
                                               tool_calls=[{"name": "x"}])]))
    two = compute(state([
        turn(0, "user"), turn(0.1, "assistant", tokens=2),
        turn(5, "user"),
        turn(5.1, "assistant", tokens=2, tool_calls=[{"name": "x"}, {"name": "y"}]),
    ], session_id="s2", status=SessionStatus.CLOSED))
    total = aggregate([one, two])
    assert isinstance(total, UserSessionAnalytics)
    assert total.user_id == "alice" and total.session_count == 2
    assert total.total_turns == 6 and total.total_tokens == 14
    assert total.total_cost == pytest.approx(1.0)
    assert total.avg_turns_per_session == 3.0
    # (1000 * 1 + 100 * 2) / 3 pairs
    assert total.avg_response_time_ms == pytest.approx(400.0)
    assert total.tool_call_counts == {"x": 2, "y": 1}
    assert sorted(total.tools_invoked) == ["x", "y"]
    assert total.sessions_by_status == {"active": 1, "closed": 1}
    assert aggregate([]).session_count == 0 and aggregate([]).avg_response_time_ms == 0.0
    json.dumps(total.to_dict())


async def test_user_analytics_pages_through_the_managers_sessions() -> None:
    manager = SessionManagerImpl(InMemorySessionStore(), SessionConfig(auto_checkpoint_interval=0))
    made = []
    for i in range(7):
        s = await manager.create("bob")
        made.append(s.session_id)
        await manager.add_message(s.session_id, "user", "q", tokens_used=1)
        await manager.add_message(s.session_id, "assistant", "a", tokens_used=i, model="m",
                                  metadata={"agent": f"agent-{i % 2}"})
    await manager.close(made[0])
    other = await manager.create("someone-else")
    await manager.add_message(other.session_id, "user", "not counted", tokens_used=100)

    total = await user_analytics(manager, "bob", page_size=3)
    assert total.session_count == 7
    assert total.total_turns == 14
    assert total.total_tokens == 7 + sum(range(7))
    assert sorted(total.agents_used) == ["agent-0", "agent-1"]
    assert total.models_used == ["m"]
    assert total.sessions_by_status == {"active": 6, "closed": 1}
    # every user turn answered: 7 pairs, the same clock tick apart or later
    assert total.avg_response_time_ms is not None and total.avg_response_time_ms >= 0

    headers_only = await user_analytics(manager, "bob", include_turns=False, page_size=2)
    assert headers_only.total_turns == 14 and headers_only.agents_used == []
    closed_only = await user_analytics(manager, "bob", status="closed")
    assert closed_only.session_count == 1


def test_times_in_one_zone_compare_as_instants_across_a_dst_change() -> None:
    """Two turns in America/New_York across the spring change are 20 minutes apart, not
    the 80 of their wall clocks (a regression audit)."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo("America/New_York")
    turns = [
        SessionTurn(turn_id="q", role="user", content="q",
                    timestamp=datetime(2026, 3, 8, 1, 50, tzinfo=zone)),
        SessionTurn(turn_id="a", role="assistant", content="a",
                    timestamp=datetime(2026, 3, 8, 3, 10, tzinfo=zone)),
    ]
    state = SessionState(session_id="s", user_id="u", status=SessionStatus.ACTIVE, turns=turns)
    result = compute(state)
    assert result.duration_seconds == 1200.0
    assert result.avg_response_time_ms == 1_200_000.0
