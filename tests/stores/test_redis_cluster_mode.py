"""A Redis Cluster node given as a single server is refused at start, naming ``redis_cluster``.

Addressed without ``redis_cluster``, a store on a cluster node served the sessions whose
slots that node holds and failed the others with a raw ``MOVED`` ("Redis refused script
reserve: 7635 127.0.0.1:7102"): about two sessions in three on a 3-master cluster.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from redis.asyncio import Redis

from lexigram.ai.session import SessionManager
from lexigram.ai.session.exceptions import SessionStoreError, StoreUnavailableError
from lexigram.ai.session.stores.cache import CacheSessionStore
from tests.services import REDIS_URL, require_redis
from tests.stores.redis_cluster import (
    LocalCluster,
    port_lock,
    release_lock,
    require_redis_binaries,
    shared_cluster,
    start_cluster,
    stop_server,
)


async def test_a_cluster_node_addressed_as_one_server_is_refused_at_initialize() -> None:
    cluster = shared_cluster()
    store = CacheSessionStore(cluster.url, key_prefix="cluster-mode-test")
    try:
        with pytest.raises(SessionStoreError, match="redis_cluster: true") as caught:
            await store.initialize()
        assert "is a Redis Cluster node" in str(caught.value)
    finally:
        await store.close()


async def test_the_manager_refuses_it_in_one_line_and_the_cluster_setting_works() -> None:
    cluster = shared_cluster()
    with pytest.raises(SessionStoreError, match="redis_cluster"):
        async with SessionManager.open(
            backend="redis", redis_url=cluster.url, key_prefix="cluster-mode-test"
        ):
            pass
    async with SessionManager.open(
        backend="redis", redis_url=cluster.url, redis_cluster=True, key_prefix="cluster-mode-test"
    ) as sessions:
        state = await sessions.create("alice")
        assert (await sessions.get_state(state.session_id)) is not None
        await sessions.delete(state.session_id)


async def test_a_single_server_passes_the_check() -> None:
    require_redis()
    store = CacheSessionStore(REDIS_URL, key_prefix="cluster-mode-test")
    try:
        await store.initialize()
        await store.ping()
    finally:
        await store.close()


_OWN_PORTS = (7121, 7122, 7123)


@contextmanager
def _own_cluster() -> Iterator[LocalCluster]:
    """A 3-master cluster of this module's own on 7121-7123 (a test may break it)."""
    require_redis_binaries()
    handle = port_lock("cluster-7121", wait_s=120)
    assert handle is not None, "ports 7121-7123 stayed busy"
    cluster = start_cluster(_OWN_PORTS)
    try:
        yield cluster
    finally:
        cluster.stop()
        release_lock(handle)



@pytest.mark.cluster
@pytest.mark.slow
async def test_the_health_check_fails_while_the_cluster_reports_failure() -> None:
    """A live node answers PING while a failed master's slots are served by nobody: the
    health check said healthy while one write in three failed (an outside audit)."""
    with _own_cluster() as cluster:
        store = CacheSessionStore(cluster.url, key_prefix="cluster-health", cluster=True)
        try:
            await store.initialize()
            await store.ping()
            stop_server(_OWN_PORTS[2])
            deadline = time.monotonic() + 30
            failed: StoreUnavailableError | None = None
            while failed is None and time.monotonic() < deadline:
                try:
                    await store.ping()
                except StoreUnavailableError as exc:
                    failed = exc
                await asyncio.sleep(0.5)
            assert failed is not None and "cluster_state:fail" in str(failed)
        finally:
            await store.close()


@pytest.mark.cluster
@pytest.mark.slow
async def test_a_user_who_may_not_ask_cluster_info_still_gets_in() -> None:
    """The health check's ``CLUSTER INFO`` is a courtesy: refused by an ACL, it is skipped."""
    with _own_cluster():
        for port in _OWN_PORTS:
            admin = Redis(port=port)
            await admin.execute_command(
                "ACL", "SETUSER", "limited", "on", ">pw", "~*", "&*", "+@all", "-cluster|info"
            )
            await admin.aclose()
        store = CacheSessionStore(
            f"redis://limited:pw@127.0.0.1:{_OWN_PORTS[0]}/0", key_prefix="acl", cluster=True
        )
        try:
            await store.initialize()
            await store.ping()
        finally:
            await store.close()
