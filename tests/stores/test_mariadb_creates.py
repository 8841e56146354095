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
