"""What a purge or delete leaves behind does not pile up: tombstones lapse, users are forgotten.

An outside soak audit found, per purged session, a tombstone row kept forever on the
in-memory and SQL stores (only a look-up of that very id dropped it: 3,920 after 7
minutes in memory), and, per user whose sessions were all gone, an index entry kept
forever in memory and an ordinal counter ``<prefix>:u:{uid}:n`` without expiry on
Redis: one per anonymous visitor.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from lexigram.ai.session.manager.cleanup import SessionCleanupScheduler
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.stores.base import SessionStore
from lexigram.ai.session.stores.cache import CacheSessionStore
from lexigram.ai.session.stores.database import DatabaseSessionStore, drop_schema
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from lexigram.ai.session.testing import FakeClock
from tests.services import (
    MARIADB_URL,
    POSTGRES_URL,
    REDIS_URL,
    require_mariadb,
    require_postgres,
    require_redis,
)

CONFIG = {"auto_checkpoint_interval": None, "session_ttl": 0}


@pytest.fixture(params=["memory", "sqlite", "postgres", "mariadb", "redis"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionStore]:
    name = request.param
    clock = FakeClock()
    prefix = f"kf{uuid.uuid4().hex[:10]}_"
    made: SessionStore
    if name == "memory":
        made = InMemorySessionStore(clock=clock)
    elif name == "redis":
        require_redis()
        made = CacheSessionStore(REDIS_URL, key_prefix=prefix.rstrip("_"), clock=clock)
    else:
        url = {"sqlite": f"sqlite+aiosqlite:///{tmp_path}/kf.db", "postgres": POSTGRES_URL,
               "mariadb": MARIADB_URL}[name]
        if name == "postgres":
            require_postgres()
        if name == "mariadb":
            require_mariadb()
        made = DatabaseSessionStore(url, table_prefix=prefix, clock=clock)
    await made.initialize()
    made.clock_for_test = clock  # type: ignore[attr-defined]
    try:
        yield made
    finally:
        if isinstance(made, CacheSessionStore):
            async for key in made.client.scan_iter(match=made.keys.prefix + ":*", count=1000):
                await made.client.unlink(key)
        await made.close()
        if isinstance(made, DatabaseSessionStore) and name != "sqlite":
            await drop_schema(made_url(made), table_prefix=prefix)


def made_url(store: DatabaseSessionStore) -> str:
    return {"postgresql": POSTGRES_URL, "mysql": MARIADB_URL}[store.dialect]


async def _tombstones(store: SessionStore) -> int | None:
    if isinstance(store, InMemorySessionStore):
        return len(store._tombstones)
    if isinstance(store, DatabaseSessionStore):
        async with store.engine.connect() as conn:
            found = await conn.execute(text(f"SELECT COUNT(*) FROM {store.table_prefix}tombstones"))
            return int(found.scalar_one())
    return None  # Redis: the tombstone key has its own expiry


async def test_lapsed_tombstones_are_dropped_by_later_purges(store: SessionStore) -> None:
    clock: FakeClock = store.clock_for_test  # type: ignore[attr-defined]
    manager = SessionManagerImpl(store, CONFIG)
    sweeper = SessionCleanupScheduler(manager, purge_after_s=0, tombstone_s=60)
    for _round in range(3):
        for _ in range(20):
            state = await manager.create("tomb")
            await manager.close(state.session_id)
        clock.advance(1)
        assert (await sweeper.sweep()).purged == 20
        clock.advance(120)  # every tombstone so far has lapsed
    count = await _tombstones(store)
    if count is not None:
        assert count <= 20  # the last round's, lapsed since; earlier rounds' are gone


async def test_a_user_whose_sessions_are_all_gone_leaves_nothing(store: SessionStore) -> None:
    clock: FakeClock = store.clock_for_test  # type: ignore[attr-defined]
    manager = SessionManagerImpl(store, CONFIG)
    sweeper = SessionCleanupScheduler(manager, purge_after_s=0, tombstone_s=60)
    users = [f"visitor-{n}" for n in range(10)]
    for n, user in enumerate(users):
        state = await manager.create(user)
        await manager.add_message(state.session_id, "user", "hi")
        if n % 2:
            await manager.delete(state.session_id)
        else:
            await manager.close(state.session_id)
    clock.advance(1)
    await sweeper.sweep()
    if isinstance(store, InMemorySessionStore):
        assert store._by_user == {}
    if isinstance(store, CacheSessionStore):
        left = [k async for k in store.client.scan_iter(match=store.keys.prefix + ":u:*")]
        # A create's reply key (kept 5 minutes for a re-sent call) expires by itself.
        assert [k for k in left if await store.client.ttl(k) < 0] == []
    for user in users:  # and every one of them can start again
        again = await manager.create(user)
        assert [s.session_id for s in (await manager.list_sessions(user)).items] == [
            again.session_id
        ]
