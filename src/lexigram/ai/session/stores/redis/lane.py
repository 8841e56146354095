"""The direct lane: commands packed by hiredis, written straight to a connection.

redis-py runs every command through several layers (retry wrapper, pool lock,
observability records, event dispatch, health checks, timeouts), which on a chat
request cost the client more than the command itself. With ``hiredis`` the
store's calls go through :class:`DirectLane` instead: the command is packed by
``hiredis`` and written to the connection's stream, the reply is read by the
connection's own parser. On a single server every call of one event loop goes out
on one connection of the lane's own (made by the client's pool factory: same URL,
credentials, database and handshake), the calls of one loop turn written together
(:mod:`.pipelined`); on a Cluster a call borrows a connection of the node serving
the key's slot and carries it alone (a redirection is left to the full path).

Failures are not handled here: any error leaves the connection closed (a reply may
still be on its way) and is raised as :class:`LaneError`, saying whether the command
may have reached Redis. The caller (``ScriptRunner``) then falls back to the full
client path, which retries.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ClusterError,
    MaxConnectionsError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from lexigram.ai.session.stores.redis.lane_errors import LaneError, closed_by_peer
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

    ``source`` lends the connections: its own for a single server, the node's
    (the one serving the command's key) on a Cluster.
    """

    def __init__(self, source: PipelinedConnection | _NodeConnections) -> None:
        self._source = source

    async def call(self, key: str, *args: Any) -> Any:
        """Send one command about ``key`` and return its reply (an error reply is raised).

        Raises :class:`LaneError` when the connection fails (or, on a Cluster, the
        key's slot is elsewhere: the full path follows the redirection);
        ``ResponseError`` (and subclasses such as ``NoScriptError``) for an error reply.
        """
        reply = (await self._exchange(key, pack(args), 1))[0]
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
        replies = await self._exchange(key, packed, len(commands) + 2)
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

    async def _exchange(self, key: str, packed: bytes, count: int) -> list[Any]:
        """Write ``packed`` (``count`` commands) and read their replies (see the sources).

        Error replies are returned in their places, never raised; a failed
        connection is closed and raised as :class:`LaneError`.
        """
        return await self._source.exchange(key, packed, count)

    async def aclose(self) -> None:
        """Close the connections the lane made (a Cluster's belong to its nodes)."""
        await self._source.aclose()

    def connections(self) -> list[Any]:
        """The connections the lane made (to drop their sockets when their loop is gone)."""
        return self._source.connections()


class _NodeConnections:
    """A Cluster: the connections of the node serving the key's slot, lent and returned."""

    def __init__(self, client: RedisCluster) -> None:
        self._client = client
        self._lent: dict[int, Any] = {}

    async def exchange(self, key: str, packed: bytes, count: int) -> list[Any]:
        """Write ``packed`` (``count`` commands) to a connection of the key's node and
        read their replies; the connection carries this call alone meanwhile."""
        try:
            conn: Any = self.take(key)
        except (RedisClusterException, ClusterError, MaxConnectionsError) as exc:
            raise LaneError(exc, sent=False) from exc
        sent = False
        try:
            if conn.is_connected and closed_by_peer(conn):
                # As the pool checks an idle connection: one the server closed
                # meanwhile is opened again, so a write never goes out on it.
                await conn.disconnect(nowait=True)
            if not conn.is_connected:
                await conn.connect()
            writer = conn._writer
            if writer is None:  # pragma: no cover - connect() sets it or raises
                raise RedisConnectionError("not connected")
            writer.write(packed)
            sent = True
            read = conn._parser.read_response
            replies = [await read() for _ in range(count)]
        except (OSError, RedisConnectionError, RedisTimeoutError) as exc:
            await conn.disconnect(nowait=True)
            self.give(conn)
            raise LaneError(exc, sent=sent) from exc
        except BaseException:
            # Cancelled (or worse) while a reply may be on its way: never reuse it.
            await conn.disconnect(nowait=True)
            self.give(conn)
            raise
        self.give(conn)
        return replies

    def take(self, key: str) -> Any:
        node: Any = self._client.get_node_from_key(key)
        if node is None:  # pragma: no cover - only asked for replicas
            raise ClusterError(f"no node serves {key!r}")
        conn = node.acquire_connection()
        self._lent[id(conn)] = node
        return conn

    def give(self, conn: Any) -> None:
        self._lent.pop(id(conn)).release(conn)

    async def aclose(self) -> None:
        return None  # the client closes its nodes' connections

    def connections(self) -> list[Any]:
        return []


def open_lane(client: Any) -> DirectLane | None:
    """A lane for ``client``: a single server packing with hiredis, or a Cluster; else None."""
    if isinstance(client, RedisCluster):
        return DirectLane(_NodeConnections(client)) if has_packer() else None
    if not isinstance(client, Redis):
        return None
    if client.connection_pool.connection_class is not HiredisPackingConnection:
        return None
    return DirectLane(PipelinedConnection(client))
