"""The manager's API edge: caller-chosen ids, and every input refused naming its field.

Over the in-memory store (the reference); tests/stores/test_parity_random.py runs the
same kind of inputs through the manager on every backend.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionStatus

from lexigram.ai.session import SessionManagerImpl
from lexigram.ai.session.exceptions import SessionExpiredError, SessionValidationError
from lexigram.ai.session.manager.cleanup import SessionCleanupScheduler
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from lexigram.ai.session.testing import FakeClock, make_turn
from lexigram.ai.session.validation import MAX_DURATION_S, MAX_ID_LENGTH, MAX_SAFE_INT

Make = Any


async def test_caller_chosen_session_id(manager: SessionManagerImpl) -> None:
    state = await manager.create("alice", session_id="thread-42", variables={"k": 1})
    assert state.session_id == "thread-42"
    await manager.add_message("thread-42", "user", "hi")
    stored = await manager.get_state("thread-42")
    assert stored is not None and stored.user_id == "alice" and stored.turn_count == 1
    page = await manager.list_sessions("alice")
    assert [s.session_id for s in page] == ["thread-42"]


async def test_a_taken_id_is_refused_naming_it(manager: SessionManagerImpl) -> None:
    await manager.create("alice", session_id="ticket-7", variables={"owner": "alice"})
    with pytest.raises(SessionValidationError) as info:
        await manager.create("bob", session_id="ticket-7")
    assert info.value.field == "session_id" and "ticket-7" in str(info.value)
    stored = await manager.get_state("ticket-7")
    assert stored is not None and stored.user_id == "alice"
    assert stored.variables == {"owner": "alice"}
    assert await manager.count_live_sessions("bob") == 0


async def test_a_tombstoned_id_is_refused_naming_it(make_manager: Make, clock: FakeClock) -> None:
    manager: SessionManagerImpl = make_manager(purge_after_s=60)
    await manager.create("alice", session_id="gone")
    await manager.close("gone")
    clock.advance(120)
    report = await SessionCleanupScheduler(manager).sweep()
    assert report.purged == 1
    with pytest.raises(SessionValidationError) as info:
        await manager.create("alice", session_id="gone")
    assert info.value.field == "session_id" and "gone" in str(info.value)
    # Not "already exists" while nothing reads under it (an outside audit).
    assert "purged recently" in str(info.value) and "already exists" not in str(info.value)
    assert await manager.get_state("gone") is None


async def test_a_repeated_turn_id_is_named_by_its_place_in_the_batch(
    manager: SessionManagerImpl,
) -> None:
    """It was named ``turn.turn_id`` and said to be "already in session" when the batch
    repeated it."""
    from lexigram.ai.session.exceptions import DuplicateTurnError

    sid = (await manager.create("alice")).session_id
    await manager.add_turn(sid, make_turn(turn_id="a"))
    with pytest.raises(DuplicateTurnError) as info:
        await manager.add_turns(sid, [make_turn(turn_id="b"), make_turn(turn_id="b")])
    assert info.value.field == "turns[1].turn_id" and "twice in the batch" in str(info.value)
    with pytest.raises(DuplicateTurnError) as info:
        await manager.add_turns(sid, [make_turn(turn_id="c"), make_turn(turn_id="a")])
    assert info.value.field == "turns[1].turn_id" and "already in session" in str(info.value)
    with pytest.raises(DuplicateTurnError) as info:
        await manager.add_turn(sid, make_turn(turn_id="a"))
    assert info.value.field == "turn.turn_id"
    header = await manager.get_header(sid)
    assert header is not None and header.turn_count == 1


async def test_list_checkpoints_takes_include_turns(manager: SessionManagerImpl) -> None:
    sid = (await manager.create("alice")).session_id
    await manager.add_turn(sid, make_turn(turn_id="a"))
    await manager.checkpoint(sid)
    (bare,) = await manager.list_checkpoints(sid)
    (full,) = await manager.list_checkpoints(sid, include_turns=True)
    assert bare.state.turns == [] and [t.turn_id for t in full.state.turns] == ["a"]


async def test_str_subclass_texts_are_stored_as_their_plain_values(
    manager: SessionManagerImpl,
) -> None:
    import enum

    class User(enum.StrEnum):
        ALICE = "alice"

    state = await manager.create("alice", system_prompt=User.ALICE)
    await manager.update(state.session_id, active_tools=[User.ALICE], active_skills=[User.ALICE])
    stored = await manager.get_state(state.session_id)
    assert stored is not None and type(stored.system_prompt) is str
    assert [type(n) for n in (*stored.active_tools, *stored.active_skills)] == [str, str]
    await manager.update(state.session_id, system_prompt=User.ALICE)
    header = await manager.get_header(state.session_id)
    assert header is not None and type(header.system_prompt) is str
    from lexigram.ai.session import BranchManager

    branch = await BranchManager(manager).fork(state.session_id, User.ALICE)
    assert type(branch.branch_name) is str

    class Sid(enum.StrEnum):
        ONE = "sid-one"

    await manager.create("alice", session_id="sid-one")
    forked = await BranchManager(manager).fork(Sid.ONE, "b")
    assert type(forked.parent_session_id) is str  # the in-memory store kept the Enum


async def test_concurrent_creates_of_one_id_exactly_one_wins(manager: SessionManagerImpl) -> None:
    results = await asyncio.gather(
        *(manager.create(f"user{i}", session_id="shared") for i in range(10)),
        return_exceptions=True,
    )
    wins = [r for r in results if not isinstance(r, BaseException)]
    assert len(wins) == 1
    assert all(
        isinstance(r, SessionValidationError) and r.field == "session_id"
        for r in results
        if isinstance(r, BaseException)
    )
    stored = await manager.get_state("shared")
    assert stored is not None and stored.user_id == wins[0].user_id


@pytest.mark.parametrize(
    "bad",
    ["", "   ", "x" * (MAX_ID_LENGTH + 1), "a\x00b", "tab\there", "lone\ud800", 42, b"bytes"],
)
async def test_an_invalid_chosen_id_is_refused(manager: SessionManagerImpl, bad: Any) -> None:
    with pytest.raises(SessionValidationError) as info:
        await manager.create("alice", session_id=bad)
    assert info.value.field == "session_id"
    assert await manager.count_live_sessions("alice") == 0


async def test_create_and_update_name_the_field(manager: SessionManagerImpl) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"user_id": "u" * 1_000_000}, "user_id"),
        ({"user_id": "u\ud800"}, "user_id"),
        ({"metadata": {"k": "\ud800"}}, "metadata.k"),
        ({"variables": {"k": [1, float("nan")]}}, "variables.k[1]"),
        ({"system_prompt": "\udfff"}, "system_prompt"),
        ({"active_tools": ["ok", 3]}, "active_tools[1]"),
    ]
    for fields, field in cases:
        args = {"user_id": "alice", **fields}
        with pytest.raises(SessionValidationError) as info:
            await manager.create(**args)
        assert info.value.field == field
    assert await manager.count_live_sessions("alice") == 0
    state = await manager.create("alice", variables={"keep": 1})
    with pytest.raises(SessionValidationError) as info:
        await manager.update(state.session_id, variables={"k": float("inf")})
    assert info.value.field == "variables.k"
    with pytest.raises(SessionValidationError) as info:
        await manager.checkpoint(state.session_id, {"note": 2**64})
    assert info.value.field == "metadata.note"
    stored = await manager.get_state(state.session_id)
    assert stored is not None and stored.variables == {"keep": 1}
    assert await manager.list_checkpoints(state.session_id) == []


async def test_turn_fields_are_named_per_entry_point(manager: SessionManagerImpl) -> None:
    state = await manager.create("alice")
    sid = state.session_id
    with pytest.raises(SessionValidationError) as info:
        await manager.add_turn(sid, make_turn(1, tokens=2**63 - 1))
    assert info.value.field == "turn.tokens_used"
    with pytest.raises(SessionValidationError) as info:
        await manager.add_turns(sid, [make_turn(1), make_turn(2, cost=float("inf"))])
    assert info.value.field == "turns[1].cost"
    with pytest.raises(SessionValidationError) as info:
        await manager.add_message(sid, "user", "hi", tokens_used=2**53 + 1)
    assert info.value.field == "tokens_used"
    with pytest.raises(SessionValidationError) as info:
        await manager.add_message(sid, "user", "hi", metadata={"foo": "\ud800"})
    assert info.value.field == "metadata.foo"
    with pytest.raises(SessionValidationError) as info:
        await manager.add_message(sid, "user", "\ud800")
    assert info.value.field == "content"
    with pytest.raises(SessionValidationError) as info:
        await manager.add_message(sid, "user", "hi", metadata=5)  # type: ignore[arg-type]
    assert info.value.field == "metadata"
    stored = await manager.get_state(sid)
    assert stored is not None
    assert (stored.turn_count, stored.total_tokens, stored.total_cost, stored.turns) == (
        0,
        0,
        0.0,
        [],
    )
    assert stored.updated_at == state.updated_at


async def test_totals_stay_exact_and_bounded(manager: SessionManagerImpl) -> None:
    sid = (await manager.create("alice")).session_id
    await manager.add_turn(sid, make_turn(1, tokens=MAX_SAFE_INT - 5, cost=0.5))
    with pytest.raises(SessionValidationError) as info:
        await manager.add_turns(sid, [make_turn(2, tokens=3), make_turn(3, tokens=3)])
    assert info.value.field == "total_tokens"
    await manager.add_turn(sid, make_turn(4, tokens=5, cost=0.25))
    stored = await manager.get_state(sid)
    assert stored is not None
    assert stored.total_tokens == MAX_SAFE_INT == sum(t.tokens_used for t in stored.turns)
    assert stored.total_cost == 0.75
    await manager.pop_turn(sid)
    stored = await manager.get_state(sid)
    assert stored is not None
    assert (stored.total_tokens, stored.total_cost) == (MAX_SAFE_INT - 5, 0.5)


async def test_expired_session_refuses_writes_with_its_clock(
    make_manager: Make, clock: FakeClock
) -> None:
    manager: SessionManagerImpl = make_manager(session_ttl=60)
    state = await manager.create("alice", session_id="short")
    assert state.created_at == clock.now  # stamped by the store's clock
    clock.advance(61)
    header = await manager.get_header("short")
    assert header is not None and header.status == SessionStatus.EXPIRED
    assert header.updated_at == clock.now - timedelta(seconds=61)
    with pytest.raises(SessionExpiredError):
        await manager.add_turn("short", replace(make_turn(1), content="late"))
    stored = await manager.get_state("short")
    assert stored is not None and stored.turns == []


@pytest.mark.parametrize("option", ["purge_after_s", "interval_s", "tombstone_s"])
async def test_sweeper_durations_past_a_thousand_years_are_refused(option: str) -> None:
    manager = SessionManagerImpl(InMemorySessionStore())
    with pytest.raises(SessionValidationError) as info:
        SessionCleanupScheduler(manager, **{option: 10**11})
    assert info.value.field == option
    report = await SessionCleanupScheduler(manager, purge_after_s=MAX_DURATION_S).sweep()
    assert report.purged == 0
