"""``CheckpointManager.create(state)`` and ``suspend`` as the contract has them (an outside
SPEC audit): a whole state of the caller's own was ignored for the stored session (or
refused when never stored), and ``suspend`` returned a state without its turns."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session import (
    CheckpointManager,
    InMemorySessionStore,
    SessionConfig,
    SessionManagerImpl,
)
from lexigram.ai.session.exceptions import SessionNotFoundError, SessionValidationError


def _turn(text: str) -> SessionTurn:
    return SessionTurn(
        turn_id=uuid.uuid4().hex, role="user", content=text, timestamp=datetime.now(UTC)
    )


async def test_a_state_never_stored_is_refused() -> None:
    """A checkpoint of no session escaped erase_user, export_user and delete, and an
    encrypting store wrote it in clear (a regression audit of the first version)."""
    store = InMemorySessionStore()
    checkpoints = CheckpointManager(store, 2)
    state = SessionState(
        session_id="s1", user_id="u", status=SessionStatus.ACTIVE, turns=[_turn("a")],
        turn_count=1,
    )
    with pytest.raises(SessionNotFoundError):
        await checkpoints.create(state, metadata={"label": "x"})
    assert await store.list_checkpoint_headers("s1") == []


async def test_a_changed_state_is_checkpointed_as_given_the_stored_one_atomically() -> None:
    manager = SessionManagerImpl(InMemorySessionStore(), SessionConfig(auto_checkpoint_interval=0))
    sid = (await manager.create("u")).session_id
    await manager.add_turn(sid, _turn("a"))
    stored = await manager.get_state(sid)
    assert stored is not None
    changed = dataclasses.replace(
        stored, turns=[*stored.turns, _turn("b")], turn_count=2, variables={"x": 1}
    )
    given = await manager.checkpoints.create(changed)
    assert [t.content for t in given.state.turns] == ["a", "b"]
    assert given.state.variables == {"x": 1}
    same = await manager.checkpoints.create(stored)  # the stored session: its snapshot
    assert [t.content for t in same.state.turns] == ["a"]
    header = await manager.get_header(sid)
    assert header is not None and header.checkpoint_id == same.checkpoint_id


async def test_suspend_returns_the_turns_too() -> None:
    manager = SessionManagerImpl(InMemorySessionStore(), SessionConfig(auto_checkpoint_interval=0))
    sid = (await manager.create("u")).session_id
    await manager.add_turns(sid, [_turn("a"), _turn("b")])
    suspended = await manager.suspend(sid)
    assert suspended.status == SessionStatus.SUSPENDED
    assert suspended.turn_count == len(suspended.turns) == 2


async def test_a_changed_state_whose_count_does_not_match_its_turns_is_refused() -> None:
    """Turns added by hand without the count: the stored session was checkpointed
    instead and the change dropped silently (an outside differential audit)."""
    manager = SessionManagerImpl(InMemorySessionStore(), SessionConfig(auto_checkpoint_interval=0))
    sid = (await manager.create("u")).session_id
    await manager.add_turn(sid, _turn("a"))
    stored = await manager.get_state(sid)
    assert stored is not None
    changed = dataclasses.replace(stored, turns=[*stored.turns, _turn("b")], variables={"x": 2})
    with pytest.raises(SessionValidationError) as caught:
        await manager.checkpoints.create(changed)
    assert caught.value.field == "state.turn_count"
    assert await manager.list_checkpoints(sid) == []
    header_only = dataclasses.replace(stored, turns=[])  # a header: the stored session
    taken = await manager.checkpoints.create(header_only)
    assert [t.content for t in taken.state.turns] == ["a"]


async def test_a_changed_states_totals_are_those_of_its_turns() -> None:
    # Before: the totals were kept as read while a turn was added by hand, and restore
    # made them the session's (every later append built on them).
    config = SessionConfig(auto_checkpoint_interval=None)
    manager = SessionManagerImpl(InMemorySessionStore(), config)
    sid = (await manager.create("u")).session_id
    await manager.add_turns(sid, [
        dataclasses.replace(_turn("a"), tokens_used=10, cost=0.5),
        dataclasses.replace(_turn("b"), tokens_used=10, cost=0.5),
    ])
    read = await manager.get_state(sid)
    assert read is not None
    extra = dataclasses.replace(_turn("c"), tokens_used=100, cost=4.0)
    mine = dataclasses.replace(read, turns=[*read.turns, extra], turn_count=3)
    checkpoint = await manager.checkpoints.create(mine)
    assert (checkpoint.state.total_tokens, checkpoint.state.total_cost) == (120, 5.0)
    restored = await manager.restore(checkpoint.checkpoint_id)
    assert (restored.turn_count, restored.total_tokens, restored.total_cost) == (3, 120, 5.0)


@pytest.mark.parametrize(
    ("cost", "tokens", "field"),
    [
        (float("nan"), 0, "checkpoint.state.turns[1].cost"),
        (-1.0, 0, "checkpoint.state.turns[1].cost"),
        (-0.2, 0, "checkpoint.state.turns[1].cost"),
        (0.0, 2**53, "checkpoint.state.turns[1].tokens_used"),
    ],
)
async def test_a_bad_turn_cost_in_a_changed_state_is_named_by_its_turn(
    cost: float, tokens: int, field: str
) -> None:
    # Before (a regression of the totals fix): the error named the recomputed
    # checkpoint.state.total_cost, a field the caller did not give.
    manager = SessionManagerImpl(InMemorySessionStore(), SessionConfig(auto_checkpoint_interval=0))
    sid = (await manager.create("zed")).session_id
    await manager.add_turn(sid, dataclasses.replace(_turn("a"), cost=0.5))
    read = await manager.get_state(sid)
    assert read is not None
    bad = dataclasses.replace(_turn("b"), cost=cost, tokens_used=tokens)
    changed = dataclasses.replace(read, turns=[*read.turns, bad], turn_count=2)
    with pytest.raises(SessionValidationError) as caught:
        await manager.checkpoints.create(changed)
    assert caught.value.field == field


async def test_a_given_state_checkpoint_racing_a_delete_and_a_new_owner_is_taken_back(
    make_env: Any,
) -> None:
    """``create(edited_state)`` checked that the session existed, then saved: a delete
    (and another user creating the same id) in between left a checkpoint of Bob's turns
    listed under, and restorable into, Eve's session, or belonging to no session at all,
    out of reach of delete and erase_user (an outside audit)."""
    env = await make_env(auto_checkpoint_interval=None)
    manager, store = env.manager, env.store
    sid = f"ticket-{uuid.uuid4().hex[:8]}"
    await manager.create("bob", session_id=sid)
    await manager.add_message(sid, "user", "bob's secret")
    state = await manager.get_state(sid)
    assert state is not None
    edited = dataclasses.replace(state, turns=[*state.turns, _turn("edited")], turn_count=2)
    real_save = store.save_checkpoint

    async def deleted_first(checkpoint: Any) -> None:
        await manager.delete(sid)  # another process deletes bob's session ...
        await manager.create("eve", session_id=sid)  # ... and eve takes the id
        await real_save(checkpoint)

    store.save_checkpoint = deleted_first  # type: ignore[method-assign]
    try:
        with pytest.raises(SessionNotFoundError):
            await env.checkpoints.create(edited, metadata={"label": "x"})
    finally:
        del store.save_checkpoint  # type: ignore[method-assign]
    assert await manager.list_checkpoints(sid) == []
    eve = await manager.get_state(sid)
    assert eve is not None and eve.user_id == "eve" and eve.turns == []


async def test_a_given_state_with_its_created_at_or_user_edited_is_still_checkpointed(
    make_env: Any,
) -> None:
    """The re-read after the save compared the caller's edited created_at / user_id
    with the stored session, took the checkpoint back and said the (existing) session
    was not found (a regression audit of the fix above)."""
    from datetime import timedelta

    env = await make_env(auto_checkpoint_interval=None)
    manager = env.manager
    sid = (await manager.create("kim")).session_id
    await manager.add_message(sid, "user", "hello")
    state = await manager.get_state(sid)
    assert state is not None
    for edited in (
        dataclasses.replace(state, created_at=state.created_at - timedelta(hours=1),
                            variables={"v": 1}),
        dataclasses.replace(state, user_id="kim2", variables={"v": 2}),
    ):
        checkpoint = await env.checkpoints.create(edited)
        assert checkpoint.state.variables == edited.variables
    assert len(await manager.list_checkpoints(sid)) == 2
