"""Races found by a concurrency audit: two store objects on the same real data."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.stores.base import SessionStore
from lexigram.ai.session.stores.cache import CacheSessionStore
from lexigram.ai.session.stores.database import DatabaseSessionStore
from lexigram.ai.session.stores.sql.schema import drop_all
from tests.services import (
    MARIADB_URL,
    POSTGRES_URL,
    REDIS_URL,
    drop_redis_keys,
    require_mariadb,
    require_postgres,
    require_redis,
)

_LIVE = frozenset({SessionStatus.ACTIVE, SessionStatus.SUSPENDED})
Pair = tuple[SessionStore, SessionStore]


def _state(sid: str, **fields: object) -> SessionState:
    now = datetime.now(UTC)
    turns = fields.pop("turns", [])
    return SessionState(
        session_id=sid, user_id="u", status=SessionStatus.ACTIVE, created_at=now,
        updated_at=now, turns=turns, turn_count=len(turns), **fields,  # type: ignore[arg-type]
    )


def _turn(name: str) -> SessionTurn:
    return SessionTurn(turn_id=name, role="user", content=name, timestamp=datetime.now(UTC))


async def _sql_pair(url: str) -> AsyncIterator[Pair]:
    prefix = f"race{uuid.uuid4().hex[:6]}_"
    one = DatabaseSessionStore(url, table_prefix=prefix)
    two = DatabaseSessionStore(url, table_prefix=prefix)
    await one.initialize()
    await two.initialize()
    try:
        yield one, two
    finally:
        await two.close()
        async with one.engine.begin() as conn:
            await conn.run_sync(drop_all, one.schema)
        await one.close()


async def _redis_pair() -> AsyncIterator[Pair]:
    require_redis()
    prefix = f"race{uuid.uuid4().hex[:6]}"
    one = CacheSessionStore(REDIS_URL, key_prefix=prefix)
    two = CacheSessionStore(REDIS_URL, key_prefix=prefix)
    await one.initialize()
    await two.initialize()
    try:
        yield one, two
    finally:
        await one.close()
        await two.close()
        client = aioredis.from_url(REDIS_URL)
        await drop_redis_keys(client, prefix)
        await client.aclose()


def _pairs() -> dict[str, Callable[[], AsyncIterator[Pair]]]:
    def postgres() -> AsyncIterator[Pair]:
        require_postgres()
        return _sql_pair(POSTGRES_URL)

    def mariadb() -> AsyncIterator[Pair]:
        require_mariadb()
        return _sql_pair(MARIADB_URL)

    return {"postgres": postgres, "mariadb": mariadb, "redis": _redis_pair}


async def _each(backend: str, run: Callable[[SessionStore, SessionStore], Awaitable[None]]) -> None:
    pairs = _pairs()[backend]()
    one, two = await pairs.__anext__()
    try:
        await run(one, two)
    finally:
        await pairs.aclose()


@pytest.mark.parametrize("backend", ["postgres", "mariadb", "redis"])
@pytest.mark.parametrize("batch", [False, True])
async def test_a_purged_session_never_comes_back_through_a_racing_save(
    backend: str, batch: bool
) -> None:
    async def run(one: SessionStore, two: SessionStore) -> None:
        for n in range(25):
            sid = f"p{n}"
            await one.create_session(_state(sid, turns=[_turn("s0")]))
            await one.transition(sid, SessionStatus.CLOSED, allowed_from=_LIVE)
            until = datetime.now(UTC) + timedelta(hours=1)

            async def purge(sid: str = sid, until: datetime = until) -> bool:
                if batch:
                    return sid in (await one.purge_batch([sid], tombstone_until=until)).done
                return await one.purge(sid, tombstone_until=until)

            async def save(sid: str = sid) -> bool:
                try:
                    await two.save(_state(sid, turns=[_turn("w0")]))
                except Exception:
                    return False
                return True

            purged, saved = await asyncio.gather(purge(), save())
            back = await one.load(sid)
            assert not (purged and saved and back is not None), f"round {n}: resurrected"

    await _each(backend, run)


async def test_redis_a_session_saved_while_deleted_is_listed() -> None:
    async def run(one: SessionStore, two: SessionStore) -> None:
        for n in range(30):
            sid = f"d{n}"
            await one.create_session(_state(sid, turns=[_turn("s0")]))
            await asyncio.gather(one.delete(sid), two.save(_state(sid, turns=[_turn("w0")])))
            back = await one.load(sid)
            if back is None:
                continue
            listed = [s.session_id for s in (await one.list_user_sessions("u")).items]
            assert sid in listed, f"round {n}: stored but not listed"

    await _each("redis", run)


async def test_redis_two_forks_to_one_branch_id_keep_the_winner_and_the_cap() -> None:
    async def run(one: SessionStore, two: SessionStore) -> None:
        for n in range(15):
            src = f"f{n}"
            await one.create_session(_state(src, turns=[_turn("t0")]))

            async def fork(store: SessionStore, bid: str, src: str = src) -> str:
                try:
                    branch = _state(bid, parent_session_id=src)
                    await store.fork_session(src, branch, max_branches=1)
                except Exception as exc:
                    return type(exc).__name__
                return "ok"

            results = await asyncio.gather(fork(one, f"{src}-b1"), fork(two, f"{src}-b1"))
            assert sorted(results) == ["SessionValidationError", "ok"], results
            listed = [r.state.session_id for r in await one.list_branches(src)]
            assert listed == [f"{src}-b1"], f"round {n}: {listed}"
            assert await fork(one, f"{src}-b2") == "SessionCapacityError"

    await _each("redis", run)


async def test_redis_concurrent_checkpoints_list_in_chain_order() -> None:
    async def run(one: SessionStore, two: SessionStore) -> None:
        for n in range(40):
            sid = f"c{n}"
            await one.create_session(_state(sid, turns=[_turn("t0")]))
            await asyncio.gather(
                one.create_checkpoint(sid, checkpoint_id=f"{sid}-x", max_checkpoints=2),
                two.create_checkpoint(sid, checkpoint_id=f"{sid}-y", max_checkpoints=2),
            )
            first, second = await one.list_checkpoint_headers(sid)
            # The one listed first is never the child of the other.
            assert first.parent_checkpoint_id != second.checkpoint_id, f"round {n}"
            assert second.parent_checkpoint_id == first.checkpoint_id

    await _each("redis", run)


@pytest.mark.parametrize("backend", ["postgres", "mariadb", "redis"])
async def test_a_restore_racing_the_sessions_delete_is_checkpoint_not_found(
    backend: str,
) -> None:
    from lexigram.ai.session.exceptions import CheckpointNotFoundError

    async def run(one: SessionStore, two: SessionStore) -> None:
        for n in range(25):
            sid = f"r{n}"
            await one.create_session(_state(sid, turns=[_turn("t0")]))
            await one.create_checkpoint(sid, checkpoint_id=f"{sid}-cp")

            async def restore(sid: str = sid) -> str:
                try:
                    await two.restore_checkpoint(f"{sid}-cp")
                except CheckpointNotFoundError:
                    return "gone"
                return "ok"

            outcome, _ = await asyncio.gather(restore(), one.delete(sid))
            assert outcome in ("ok", "gone")
            assert await one.load(sid) is None

    await _each(backend, run)
