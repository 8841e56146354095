"""A ``redis_url`` naming a database the server does not have is a wrong setting.

An outside audit: ``SessionManager.open(redis_url="redis://127.0.0.1:6379/16")`` raised
``StoreUnavailableError`` "Redis at … is unreachable: DB index is out of range" (the
same for ``/2147483648``), although the server answered; the error now names
``redis_url``, as a malformed one (``/abc``) is named, and shows no password.
"""

from __future__ import annotations

import pytest

from lexigram.ai.session import SessionManager
from lexigram.ai.session.exceptions import SessionValidationError, StoreUnavailableError
from lexigram.ai.session.stores.cache import CacheSessionStore
from tests.services import require_redis

pytestmark = pytest.mark.redis

_HOST = "127.0.0.1:6379"


@pytest.mark.parametrize("db", [16, 99, 2147483648])
async def test_a_database_the_server_does_not_have_is_named_as_redis_url(db: int) -> None:
    require_redis()
    with pytest.raises(SessionValidationError) as caught:
        async with SessionManager.open(redis_url=f"redis://{_HOST}/{db}"):
            pass
    assert not isinstance(caught.value, StoreUnavailableError)
    assert caught.value.field == "redis_url"
    assert f"db {db} in redis://{_HOST}/{db} is not a database this server has" in str(caught.value)


async def test_the_store_alone_names_redis_url_without_the_password() -> None:
    require_redis()
    store = CacheSessionStore(f"redis://:s3cret-pw@{_HOST}/16", key_prefix="kt3")
    try:
        with pytest.raises(SessionValidationError) as caught:
            await store.initialize()
    finally:
        await store.close()
    assert caught.value.field == "redis_url"
    assert "s3cret-pw" not in str(caught.value)
    assert "redis://:***@" in str(caught.value)


async def test_an_unreachable_server_is_still_unavailable() -> None:
    store = CacheSessionStore("redis://127.0.0.1:7549/16", key_prefix="kt3")
    try:
        with pytest.raises(StoreUnavailableError):
            await store.initialize()
    finally:
        await store.close()
