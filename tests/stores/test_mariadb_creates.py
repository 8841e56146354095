"""MariaDB: many concurrent creates for one user wait for each other instead of deadlocking.

The per-user cap counts the user's live sessions; under SERIALIZABLE a shared count
followed by an insert deadlocks concurrent creates of one user, and enough of them
used to run out of deadlock retries. The count now takes the rows for writing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from lexigram.ai.session.exceptions import SessionCapacityError
from lexigram.ai.session.stores.database import DatabaseSessionStore
from lexigram.ai.session.testing.support import make_state
from tests.services import MARIADB_URL

pytestmark = pytest.mark.mariadb


@pytest.fixture
async def store(mariadb_prefix: str) -> AsyncIterator[DatabaseSessionStore]:
    made = DatabaseSessionStore(MARIADB_URL, table_prefix=mariadb_prefix, pool_size=20)
    await made.initialize()
    try:
        yield made
    finally:
        await made.close()


async def test_concurrent_creates_of_one_user_all_land(store: DatabaseSessionStore) -> None:
    async def create() -> None:
        await store.create_session(make_state(user_id="busy"), max_live_per_user=100_000)

    results = await asyncio.gather(*(create() for _ in range(600)), return_exceptions=True)
    assert [r for r in results if isinstance(r, BaseException)] == []
    assert await store.count_live_sessions("busy") == 600


async def test_the_cap_holds_under_concurrent_creates(store: DatabaseSessionStore) -> None:
    async def create() -> bool:
        try:
            await store.create_session(make_state(user_id="capped"), max_live_per_user=40)
        except SessionCapacityError:
            return False
        return True

    made = await asyncio.gather(*(create() for _ in range(200)))
    assert made.count(True) == 40
    assert await store.count_live_sessions("capped") == 40


async def test_creates_and_forks_of_one_user_all_land(mariadb_prefix: str) -> None:
    """An outside audit: 8 creates and forks of one user at a time (sequential ids, a
    fork every tenth session) ran out of deadlock retries at 200-400 sessions: the
    count's gap locks, held by every writer at once, made each insert wait for the
    others. A named lock per user now serialises them (``MyTx.lock_user``)."""
    from lexigram.ai.session import BranchManager, SessionConfig
    from lexigram.ai.session.manager.core import SessionManagerImpl
    from lexigram.ai.session.testing.support import make_turn

    config = SessionConfig(
        max_sessions_per_user=100_000, auto_checkpoint_interval=None, session_ttl=0
    )
    store = DatabaseSessionStore(MARIADB_URL, table_prefix=mariadb_prefix)  # default pool
    await store.initialize()
    manager = SessionManagerImpl(store, config)
    branches = BranchManager(manager)
    gate = asyncio.Semaphore(8)

    async def one(i: int) -> None:
        async with gate:
            sid = (await manager.create("u1", session_id=f"u1-s{i}")).session_id
            await manager.add_turns(sid, [make_turn(2 * i), make_turn(2 * i + 1)])
            if i % 10 == 0:
                await manager.checkpoint(sid)
                await branches.fork(sid, "b")

    try:
        results = await asyncio.gather(*(one(i) for i in range(400)), return_exceptions=True)
        assert [r for r in results if isinstance(r, BaseException)] == []
        assert await store.count_live_sessions("u1") == 440
    finally:
        await store.close()
