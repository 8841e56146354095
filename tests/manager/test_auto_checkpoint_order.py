"""Automatic checkpoints under concurrent appends to one session (an outside SPEC audit).

The checkpoint of the append that crossed the interval was taken after that append
returned, from the session as stored then: with 20 concurrent ``add_turn`` calls and
an interval of 5, the checkpoints labelled 5, 10 and 15 all held 20 turns (memory,
SQLite, Redis; 10, 15, 20 on PostgreSQL). Appends to one session from one process now
take turns while automatic checkpoints are on, and each checkpoint holds the state its
crossing append left. A hook that appends to the same session does not deadlock.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from lexigram.contracts.ai.session import SessionTurn
from lexigram.hooks import HookRegistry

from lexigram.ai.session import SessionConfig, SessionManagerImpl
from lexigram.ai.session.hooks import HOOK_CHECKPOINT_CREATED, HOOK_TURN_ADDED
from lexigram.ai.session.stores.cache import CacheSessionStore
from lexigram.ai.session.stores.database import DatabaseSessionStore
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from tests.services import REDIS_URL, drop_redis_keys, require_redis


def _turn(n: int) -> SessionTurn:
    return SessionTurn(
        turn_id=uuid.uuid4().hex, role="user", content=f"m{n}", timestamp=datetime.now(UTC)
    )


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "memory":
        made: Any = InMemorySessionStore()
    elif request.param == "sqlite":
        made = DatabaseSessionStore(f"sqlite+aiosqlite:///{tmp_path / 's.db'}")
    else:
        require_redis()
        prefix = f"acp{uuid.uuid4().hex[:8]}"
        made = CacheSessionStore(REDIS_URL, key_prefix=prefix)
    await made.initialize()
    yield made
    await made.close()
    if request.param == "redis":
        client = aioredis.Redis.from_url(REDIS_URL)
        await drop_redis_keys(client, prefix)
        await client.aclose()


async def test_each_automatic_checkpoint_holds_the_state_its_append_left(store: Any) -> None:
    manager = SessionManagerImpl(
        store, SessionConfig(auto_checkpoint_interval=5, max_checkpoints_per_session=50)
    )
    sid = (await manager.create("u")).session_id
    await asyncio.gather(*(manager.add_turn(sid, _turn(n)) for n in range(20)))
    checkpoints = await manager.list_checkpoints(sid)
    assert [(c.metadata["turn_count"], c.state.turn_count) for c in checkpoints] == [
        (5, 5), (10, 10), (15, 15), (20, 20)
    ]
    for checkpoint in checkpoints:
        full = await manager.checkpoints.get(checkpoint.checkpoint_id)
        assert len(full.state.turns) == checkpoint.metadata["turn_count"]
    await manager.delete(sid)


async def test_the_cap_checkpoint_under_concurrent_appends(store: Any) -> None:
    manager = SessionManagerImpl(
        store,
        SessionConfig(
            auto_checkpoint_interval=5, max_turns_per_session=10, max_checkpoints_per_session=50
        ),
    )
    sid = (await manager.create("u")).session_id
    await asyncio.gather(
        *(manager.add_turn(sid, _turn(n)) for n in range(25)), return_exceptions=True
    )
    checkpoints = await manager.list_checkpoints(sid)
    assert [c.state.turn_count for c in checkpoints] == [5, 10]
    await manager.delete(sid)


async def test_hooks_that_append_to_the_same_session_do_not_deadlock() -> None:
    hooks = HookRegistry("test")
    manager = SessionManagerImpl(
        InMemorySessionStore(), SessionConfig(auto_checkpoint_interval=2), hooks=hooks
    )
    sid = (await manager.create("u")).session_id
    notes: list[str] = []

    async def on_turn(**payload: Any) -> None:
        if len(notes) < 3:
            notes.append("turn")
            await manager.add_message(sid, "system", "noted")

    async def on_checkpoint(**payload: Any) -> None:
        if "checkpoint" not in notes:
            notes.append("checkpoint")
            await manager.add_message(sid, "system", "checkpointed")

    hooks.register_action(HOOK_TURN_ADDED, on_turn)
    hooks.register_action(HOOK_CHECKPOINT_CREATED, on_checkpoint)
    async with asyncio.timeout(10):
        await asyncio.gather(*(manager.add_message(sid, "user", f"m{n}") for n in range(4)))
    assert "checkpoint" in notes and notes.count("turn") == 3
    state = await manager.get_state(sid)
    assert state is not None and state.turn_count == 4 + 3 + 1
    assert all(
        c.metadata["turn_count"] == c.state.turn_count
        for c in await manager.list_checkpoints(sid)
    )


class _SlowSnapshots(InMemorySessionStore):
    """The real in-memory store; a checkpoint's snapshot takes a network round trip."""

    async def create_checkpoint(self, session_id: str, **kwargs: Any) -> Any:
        await asyncio.sleep(0.1)
        return await super().create_checkpoint(session_id, **kwargs)


async def test_an_append_after_a_cancelled_crossing_append_waits_for_its_snapshot() -> None:
    """The crossing append's caller cancelled while its snapshot was under way let go of
    the lock: the next append landed in the checkpoint labelled 5 (a regression audit)."""
    manager = SessionManagerImpl(_SlowSnapshots(), SessionConfig(auto_checkpoint_interval=5))
    sid = (await manager.create("u")).session_id
    for n in range(4):
        await manager.add_turn(sid, _turn(n))
    crossing = asyncio.ensure_future(manager.add_turn(sid, _turn(4)))
    await asyncio.sleep(0.03)  # its turn is stored, its snapshot under way
    crossing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await crossing
    await manager.add_turn(sid, _turn(5))
    assert await manager.wait_for_background(timeout_s=5) == 0
    (checkpoint,) = await manager.list_checkpoints(sid)
    assert checkpoint.metadata["turn_count"] == checkpoint.state.turn_count == 5
