"""The direct lane: commands packed by hiredis, written straight to a connection.

redis-py runs every command through several layers (retry wrapper, pool lock,
observability records, event dispatch, health checks, timeouts), which on a chat
request cost the client more than the command itself. With ``hiredis`` the
store's calls go through :class:`DirectLane` instead: the command is packed by
``hiredis`` and written to the connection's stream, the reply is read by the
connection's own parser. Every call of one event loop to one server goes out on one
connection of the lane's own, the calls of one loop turn written together
(:mod:`.pipelined`): on a single server it is made by the client's pool factory (same
URL, credentials, database and handshake), on a Cluster there is one per node, made as
the node makes its own (a redirection is left to the full path).

Failures are not handled here: a failed connection is closed (a reply may still be
on its way) and every call on it raises :class:`LaneError`, saying whether its command
may have reached Redis. The caller (``ScriptRunner``) then falls back to the full
client path, which retries.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ClusterError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)

from lexigram.ai.session.stores.redis.lane_errors import LaneError
from lexigram.ai.session.stores.redis.packing import HiredisPackingConnection, has_packer, pack
from lexigram.ai.session.stores.redis.pipelined import PipelinedConnection

__all__ = ["DirectLane", "LaneError", "open_lane"]

#: Cluster replies saying the command did not run because its slot is served
#: elsewhere or not at all right now (``MovedError`` is an ``AskError``).
_ELSEWHERE = (AskError, TryAgainError, ClusterDownError)

_MULTI = b"*1\r\n$5\r\nMULTI\r\n"
_EXEC = b"*1\r\n$4\r\nEXEC\r\n"


class DirectLane:
    """Commands written straight to a connection, replies read by its hiredis parser.

    ``source`` sends them: one pipelined connection to a single server, or one per
    node on a Cluster (the node serving the command's key). Its ``exchange`` returns
    error replies in their places and raises :class:`LaneError` when the connection
    fails.
    """

    def __init__(self, source: PipelinedConnection | _NodePipelines) -> None:
        self._source = source

    async def call(self, key: str, *args: Any) -> Any:
        """Send one command about ``key`` and return its reply (an error reply is raised).

        Raises :class:`LaneError` when the connection fails (or, on a Cluster, the
        key's slot is elsewhere: the full path follows the redirection);
        ``ResponseError`` (and subclasses such as ``NoScriptError``) for an error reply.
        """
        reply = (await self._source.exchange(key, pack(args), 1))[0]
        if isinstance(reply, ResponseError):
            if isinstance(reply, _ELSEWHERE):
                raise LaneError(reply, sent=False) from reply  # not run: not its slot
            raise reply
        return reply

    async def transaction(self, key: str, *commands: tuple[Any, ...]) -> list[Any]:
        """Run ``commands`` (all about ``key``'s slot) as one MULTI/EXEC in one round trip.

        Returns EXEC's replies; a command the server refused (``WRONGTYPE``) is raised
        as its ``ResponseError``. A command refused while queued (on a Cluster, a slot
        served elsewhere) aborts the transaction: :class:`LaneError` (nothing ran).
        """
        packed = b"".join([_MULTI, *(pack(c) for c in commands), _EXEC])
        replies = await self._source.exchange(key, packed, len(commands) + 2)
        *queued, result = replies
        for reply in queued:
            if isinstance(reply, ResponseError):
                raise LaneError(reply, sent=False) from reply
        if not isinstance(result, list):
            if isinstance(result, ResponseError):
                raise LaneError(result, sent=False) from result
            raise LaneError(ResponseError(f"EXEC answered {result!r}"), sent=False)
        for reply in result:
            if isinstance(reply, ResponseError):
                raise reply
        return result

    async def aclose(self) -> None:
        """Close the connections the lane made (on a Cluster, one per node)."""
        await self._source.aclose()

    def connections(self) -> list[Any]:
        """The connections the lane made (to drop their sockets when their loop is gone)."""
        return self._source.connections()


class _NodePipelines:
    """A Cluster: one pipelined connection per node, shared by the calls for its slots.

    The connections are the lane's own, made as the node makes its own (its connection
    class and settings, no retries at that level). A node that left the cluster keeps
    its idle connection until the lane is closed.
    """

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self._pipes: dict[str, PipelinedConnection] = {}

    async def exchange(self, key: str, packed: bytes, count: int) -> list[Any]:
        """Send ``packed`` on the pipelined connection of the node serving ``key``."""
        try:
            node: Any = self._client.get_node_from_key(key)
            if node is None:  # pragma: no cover - only asked for replicas
                raise ClusterError(f"no node serves {key!r}")
        except (RedisClusterException, ClusterError) as exc:
            raise LaneError(exc, sent=False) from exc
        pipe = self._pipes.get(node.name)
        if pipe is None:
            pipe = self._pipes[node.name] = PipelinedConnection(partial(_node_connection, node))
        return await pipe.exchange(key, packed, count)

    async def aclose(self) -> None:
        pipes, self._pipes = list(self._pipes.values()), {}
        for pipe in pipes:
            await pipe.aclose()

    def connections(self) -> list[Any]:
        return [conn for pipe in self._pipes.values() for conn in pipe.connections()]


def _node_connection(node: Any) -> Any:
    """A new connection to ``node`` as the node makes its own (retries left to the caller)."""
    options = dict(node.connection_kwargs)
    options["retry"] = Retry(backoff=NoBackoff(), retries=0)
    return node.connection_class(**options)


def open_lane(client: Any) -> DirectLane | None:
    """A lane for ``client``: a single server packing with hiredis, or a Cluster; else None."""
    if isinstance(client, RedisCluster):
        return DirectLane(_NodePipelines(client)) if has_packer() else None
    if not isinstance(client, Redis):
        return None
    if client.connection_pool.connection_class is not HiredisPackingConnection:
        return None
    return DirectLane(PipelinedConnection(client.connection_pool.make_connection))
