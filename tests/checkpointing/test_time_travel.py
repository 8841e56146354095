"""Checkpoints and time travel through the manager, on every backend."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from lexigram.contracts.ai.session import SessionStatus
from lexigram.hooks import HookRegistry

from lexigram.ai.session.checkpointing import CheckpointManager
from lexigram.ai.session.exceptions import (
    CheckpointNotFoundError,
    SessionClosedError,
    SessionNotFoundError,
    SessionTransitionError,
    SessionValidationError,
)
from lexigram.ai.session.hooks import HOOK_CHECKPOINT_CREATED, HOOK_CHECKPOINT_RESTORED
from lexigram.ai.session.manager.core import SessionManagerImpl

from .harness import EnvFactory, add, assert_totals_exact, ids, turn


@pytest.mark.parametrize("interval", [None, 10], ids=["no-auto", "auto-10"])
async def test_restore_a_add_turns_then_restore_b(
    make_env: EnvFactory, interval: int | None
) -> None:
    """30 turns, A at 10, B at 20, restore A, add 5, restore B -> exactly B's 20 turns."""
    env = await make_env(auto_checkpoint_interval=interval)
    m = env.manager
    sid = (await m.create("alice", variables={"phase": "start"})).session_id
    turns = await add(env, sid, 0, 10)
    await m.update(sid, variables={"phase": "A"})
    cp_a = await m.checkpoint(sid, {"label": "A"})
    turns += await add(env, sid, 10, 10)
    await m.update(sid, variables={"phase": "B"}, metadata={"m": 2}, active_tools=["search"])
    cp_b = await m.checkpoint(sid, {"label": "B"})
    turns += await add(env, sid, 20, 10)
    await m.update(sid, variables={"phase": "end"})

    restored = await m.restore(cp_a.checkpoint_id)
    assert ids(restored.turns) == ids(turns[:10])
    assert restored.variables == {"phase": "A"}
    assert restored.status == SessionStatus.ACTIVE
    assert restored.checkpoint_id == cp_a.checkpoint_id
    assert_totals_exact(restored)

    extra = await add(env, sid, 100, 5)
    now = await m.get_state(sid)
    assert now is not None and ids(now.turns) == ids(turns[:10] + extra)
    assert_totals_exact(now)

    restored = await m.restore(cp_b.checkpoint_id)
    assert ids(restored.turns) == ids(turns[:20])
    assert [t.content for t in restored.turns] == [t.content for t in turns[:20]]
    assert restored.turns == turns[:20]
    assert restored.variables == {"phase": "B"}
    assert restored.metadata == {"m": 2}
    assert restored.active_tools == ["search"]
    assert restored.status == SessionStatus.ACTIVE
    assert_totals_exact(restored)

    # What is stored is the restored state, also through a fresh store instance.
    again = await (await make_env()).manager.get_state(sid)
    assert again is not None and again.turns == turns[:20] and again.turn_count == 20
    # A is still restorable after all this, and so is B after it.
    back_to_a = await m.restore(cp_a.checkpoint_id)
    assert ids(back_to_a.turns) == ids(turns[:10])
    assert ids((await m.restore(cp_b.checkpoint_id)).turns) == ids(turns[:20])


async def test_restore_then_new_turns_branch_the_timeline(make_env: EnvFactory) -> None:
    """Turns added after a restore form a new timeline that can itself be checkpointed."""
    env = await make_env()
    m = env.manager
    sid = (await m.create("alice")).session_id
    base = await add(env, sid, 0, 4)
    cp_a = await m.checkpoint(sid)
    old_future = await add(env, sid, 4, 3)
    cp_old = await m.checkpoint(sid)
    await m.restore(cp_a.checkpoint_id)
    new_future = await add(env, sid, 50, 2)
    cp_new = await m.checkpoint(sid)
    assert cp_new.parent_checkpoint_id == cp_a.checkpoint_id
    assert ids((await m.restore(cp_old.checkpoint_id)).turns) == ids(base + old_future)
    assert ids((await m.restore(cp_new.checkpoint_id)).turns) == ids(base + new_future)
    # A turn id of the abandoned future is free again on this timeline.
    await m.add_turn(sid, old_future[0])
    state = await m.get_state(sid)
    assert state is not None and ids(state.turns) == ids(base + new_future + old_future[:1])
    assert_totals_exact(state)


@pytest.mark.parametrize("interval", [3, 5])
async def test_auto_checkpoint_every_n_turns(make_env: EnvFactory, interval: int) -> None:
    env = await make_env(auto_checkpoint_interval=interval)
    m = env.manager
    sid = (await m.create("alice")).session_id
    turns = await add(env, sid, 0, 17)
    listed = await m.list_checkpoints(sid)
    expected_counts = list(range(interval, 18, interval))
    assert [c.state.turn_count for c in listed] == expected_counts  # oldest first
    assert all(c.metadata.get("auto") is True for c in listed)
    assert [c.metadata["turn_count"] for c in listed] == expected_counts
    oldest = listed[0]
    restored = await m.restore(oldest.checkpoint_id)
    assert ids(restored.turns) == ids(turns[:interval])


async def test_auto_checkpoint_batch_crossing_a_multiple(make_env: EnvFactory) -> None:
    """An append of several turns that crosses a multiple of N checkpoints once, at its end."""
    env = await make_env(auto_checkpoint_interval=4)
    m = env.manager
    sid = (await m.create("alice")).session_id
    await add(env, sid, 0, 3)
    assert await m.list_checkpoints(sid) == []
    await m.add_turns(sid, [turn(i) for i in range(3, 6)])  # 3 -> 6 crosses 4
    listed = await m.list_checkpoints(sid)
    assert [c.state.turn_count for c in listed] == [6]
    await m.add_turns(sid, [turn(i) for i in range(6, 8)])  # 6 -> 8 crosses 8
    await m.add_turns(sid, [turn(i) for i in range(8, 11)])  # 8 -> 11: no multiple crossed
    assert [c.state.turn_count for c in await m.list_checkpoints(sid)] == [6, 8]


@pytest.mark.parametrize("interval", [None, 0])
async def test_no_auto_checkpoint_when_disabled(make_env: EnvFactory, interval: int | None) -> None:
    env = await make_env(auto_checkpoint_interval=interval)
    sid = (await env.manager.create("alice")).session_id
    await add(env, sid, 0, 25)
    assert await env.manager.list_checkpoints(sid) == []
    header = await env.manager.get_header(sid)
    assert header is not None and header.checkpoint_id is None


async def test_retention_prunes_the_oldest_through_the_manager(make_env: EnvFactory) -> None:
    env = await make_env(auto_checkpoint_interval=2, max_checkpoints_per_session=3)
    m = env.manager
    sid = (await m.create("alice")).session_id
    turns = await add(env, sid, 0, 8)  # autos at 2, 4, 6, 8
    all_autos = await m.list_checkpoints(sid)
    assert [c.state.turn_count for c in all_autos] == [4, 6, 8]
    manual = await m.checkpoint(sid, {"label": "manual"})  # prunes the one at 4
    listed = await m.list_checkpoints(sid)
    assert [c.checkpoint_id for c in listed] == [
        all_autos[1].checkpoint_id,
        all_autos[2].checkpoint_id,
        manual.checkpoint_id,
    ]
    pruned = all_autos[0].checkpoint_id
    with pytest.raises(CheckpointNotFoundError):
        await env.checkpoints.get(pruned)
    with pytest.raises(CheckpointNotFoundError):
        await m.restore(pruned)
    # The survivors are whole.
    for cp in listed:
        restored = await m.restore(cp.checkpoint_id)
        assert ids(restored.turns) == ids(turns[: cp.state.turn_count])
        assert_totals_exact(restored)


async def test_retention_is_per_session(make_env: EnvFactory) -> None:
    env = await make_env(max_checkpoints_per_session=2)
    m = env.manager
    one = (await m.create("alice")).session_id
    two = (await m.create("alice")).session_id
    for _ in range(3):
        await m.checkpoint(one)
    kept = await m.checkpoint(two)
    assert len(await m.list_checkpoints(one)) == 2
    assert [c.checkpoint_id for c in await m.list_checkpoints(two)] == [kept.checkpoint_id]


async def test_parent_chain_and_oldest_first(make_env: EnvFactory) -> None:
    env = await make_env()
    m = env.manager
    sid = (await m.create("alice")).session_id
    made = []
    for i in range(4):
        await add(env, sid, i * 10, 2)
        made.append(await m.checkpoint(sid, {"i": i}))
    assert made[0].parent_checkpoint_id is None
    for prev, cur in itertools.pairwise(made):
        assert cur.parent_checkpoint_id == prev.checkpoint_id
    listed = await env.checkpoints.list(sid)
    assert [c.checkpoint_id for c in listed] == [c.checkpoint_id for c in made]
    assert [c.metadata for c in listed] == [{"i": 0}, {"i": 1}, {"i": 2}, {"i": 3}]
    assert all(c.state.turns == [] for c in listed)  # headers only by default
    assert [c.state.turn_count for c in listed] == [2, 4, 6, 8]
    full = await env.checkpoints.list(sid, include_turns=True)
    assert [len(c.state.turns) for c in full] == [2, 4, 6, 8]
    header = await m.get_header(sid)
    assert header is not None and header.checkpoint_id == made[-1].checkpoint_id
    # After a restore the chain continues from the restored checkpoint.
    await m.restore(made[1].checkpoint_id)
    nxt = await m.checkpoint(sid)
    assert nxt.parent_checkpoint_id == made[1].checkpoint_id


async def test_get_and_delete(make_env: EnvFactory) -> None:
    env = await make_env()
    m, cps = env.manager, env.checkpoints
    sid = (await m.create("alice", variables={"k": 1})).session_id
    turns = await add(env, sid, 0, 3)
    first = await cps.create(sid, metadata={"label": "first"})
    await add(env, sid, 3, 2)
    second = await cps.create(sid)
    got = await cps.get(first.checkpoint_id)
    assert got.checkpoint_id == first.checkpoint_id and got.session_id == sid
    assert got.state.turns == turns and got.state.variables == {"k": 1}
    assert got.metadata == {"label": "first"}
    await cps.delete(second.checkpoint_id)
    header = await m.get_header(sid)
    assert header is not None and header.checkpoint_id == first.checkpoint_id
    with pytest.raises(CheckpointNotFoundError) as info:
        await cps.get(second.checkpoint_id)
    assert info.value.checkpoint_id == second.checkpoint_id
    with pytest.raises(CheckpointNotFoundError):
        await cps.delete(second.checkpoint_id)
    with pytest.raises(CheckpointNotFoundError):
        await cps.restore(second.checkpoint_id)
    assert [c.checkpoint_id for c in await cps.list(sid)] == [first.checkpoint_id]
    assert ids((await cps.restore(first.checkpoint_id)).turns) == ids(turns)


async def test_create_takes_a_state_or_an_id(make_env: EnvFactory) -> None:
    env = await make_env()
    m, cps = env.manager, env.checkpoints
    state = await m.create("alice")
    await add(env, state.session_id, 0, 2)
    by_state = await cps.create(state, metadata={"via": "state"})
    by_id = await cps.create(state.session_id)
    # A state names the session: what is stored now is checkpointed.
    assert len(by_state.state.turns) == 2 and by_state.metadata == {"via": "state"}
    assert by_id.parent_checkpoint_id == by_state.checkpoint_id
    with pytest.raises(SessionNotFoundError):
        await cps.create("no-such-session")
    with pytest.raises(SessionValidationError) as info:
        await cps.create(state, metadata=["not", "a", "dict"])  # type: ignore[arg-type]
    assert info.value.field == "metadata"
    with pytest.raises(SessionValidationError):
        await m.restore("")
    with pytest.raises(SessionValidationError):
        CheckpointManager(env.store, 0)


async def test_restore_reactivates_a_suspended_session(make_env: EnvFactory) -> None:
    env = await make_env()
    m = env.manager
    sid = (await m.create("alice")).session_id
    turns = await add(env, sid, 0, 3)
    cp = await m.checkpoint(sid)
    await add(env, sid, 3, 2)
    await m.suspend(sid)
    with pytest.raises(SessionTransitionError):
        await m.add_turn(sid, turn(99))
    restored = await m.restore(cp.checkpoint_id)
    assert restored.status == SessionStatus.ACTIVE
    assert ids(restored.turns) == ids(turns)
    more = await add(env, sid, 10, 1)
    state = await m.get_state(sid)
    assert state is not None and ids(state.turns) == ids(turns + more)


async def test_restore_of_a_closed_session_is_refused(make_env: EnvFactory) -> None:
    env = await make_env()
    m = env.manager
    sid = (await m.create("alice")).session_id
    turns = await add(env, sid, 0, 2)
    cp = await m.checkpoint(sid)
    await add(env, sid, 2, 2)
    await m.close(sid)
    with pytest.raises(SessionClosedError):
        await m.restore(cp.checkpoint_id)
    state = await m.get_state(sid)
    assert state is not None and state.status == SessionStatus.CLOSED
    assert len(state.turns) == 4 and ids(state.turns[:2]) == ids(turns)


async def test_turn_cap_closes_and_checkpoints_survive(make_env: EnvFactory) -> None:
    env = await make_env(max_turns_per_session=6, auto_checkpoint_interval=3)
    m = env.manager
    sid = (await m.create("alice")).session_id
    turns = await add(env, sid, 0, 6)
    header = await m.get_header(sid)
    assert header is not None and header.status == SessionStatus.CLOSED
    listed = await m.list_checkpoints(sid)
    assert [c.state.turn_count for c in listed] == [3, 6]
    got = await env.checkpoints.get(listed[0].checkpoint_id)
    assert ids(got.state.turns) == ids(turns[:3])


async def test_restore_after_pop_and_clear(make_env: EnvFactory) -> None:
    env = await make_env()
    m = env.manager
    sid = (await m.create("alice")).session_id
    turns = await add(env, sid, 0, 5)
    cp = await m.checkpoint(sid)
    await m.pop_turn(sid)
    await m.clear_turns(sid)
    restored = await m.restore(cp.checkpoint_id)
    assert restored.turns == turns
    assert_totals_exact(restored)


async def test_restore_is_atomic_against_concurrent_appends(make_env: EnvFactory) -> None:
    """Whatever the interleaving, the result is the checkpoint plus whole appends."""
    env = await make_env()
    m = env.manager
    sid = (await m.create("alice")).session_id
    base = await add(env, sid, 0, 6)
    cp = await m.checkpoint(sid)
    await add(env, sid, 6, 6)
    racers = [turn(200 + i) for i in range(6)]
    other = (await make_env()).manager  # a second store instance: another "process"
    results = await asyncio.gather(
        m.restore(cp.checkpoint_id),
        *((m if i % 2 else other).add_turn(sid, t) for i, t in enumerate(racers)),
        return_exceptions=True,
    )
    assert not [r for r in results if isinstance(r, BaseException)]
    state = await m.get_state(sid)
    assert state is not None
    assert ids(state.turns[:6]) == ids(base)
    tail = ids(state.turns[6:])
    # Concurrent appends commit in any order; each one is whole, and none is doubled.
    assert set(tail) <= {t.turn_id for t in racers}
    assert len(tail) == len(set(tail))
    assert_totals_exact(state)


async def test_checkpoint_hooks_fire(make_env: EnvFactory) -> None:
    env = await make_env()
    hooks = HookRegistry("ai_session_test")
    seen: list[tuple[str, str]] = []

    async def created(*, payload: object) -> None:
        seen.append(("created", getattr(payload, "checkpoint_id", "")))

    async def restored(*, payload: object) -> None:
        seen.append(("restored", getattr(payload, "checkpoint_id", "")))

    hooks.register_action(HOOK_CHECKPOINT_CREATED, created)
    hooks.register_action(HOOK_CHECKPOINT_RESTORED, restored)
    manager = SessionManagerImpl(env.store, env.config, hooks=hooks)
    sid = (await manager.create("alice")).session_id
    cp = await manager.checkpoint(sid)
    await manager.restore(cp.checkpoint_id)
    assert seen == [("created", cp.checkpoint_id), ("restored", cp.checkpoint_id)]


async def test_bad_arguments_name_the_field(make_env: EnvFactory) -> None:
    env = await make_env()
    cps = env.checkpoints
    cases = [
        (cps.create(42), "state"),  # type: ignore[arg-type]
        (cps.create(""), "state"),
        (cps.restore(""), "checkpoint_id"),
        (cps.get(None), "checkpoint_id"),  # type: ignore[arg-type]
        (cps.delete(7), "checkpoint_id"),  # type: ignore[arg-type]
        (cps.list(""), "session_id"),
    ]
    for call, field in cases:
        with pytest.raises(SessionValidationError) as info:
            await call
        assert info.value.field == field
    for bad in (0, -1, True, "5"):
        with pytest.raises(SessionValidationError) as info:
            CheckpointManager(env.store, bad)  # type: ignore[arg-type]
        assert info.value.field == "max_checkpoints_per_session"
