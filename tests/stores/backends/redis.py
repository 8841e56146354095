"""The Redis backends of the conformance suite: one server, and a local Redis Cluster.

``redis`` uses the shared server on 127.0.0.1:6379; ``redis_cluster`` a 3-master
cluster the tests start on ports 7101-7103 (once per test session). Every test
gets its own random key prefix, and every key under it is deleted afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from lexigram.ai.session.stores.base import SessionStore
from lexigram.ai.session.stores.cache import CacheSessionStore
from tests.services import REDIS_URL, require_redis
from tests.stores.redis_cluster import shared_cluster

from . import BackendSpec, StoreFactory

__all__ = ["SPECS", "corrupt_header", "drop_prefix", "open_store", "wrong_type_header"]


async def drop_prefix(client: Redis | RedisCluster, pattern: str) -> int:
    """Delete every key matching ``pattern`` (on every node of a cluster)."""
    keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
    for key in keys:
        await client.unlink(key)
    return len(keys)


@asynccontextmanager
async def open_store(*, cluster: bool, **options: Any) -> AsyncIterator[StoreFactory]:
    """A factory of stores sharing one fresh key prefix, dropped at exit."""
    if cluster:
        url = shared_cluster().url
    else:
        require_redis()
        url = REDIS_URL
    prefix = f"lxtest:{uuid.uuid4().hex[:12]}"
    made: list[CacheSessionStore] = []

    async def factory() -> SessionStore:
        store = CacheSessionStore(url, key_prefix=prefix, cluster=cluster, pool_size=20, **options)
        made.append(store)
        await store.initialize()
        return store

    try:
        yield factory
    finally:
        if made:
            await drop_prefix(made[0].client, made[0].keys.pattern)
        for store in made:
            await store.close()


@asynccontextmanager
async def _open_single() -> AsyncIterator[StoreFactory]:
    async with open_store(cluster=False) as factory:
        yield factory


@asynccontextmanager
async def _open_cluster() -> AsyncIterator[StoreFactory]:
    async with open_store(cluster=True) as factory:
        yield factory


async def corrupt_header(store: SessionStore, session_id: str) -> None:
    """Overwrite the session's metadata field with bytes that are not JSON."""
    assert isinstance(store, CacheSessionStore)
    await store.client.hset(store.keys.header(session_id), "m", b"{not json")


async def wrong_type_header(store: SessionStore, session_id: str) -> None:
    """Replace the session's header hash by a string (what a stray ``SET`` would do).

    Every command that reads it as a hash then fails with ``WRONGTYPE``.
    """
    assert isinstance(store, CacheSessionStore)
    key = store.keys.header(session_id)
    await store.client.delete(key)
    await store.client.set(key, "not a hash")


SPECS = [
    BackendSpec(
        name="redis",
        open=_open_single,
        marks=(pytest.mark.redis,),
        corrupt=corrupt_header,
    ),
    BackendSpec(
        name="redis_cluster",
        open=_open_cluster,
        marks=(pytest.mark.redis, pytest.mark.cluster),
        corrupt=corrupt_header,
    ),
]
