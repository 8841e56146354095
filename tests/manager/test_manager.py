"""SessionManagerImpl: every rule of SPEC §5 over the in-memory store."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from lexigram.contracts.ai.session import SessionError as ContractSessionError
from lexigram.contracts.ai.session import SessionManagerProtocol, SessionStatus, SessionTurn

from lexigram.ai.session import (
    CheckpointNotFoundError,
    DuplicateTurnError,
    SessionCapacityError,
    SessionClosedError,
    SessionExpiredError,
    SessionManager,
    SessionManagerImpl,
    SessionNotFoundError,
    SessionTransitionError,
    SessionValidationError,
    TurnLimitReachedError,
)
from lexigram.ai.session.testing import FakeClock, make_turn

A, S, C, E = (
    SessionStatus.ACTIVE,
    SessionStatus.SUSPENDED,
    SessionStatus.CLOSED,
    SessionStatus.EXPIRED,
)


def test_alias_and_protocol(manager: SessionManagerImpl) -> None:
    assert SessionManager is SessionManagerImpl
    assert isinstance(manager, SessionManagerProtocol)


async def test_create_defaults(make_manager) -> None:  # type: ignore[no-untyped-def]
    manager = make_manager(default_system_prompt="You are helpful.")
    state = await manager.create("alice", {"source": "test"})
    assert state.status == A
    assert state.user_id == "alice"
    assert state.metadata == {"source": "test"}
    assert state.system_prompt == "You are helpful."
    assert state.turn_count == 0 and state.turns == []
    assert len(state.session_id) >= 22  # 128 random bits, URL-safe
    explicit = await manager.create("alice", system_prompt="Other")
    assert explicit.system_prompt == "Other"
    assert explicit.session_id != state.session_id


@pytest.mark.parametrize("bad", ["", "   ", None, 42])
async def test_create_rejects_bad_user_id(manager: SessionManagerImpl, bad: object) -> None:
    with pytest.raises(SessionValidationError, match="user_id"):
        await manager.create(bad)  # type: ignore[arg-type]


async def test_create_rejects_unstorable_metadata(manager: SessionManagerImpl) -> None:
    with pytest.raises(SessionValidationError, match="metadata"):
        await manager.create("alice", {"when": object()})
    with pytest.raises(SessionValidationError, match="metadata"):
        await manager.create("alice", ["not", "a", "dict"])  # type: ignore[arg-type]
    assert await manager.count_live_sessions("alice") == 0


async def test_add_turn_updates_totals(manager: SessionManagerImpl, clock: FakeClock) -> None:
    state = await manager.create("alice")
    clock.advance(10)
    await manager.add_turn(state.session_id, make_turn(1, tokens=5, cost=0.25))
    await manager.add_turn(state.session_id, make_turn(2, tokens=7, cost=0.5))
    got = await manager.get_state(state.session_id)
    assert got is not None
    assert got.turn_count == 2
    assert got.total_tokens == 12
    assert got.total_cost == pytest.approx(0.75)
    assert got.updated_at == clock.now
    assert [t.content for t in got.turns] == ["message 1", "message 2"]


async def test_add_message_builds_a_turn(manager: SessionManagerImpl) -> None:
    state = await manager.create("alice")
    turn = await manager.add_message(
        state.session_id, "assistant", "hello", tokens_used=3, model="m"
    )
    assert turn.role == "assistant" and turn.model == "m"
    assert (await manager.get_turns(state.session_id)) == [turn]


async def test_add_turn_errors(manager: SessionManagerImpl) -> None:
    with pytest.raises(SessionNotFoundError):
        await manager.add_turn("missing", make_turn(1))
    state = await manager.create("alice")
    with pytest.raises(SessionValidationError, match="turn"):
        await manager.add_turn(state.session_id, {"role": "user"})  # type: ignore[arg-type]
    with pytest.raises(SessionValidationError, match="turn.role"):
        await manager.add_turn(state.session_id, replace(make_turn(1), role=""))
    with pytest.raises(SessionValidationError, match="turn.tokens_used"):
        await manager.add_turn(state.session_id, replace(make_turn(1), tokens_used=-1))
    with pytest.raises(SessionValidationError, match="turn.metadata"):
        await manager.add_turn(state.session_id, make_turn(1, metadata={"x": {1, 2}}))
    with pytest.raises(SessionValidationError, match="turn.content"):
        await manager.add_turn(state.session_id, replace(make_turn(1), content=None))  # type: ignore[arg-type]
    got = await manager.get_state(state.session_id)
    assert got is not None and got.turn_count == 0


async def test_duplicate_turn_id_rejected(manager: SessionManagerImpl) -> None:
    state = await manager.create("alice")
    turn = make_turn(1)
    await manager.add_turn(state.session_id, turn)
    with pytest.raises(DuplicateTurnError) as info:
        await manager.add_turn(state.session_id, turn)
    assert turn.turn_id in str(info.value)
    got = await manager.get_state(state.session_id)
    assert got is not None and got.turn_count == 1


async def test_turn_cap_closes_the_session(make_manager) -> None:  # type: ignore[no-untyped-def]
    closed: list[str] = []
    manager = make_manager(max_turns_per_session=3, auto_checkpoint_interval=None)
    from lexigram.ai.session.hooks import HOOK_SESSION_CLOSED

    async def on_close(*, payload: object) -> None:
        closed.append(getattr(payload, "reason", ""))

    manager.notifier.hooks.register_action(HOOK_SESSION_CLOSED, on_close)
    try:
        state = await manager.create("alice")
        for i in range(3):
            await manager.add_turn(state.session_id, make_turn(i))
        got = await manager.get_state(state.session_id)
        assert got is not None and got.status == C and got.turn_count == 3
        with pytest.raises(SessionCapacityError):
            await manager.add_turn(state.session_id, make_turn(9))
        with pytest.raises(TurnLimitReachedError):
            await manager.add_turn(state.session_id, make_turn(10))
        assert closed == ["max_turns"]
    finally:
        manager.notifier.hooks.unregister_action(HOOK_SESSION_CLOSED, on_close)


async def test_closed_session_refuses_turns(manager: SessionManagerImpl) -> None:
    state = await manager.create("alice")
    await manager.close(state.session_id)
    with pytest.raises(SessionClosedError):
        await manager.add_turn(state.session_id, make_turn(1))
    with pytest.raises(SessionTransitionError):
        await manager.close(state.session_id)
    with pytest.raises(SessionTransitionError):
        await manager.suspend(state.session_id)
    with pytest.raises(SessionTransitionError):
        await manager.resume(state.session_id)


async def test_suspend_and_resume(manager: SessionManagerImpl) -> None:
    state = await manager.create("alice")
    suspended = await manager.suspend(state.session_id)
    assert suspended.status == S
    with pytest.raises(SessionTransitionError):
        await manager.add_turn(state.session_id, make_turn(1))
    with pytest.raises(SessionTransitionError):
        await manager.suspend(state.session_id)
    resumed = await manager.resume(state.session_id)
    assert resumed is not None and resumed.status == A
    await manager.add_turn(state.session_id, make_turn(1))
    before = await manager.get_header(state.session_id)
    with pytest.raises(SessionTransitionError) as info:  # ACTIVE -> ACTIVE is not a move
        await manager.resume(state.session_id)
    assert (info.value.from_status, info.value.to_status) == ("active", "active")
    after = await manager.get_header(state.session_id)
    assert after == before and after is not None and after.status == A
    assert await manager.resume("missing") is None
    await manager.suspend(state.session_id)
    await manager.close(state.session_id)
    got = await manager.get_state(state.session_id)
    assert got is not None and got.status == C


async def test_ttl_expiry(make_manager, clock: FakeClock) -> None:  # type: ignore[no-untyped-def]
    manager = make_manager(session_ttl=60)
    state = await manager.create("alice")
    clock.advance(30)
    await manager.add_turn(state.session_id, make_turn(1))
    clock.advance(59)
    got = await manager.get_state(state.session_id)
    assert got is not None and got.status == A
    clock.advance(2)
    got = await manager.get_state(state.session_id)
    assert got is not None and got.status == E
    with pytest.raises(SessionExpiredError):
        await manager.add_turn(state.session_id, make_turn(2))
    with pytest.raises(SessionExpiredError):
        await manager.resume(state.session_id)
    with pytest.raises(SessionExpiredError):
        await manager.suspend(state.session_id)
    with pytest.raises(SessionExpiredError):
        await manager.update(state.session_id, variables={"a": 1})
    assert await manager.count_live_sessions("alice") == 0
    # EXPIRED is terminal: each move out of it is also an illegal transition.
    moves = (manager.resume, manager.suspend, manager.close)
    for move, target in zip(moves, ("active", "suspended", "closed"), strict=True):
        with pytest.raises(SessionTransitionError) as caught:
            await move(state.session_id)
        assert isinstance(caught.value, SessionExpiredError)
        assert (caught.value.from_status, caught.value.to_status) == ("expired", target)
        assert caught.value.code == "LEX_ERR_SES_103"
    with pytest.raises(SessionExpiredError) as not_a_move:
        await manager.add_turn(state.session_id, make_turn(3))
    assert not isinstance(not_a_move.value, SessionTransitionError)


async def test_ttl_zero_never_expires(make_manager, clock: FakeClock) -> None:  # type: ignore[no-untyped-def]
    manager = make_manager(session_ttl=0)
    state = await manager.create("alice")
    clock.advance(10**8)
    got = await manager.get_state(state.session_id)
    assert got is not None and got.status == A


async def test_user_cap(make_manager) -> None:  # type: ignore[no-untyped-def]
    manager = make_manager(max_sessions_per_user=2)
    first = await manager.create("alice")
    await manager.create("alice")
    with pytest.raises(SessionCapacityError, match="alice"):
        await manager.create("alice")
    await manager.create("bob")
    await manager.close(first.session_id)
    await manager.create("alice")


async def test_fifty_concurrent_creates_with_cap_ten(make_manager) -> None:  # type: ignore[no-untyped-def]
    manager = make_manager(max_sessions_per_user=10)
    results = await asyncio.gather(
        *(manager.create("carol") for _ in range(50)), return_exceptions=True
    )
    made = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, SessionCapacityError)]
    assert len(made) == 10 and len(refused) == 40
    assert await manager.count_live_sessions("carol") == 10


async def test_five_hundred_concurrent_add_turn(make_manager) -> None:  # type: ignore[no-untyped-def]
    manager = make_manager(max_turns_per_session=1000, auto_checkpoint_interval=50)
    state = await manager.create("dave")
    turns = [make_turn(i) for i in range(500)]
    await asyncio.gather(*(manager.add_turn(state.session_id, t) for t in turns))
    got = await manager.get_state(state.session_id)
    assert got is not None
    assert got.turn_count == 500
    assert {t.turn_id for t in got.turns} == {t.turn_id for t in turns}
    assert got.total_tokens == 500
    checkpoints = await manager.list_checkpoints(state.session_id)
    assert len(checkpoints) == 10  # one per 50 turns, exactly


async def test_no_aliasing_with_stored_state(manager: SessionManagerImpl) -> None:
    state = await manager.create("alice", variables={"k": [1]})
    await manager.add_turn(state.session_id, make_turn(1, metadata={"m": 1}))
    got = await manager.get_state(state.session_id)
    assert got is not None
    got.turns.clear()
    got.variables["k"].append(2)
    got.metadata["x"] = 1
    again = await manager.get_state(state.session_id)
    assert again is not None
    assert len(again.turns) == 1 and again.variables == {"k": [1]} and again.metadata == {}
    turns = await manager.get_turns(state.session_id)
    turns[0].metadata["m"] = 2
    assert (await manager.get_turns(state.session_id))[0].metadata == {"m": 1}


async def test_update_mutable_fields(manager: SessionManagerImpl) -> None:
    state = await manager.create("alice")
    updated = await manager.update(
        state.session_id,
        variables={"lang": "fr"},
        metadata={"tier": "pro"},
        active_tools=["search"],
        active_skills=["math"],
        system_prompt="Réponds en français.",
    )
    assert updated.variables == {"lang": "fr"}
    assert updated.metadata == {"tier": "pro"}
    assert updated.active_tools == ["search"]
    assert updated.active_skills == ["math"]
    assert updated.system_prompt == "Réponds en français."
    partial = await manager.update(state.session_id, variables={"lang": "de"})
    assert partial.metadata == {"tier": "pro"} and partial.variables == {"lang": "de"}
    with pytest.raises(SessionValidationError, match="active_tools"):
        await manager.update(state.session_id, active_tools="search")  # type: ignore[arg-type]
    with pytest.raises(SessionNotFoundError):
        await manager.update("missing", variables={})


async def test_list_sessions_pages(manager: SessionManagerImpl) -> None:
    ids = [(await manager.create("erin")).session_id for _ in range(5)]
    await manager.close(ids[0])
    page = await manager.list_sessions("erin", limit=2)
    assert [s.session_id for s in page.items] == ids[::-1][:2]
    rest = await manager.list_sessions("erin", limit=10, cursor=page.next_cursor)
    assert [s.session_id for s in rest.items] == ids[::-1][2:]
    assert rest.next_cursor is None
    closed = await manager.list_sessions("erin", status="closed")
    assert [s.session_id for s in closed.items] == [ids[0]]
    with pytest.raises(SessionValidationError, match="status"):
        await manager.list_sessions("erin", status="paused")
    with pytest.raises(SessionValidationError, match="limit"):
        await manager.list_sessions("erin", limit=0)


async def test_delete(manager: SessionManagerImpl) -> None:
    state = await manager.create("alice")
    await manager.add_turn(state.session_id, make_turn(1))
    checkpoint = await manager.checkpoint(state.session_id)
    assert await manager.delete(state.session_id) is True
    assert await manager.get_state(state.session_id) is None
    assert await manager.delete(state.session_id) is False
    with pytest.raises(CheckpointNotFoundError):
        await manager.restore(checkpoint.checkpoint_id)


async def test_get_turns_last(manager: SessionManagerImpl) -> None:
    state = await manager.create("alice")
    turns = [make_turn(i) for i in range(10)]
    await manager.add_turns(state.session_id, turns)
    assert await manager.get_turns(state.session_id, last=3) == turns[-3:]
    assert await manager.get_turns(state.session_id) == turns
    with pytest.raises(SessionValidationError, match="last"):
        await manager.get_turns(state.session_id, last=-1)


async def test_checkpoint_and_restore(make_manager) -> None:  # type: ignore[no-untyped-def]
    manager = make_manager(auto_checkpoint_interval=None, max_checkpoints_per_session=2)
    state = await manager.create("alice")
    await manager.add_turns(state.session_id, [make_turn(1), make_turn(2)])
    cp1 = await manager.checkpoint(state.session_id)
    assert len(cp1.state.turns) == 2
    await manager.add_turn(state.session_id, make_turn(3))
    await manager.update(state.session_id, variables={"after": True})
    cp2 = await manager.checkpoint(state.session_id, {"label": "three"})
    assert cp2.parent_checkpoint_id == cp1.checkpoint_id
    restored = await manager.restore(cp1.checkpoint_id)
    assert restored.turn_count == 2 and restored.status == A and restored.variables == {}
    restored = await manager.restore(cp2.checkpoint_id)
    assert restored.turn_count == 3 and restored.variables == {"after": True}
    await manager.checkpoint(state.session_id)
    listed = await manager.list_checkpoints(state.session_id)
    assert len(listed) == 2 and listed[0].checkpoint_id == cp2.checkpoint_id  # oldest first
    with pytest.raises(CheckpointNotFoundError):
        await manager.restore(cp1.checkpoint_id)


async def test_pop_and_clear(manager: SessionManagerImpl) -> None:
    state = await manager.create("alice")
    turns = [make_turn(i, tokens=2) for i in range(3)]
    await manager.add_turns(state.session_id, turns)
    assert await manager.pop_turn(state.session_id) == turns[-1]
    header = await manager.get_header(state.session_id)
    assert header is not None and header.turn_count == 2 and header.total_tokens == 4
    assert await manager.clear_turns(state.session_id) == 2
    assert await manager.get_turns(state.session_id) == []


async def test_errors_have_stable_codes() -> None:
    from lexigram.ai.session import exceptions as ex

    errors = [
        ex.SessionNotFoundError("s"),
        ex.SessionClosedError("s"),
        ex.SessionExpiredError("s"),
        ex.CheckpointNotFoundError("c"),
        ex.SessionTransitionError("s", A, C),
        ex.SessionCapacityError("too many"),
        ex.SessionValidationError("f", "bad"),
        ex.DuplicateTurnError("s", "t"),
        ex.TurnLimitReachedError("s", 3),
    ]
    codes = [e.code for e in errors]
    assert len(set(codes)) == len(codes)
    assert all(c.startswith("LEX_ERR_SES_1") for c in codes)
    assert all(
        isinstance(e, ex.SessionError) and isinstance(e, ContractSessionError) for e in errors
    )
    assert isinstance(errors[-1], ex.SessionClosedError) and isinstance(
        errors[-1], ex.SessionCapacityError
    )


def test_turn_timestamps_naive_become_utc() -> None:
    from lexigram.ai.session.stores.codec import validate_turn

    naive = SessionTurn(turn_id="t", role="user", content="x", timestamp=datetime(2026, 1, 1))
    assert validate_turn(naive).timestamp.tzinfo == UTC


async def test_a_page_behaves_as_a_sequence(manager: SessionManagerImpl) -> None:
    made = [(await manager.create("gina")).session_id for _ in range(3)]
    page = await manager.list_sessions("gina", limit=2)
    assert len(page) == 2
    assert [s.session_id for s in page] == made[::-1][:2]
    assert page[0].session_id == made[-1]
    empty = await manager.list_sessions("nobody")
    assert not empty and list(empty) == []
