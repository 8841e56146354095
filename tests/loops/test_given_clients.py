"""A client or engine passed in by the caller: its first loop only, or shared when it can be.

A pooled engine or a Redis client cannot be copied for another loop: a call from
another loop is refused at once with ``SessionStoreError`` naming the loop problem,
and nothing is written. An engine with ``NullPool`` keeps no connection, so every
loop uses it.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from lexigram.ai.session.exceptions import SessionStoreError
from lexigram.ai.session.stores.cache import CacheSessionStore
from lexigram.ai.session.stores.database import DatabaseSessionStore, drop_schema
from tests.loops.support import (
    bounded,
    in_thread,
    new_state,
    new_turn,
    no_leaks,
    open_connections,
)
from tests.loops.test_any_loop import append_n, assert_stored
from tests.services import POSTGRES_URL, REDIS_URL, require_postgres, require_redis


async def refused_elsewhere(store: DatabaseSessionStore | CacheSessionStore) -> None:
    """Main-loop writes work; another loop's write is refused and leaves nothing."""
    await store.initialize()
    state = new_state()
    await store.create_session(state)
    sid = state.session_id
    ids = await append_n(store, sid, 2, "main")
    with pytest.raises(SessionStoreError) as info:
        await in_thread(lambda: store.append_turns(sid, [new_turn("elsewhere")]))
    assert "event loop" in str(info.value)
    ids += await append_n(store, sid, 1, "main-again")
    await assert_stored(store, sid, ids)


@pytest.mark.postgres
@bounded
async def test_a_pooled_postgres_engine_serves_only_its_first_loop() -> None:
    require_postgres()
    prefix = f"lg{uuid.uuid4().hex[:10]}_"
    engine = create_async_engine(POSTGRES_URL)
    try:
        with no_leaks():
            store = DatabaseSessionStore(engine=engine, table_prefix=prefix)
            await refused_elsewhere(store)
            await store.close()
            await engine.dispose()
    finally:
        await drop_schema(POSTGRES_URL, table_prefix=prefix)


@bounded
async def test_a_pooled_sqlite_engine_serves_only_its_first_loop() -> None:
    with tempfile.TemporaryDirectory(prefix="lexi-loops-") as tmp:
        engine = create_async_engine(f"sqlite+aiosqlite:///{Path(tmp) / 's.db'}")
        with no_leaks():
            store = DatabaseSessionStore(engine=engine)
            await refused_elsewhere(store)
            await store.close()
            await engine.dispose()


@pytest.mark.redis
@bounded
async def test_a_given_redis_client_serves_only_its_first_loop() -> None:
    require_redis()
    client = Redis.from_url(REDIS_URL)
    with no_leaks():
        store = CacheSessionStore(client=client, key_prefix=f"lxloops:{uuid.uuid4().hex[:10]}")
        try:
            await refused_elsewhere(store)
            from tests.stores.backends.redis import drop_prefix

            await drop_prefix(client, store.keys.pattern)
        finally:
            await store.close()
            await client.aclose()


@pytest.mark.postgres
@bounded
async def test_a_null_pool_engine_serves_every_loop() -> None:
    require_postgres()
    prefix = f"lg{uuid.uuid4().hex[:10]}_"
    before = open_connections({5432})
    engine: AsyncEngine = create_async_engine(POSTGRES_URL, poolclass=NullPool)
    try:
        with no_leaks():
            store = DatabaseSessionStore(engine=engine, table_prefix=prefix)
            await store.initialize()
            state = new_state()
            await store.create_session(state)
            sid = state.session_id
            ids = await append_n(store, sid, 2, "main")
            ids += await in_thread(lambda: append_n(store, sid, 3, "thread"))
            await assert_stored(store, sid, ids)
            await store.close()
            await engine.dispose()
            assert open_connections({5432}) <= before
    finally:
        await drop_schema(POSTGRES_URL, table_prefix=prefix)
