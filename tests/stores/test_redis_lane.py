"""The direct lane's transactions: one write, the server's replies, errors kept apart.

Against the real Redis on 127.0.0.1:6379 (keys under a fresh prefix, dropped after).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from lexigram.ai.session.stores.redis.lane import DirectLane, LaneError, open_lane
from lexigram.ai.session.stores.redis.packing import HiredisPackingConnection
from tests.services import REDIS_URL, require_redis

pytest.importorskip("hiredis")
pytestmark = pytest.mark.redis


@pytest.fixture
async def lane() -> AsyncIterator[tuple[DirectLane, Redis, str]]:
    require_redis()
    client = Redis.from_url(REDIS_URL, connection_class=HiredisPackingConnection)
    made = open_lane(client)
    assert made is not None
    prefix = f"lane-test:{uuid.uuid4().hex}:"
    try:
        yield made, client, prefix
    finally:
        await made.aclose()
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_a_transaction_answers_each_command_as_the_server_does(
    lane: tuple[DirectLane, Redis, str],
) -> None:
    direct, client, p = lane
    await client.hset(p + "h", mapping={"a": "1", "b": "2"})
    await client.rpush(p + "t", "x", "y", "z")
    header, items = await direct.transaction(
        p + "h", ("HGETALL", p + "h"), ("LRANGE", p + "t", 0, -1)
    )
    if isinstance(header, list):  # RESP2: the flat field/value list
        header = dict(zip(header[::2], header[1::2], strict=True))
    assert header == {b"a": b"1", b"b": b"2"}
    assert items == [b"x", b"y", b"z"]


async def test_a_command_refused_inside_exec_is_raised_and_the_connection_stays_usable(
    lane: tuple[DirectLane, Redis, str],
) -> None:
    direct, client, p = lane
    await client.set(p + "s", "a string")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await direct.transaction(p + "s", ("HGETALL", p + "s"), ("GET", p + "s"))
    # every reply of the transaction was read: the next call gets its own answer
    assert await direct.call(p + "s", "GET", p + "s") == b"a string"


async def test_a_command_refused_while_queued_runs_nothing_and_leaves_it_to_the_full_path(
    lane: tuple[DirectLane, Redis, str],
) -> None:
    direct, client, p = lane
    with pytest.raises(LaneError) as caught:
        await direct.transaction(p + "k", ("SET", p + "k", "v"), ("LRANGE", p + "k"))  # arity
    assert caught.value.sent is False
    assert await client.exists(p + "k") == 0  # EXECABORT: the SET did not run either
    assert await direct.call(p + "k", "SET", p + "k", "w") == b"OK"
    assert await client.get(p + "k") == b"w"


@pytest.mark.parametrize(
    "error", ["ClusterDownError", "MasterDownError", "TryAgainError", "AskError", "MovedError"]
)
def test_a_cluster_that_is_down_is_unavailable_not_a_refusal(error: str) -> None:
    """CLUSTERDOWN / MASTERDOWN / TRYAGAIN, and an ASK / MOVED redirection inside a
    transaction (a slot being resharded: a read's pipeline): the command did not run
    and may once the cluster is back or the slot has moved, so callers that retry on
    StoreUnavailableError do (it was a SessionStoreError, 'Redis refused')."""
    import redis.exceptions

    from lexigram.ai.session.exceptions import StoreUnavailableError
    from lexigram.ai.session.stores.redis.client import translate

    with pytest.raises(StoreUnavailableError, match="unavailable"):
        translate(getattr(redis.exceptions, error)("6004 127.0.0.1:7405"), "pipeline")


@pytest.mark.parametrize(
    "reply",
    [
        "NOREPLICAS Not enough good replicas to write.",
        "READONLY You can't write against a read only replica.",
        "LOADING Redis is loading the dataset in memory",
        "Command # 1 (UNLINK p:s:{a}:h) of pipeline caused error: NOREPLICAS Not enough good"
        " replicas to write.",
    ],
)
def test_a_server_refusing_writes_for_now_is_unavailable(reply: str) -> None:
    """min-replicas-to-write, a replica or demoted master, a server loading: nothing was
    applied and a later try may pass, so StoreUnavailableError (it was 'Redis refused',
    though docs/backend-redis.md recommended min-replicas-to-write as 'unavailable')."""
    import redis.exceptions

    from lexigram.ai.session.exceptions import StoreUnavailableError
    from lexigram.ai.session.stores.redis.client import translate

    with pytest.raises(StoreUnavailableError, match="unavailable"):
        translate(redis.exceptions.ResponseError(reply), "script append")
    with pytest.raises(StoreUnavailableError, match="unavailable"):
        translate(redis.exceptions.ReadOnlyError("You can't write"), "script append")
