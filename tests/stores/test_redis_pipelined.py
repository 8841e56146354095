"""Auto-pipelining on one connection: one write per loop turn, replies in order, failures.

Against the real Redis on 127.0.0.1:6379 (keys under a fresh prefix, dropped after).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from lexigram.ai.session.stores.redis.lane import DirectLane, LaneError, open_lane
from lexigram.ai.session.stores.redis.packing import HiredisPackingConnection
from lexigram.ai.session.stores.redis.pipelined import PipelinedConnection
from tests.services import REDIS_URL, require_redis

pytest.importorskip("hiredis")
pytestmark = pytest.mark.redis

Env = tuple[DirectLane, PipelinedConnection, Redis, str]


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    require_redis()
    client = Redis.from_url(REDIS_URL, connection_class=HiredisPackingConnection)
    lane = open_lane(client)
    assert lane is not None
    source = lane._source
    assert isinstance(source, PipelinedConnection)
    prefix = f"pipe-test:{uuid.uuid4().hex}:"
    try:
        yield lane, source, client, prefix
    finally:
        await lane.aclose()
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def _count_writes(source: PipelinedConnection) -> list[int]:
    """Record the size of every write the connection makes from now on."""
    sizes: list[int] = []
    writer = source._conn._writer
    original = writer.write

    def write(data: bytes) -> None:
        sizes.append(len(data))
        original(data)

    writer.write = write
    return sizes


async def test_calls_of_one_loop_turn_go_out_in_one_write_and_each_gets_its_reply(
    env: Env,
) -> None:
    lane, source, client, p = env
    await lane.call(p + "warm", "PING")  # connected
    writes = _count_writes(source)
    replies = await asyncio.gather(
        *(lane.call(p + f"k{i}", "INCRBY", p + f"k{i}", i) for i in range(50))
    )
    assert replies == list(range(50))
    assert len(writes) == 1
    assert [int(await client.get(p + f"k{i}") or 0) for i in range(50)] == list(range(50))


async def test_transactions_sent_together_are_never_interleaved(env: Env) -> None:
    lane, _, client, p = env
    await client.rpush(p + "t", "a", "b")

    async def one(i: int) -> list[Any]:
        return await lane.transaction(
            p + "t", ("RPUSH", p + "t", f"x{i}"), ("LRANGE", p + "t", 0, -1)
        )

    results = await asyncio.gather(*(one(i) for i in range(20)))
    for i, (length, items) in enumerate(results):
        assert items[-1] == f"x{i}".encode()  # its own push is the last its LRANGE saw
        assert length == len(items) == i + 3


async def test_a_call_cancelled_before_its_write_is_never_sent(env: Env) -> None:
    lane, _, client, p = env
    await lane.call(p + "warm", "PING")
    task = asyncio.ensure_future(lane.call(p + "c", "SET", p + "c", "sent"))
    other = asyncio.ensure_future(lane.call(p + "d", "SET", p + "d", "sent"))
    await asyncio.sleep(0)  # both queued, the write planned for the next loop turn
    task.cancel()  # before the write: the call is left out of it
    assert await other == b"OK"
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await client.get(p + "c") is None


async def test_a_call_cancelled_after_its_write_leaves_the_connection_in_step(
    env: Env,
) -> None:
    lane, source, client, p = env
    await client.rpush(p + "l", *[f"v{i}" for i in range(2000)])
    await lane.call(p + "warm", "PING")  # connected: the cancel comes after the write
    slow = asyncio.ensure_future(lane.call(p + "l", "LRANGE", p + "l", 0, -1))
    follow = asyncio.ensure_future(lane.call(p + "s", "SET", p + "s", "after"))
    for _ in range(3):
        await asyncio.sleep(0)  # written; replies not yet read
    assert not slow.done()
    slow.cancel()
    assert await follow == b"OK"
    conn = source._conn
    assert await lane.call(p + "s", "GET", p + "s") == b"after"
    assert source._conn is conn  # the same connection, still in step


async def test_a_connection_killed_mid_flight_fails_its_calls_and_the_next_call_reconnects(
    env: Env,
) -> None:
    lane, source, client, p = env
    name = f"pipe-{uuid.uuid4().hex[:8]}"
    await lane.call(p + "n", "CLIENT", "SETNAME", name)
    first = source._conn
    blocked = asyncio.ensure_future(lane.call(p + "q", "BLPOP", p + "q", 5))
    await asyncio.sleep(0.05)
    await client.client_kill_filter(_id=int(await _client_id(client, name)))
    with pytest.raises(LaneError) as caught:
        await blocked
    assert caught.value.sent is True
    assert await lane.call(p + "x", "SET", p + "x", "1") == b"OK"
    assert source._conn is not first
    assert first not in source.connections()


async def test_a_caller_cancelled_while_the_connection_opens_does_not_fail_the_others(
    env: Env,
) -> None:
    lane, _, client, p = env
    first = asyncio.ensure_future(lane.call(p + "a", "SET", p + "a", "1"))
    second = asyncio.ensure_future(lane.call(p + "b", "SET", p + "b", "2"))
    await asyncio.sleep(0)  # both wait for the connection being opened
    first.cancel()
    assert await second == b"OK"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await client.get(p + "b") == b"2"


async def test_a_server_that_closed_the_idle_connection_is_not_written_to(env: Env) -> None:
    lane, source, client, p = env
    name = f"pipe-{uuid.uuid4().hex[:8]}"
    await lane.call(p + "n", "CLIENT", "SETNAME", name)
    first = source._conn
    await client.client_kill_filter(_id=int(await _client_id(client, name)))
    await asyncio.sleep(0.05)  # the close reaches the idle connection
    assert await lane.call(p + "y", "SET", p + "y", "1") == b"OK"
    assert source._conn is not first


async def _client_id(client: Redis, name: str) -> int:
    for entry in await client.client_list():
        if entry.get("name") == name:
            return int(entry["id"])
    raise AssertionError(f"no client named {name}")


@pytest.mark.cluster
async def test_a_cluster_lane_pipelines_per_node_and_leaves_a_moved_key_to_the_full_path() -> None:
    from redis.asyncio.cluster import RedisCluster

    from tests.stores.redis_cluster import shared_cluster

    client = RedisCluster.from_url(shared_cluster().url)
    await client.initialize()  # the slot map (the store does this when it starts)
    lane = open_lane(client)
    assert lane is not None
    p = f"pipe-test:{uuid.uuid4().hex}:"
    keys = [f"{p}{{k{i}}}" for i in range(60)]  # hash tags spread over every node
    try:
        replies = await asyncio.gather(*(lane.call(k, "INCRBY", k, 7) for k in keys))
        assert replies == [7] * len(keys)
        nodes = {client.get_node_from_key(k).name for k in keys}
        assert len(nodes) == 3
        assert len(lane.connections()) == 3  # one pipelined connection per node
        # A key sent to a node that does not serve its slot: MOVED, nothing ran there.
        home = client.get_node_from_key(keys[0])
        other = next(k for k in keys if client.get_node_from_key(k) != home)
        with pytest.raises(LaneError) as caught:
            await lane.call(keys[0], "SET", other, "misrouted")
        assert caught.value.sent is False
        assert await lane.call(keys[0], "GET", keys[0]) == b"7"  # the connection is in step
        assert int(await client.get(other) or 0) == 7
    finally:
        await lane.aclose()
        for k in keys:
            await client.delete(k)
        await client.aclose()


async def test_a_call_on_a_stalled_server_is_given_up_after_its_own_socket_timeout() -> None:
    """The stall watch follows the oldest waiting call's deadline (write + timeout).

    It was re-armed for a whole ``socket_timeout`` after any progress, so a call written
    just after another's reply waited up to twice the timeout (3.95 s for 2 s, found by
    an outside audit).
    """
    import time

    from tests.faults.proxy import FaultProxy

    require_redis()
    async with FaultProxy("127.0.0.1", 6379) as proxy:
        client = Redis.from_url(
            f"redis://127.0.0.1:{proxy.port}/0?socket_timeout=1",
            connection_class=HiredisPackingConnection,
        )
        lane = open_lane(client)
        assert lane is not None
        try:
            assert await lane.call("stall-test", "PING")  # arms the watch, answered at once
            await asyncio.sleep(0.3)
            proxy.delay(5.0)
            started = time.monotonic()
            with pytest.raises(LaneError):
                await lane.call("stall-test", "PING")
            assert time.monotonic() - started < 1.4
        finally:
            proxy.reset()
            await lane.aclose()
            await client.aclose()
