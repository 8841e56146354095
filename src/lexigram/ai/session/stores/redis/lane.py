"""The direct lane: one command, one reply, on connections of the store's own.

redis-py runs every command through several layers (retry wrapper, pool lock,
observability records, event dispatch, health checks, timeouts), which on a chat
request cost the client more than the command itself. On a single server with
``hiredis`` the store's hot calls go through :class:`DirectLane` instead: the
command is packed by ``hiredis`` and written to the connection's stream, the reply
is read by the connection's own ``hiredis`` parser. Connections come from the
client's pool factory (same URL, credentials, database and handshake) but are
kept here, so each carries at most one command at a time.

Failures are not handled here: any error leaves the connection closed (a reply may
still be on its way) and is raised as redis-py's own exception, with
:class:`LaneError` saying whether the command may have reached Redis. The
caller (``ScriptRunner``) then falls back to the full client path, which retries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from lexigram.ai.session.stores.redis.packing import HiredisPackingConnection, pack

__all__ = ["DirectLane", "LaneError", "open_lane"]


class LaneError(Exception):
    """A lane call failed on the way to or from Redis.

    ``sent``: the command may have reached Redis (it was written before the
    failure); ``cause``: the failure as redis-py's connection error.
    """

    def __init__(self, cause: BaseException, *, sent: bool) -> None:
        super().__init__(str(cause))
        self.sent = sent
        self.cause: RedisConnectionError | RedisTimeoutError = (
            cause
            if isinstance(cause, RedisConnectionError | RedisTimeoutError)
            else RedisConnectionError(f"Error while talking to Redis: {cause}")
        )


class DirectLane:
    """Commands written straight to idle connections of its own, replies read by hiredis."""

    def __init__(self, client: Redis) -> None:
        # redis-py's connections are untyped where the lane reaches into them
        self._make: Callable[[], Any] = client.connection_pool.make_connection
        self._idle: list[Any] = []
        self._made: list[Any] = []

    async def call(self, *args: Any) -> Any:
        """Send one command and return its reply (a server error reply is raised).

        Raises :class:`LaneError` when the connection fails; ``ResponseError`` (and
        its subclasses such as ``NoScriptError``) for an error reply.
        """
        conn: Any = self._idle.pop() if self._idle else self._new()
        sent = False
        try:
            if conn.is_connected and _closed_by_peer(conn):
                # As the pool checks an idle connection: one the server closed
                # meanwhile is opened again, so a write never goes out on it.
                await conn.disconnect(nowait=True)
            if not conn.is_connected:
                await conn.connect()
            writer = conn._writer
            if writer is None:  # pragma: no cover - connect() sets it or raises
                raise RedisConnectionError("not connected")
            writer.write(pack(args))
            sent = True
            reply = await conn._parser.read_response()
        except ResponseError:  # pragma: no cover - the parser returns error replies
            raise
        except (OSError, RedisConnectionError, RedisTimeoutError) as exc:
            await conn.disconnect(nowait=True)
            self._idle.append(conn)
            raise LaneError(exc, sent=sent) from exc
        except BaseException:
            # Cancelled (or worse) while a reply may be on its way: never reuse it.
            await conn.disconnect(nowait=True)
            self._idle.append(conn)
            raise
        self._idle.append(conn)
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    def _new(self) -> Any:
        conn = self._make()
        self._made.append(conn)
        return conn

    async def aclose(self) -> None:
        """Close every connection of the lane."""
        made, self._made, self._idle = self._made, [], []
        for conn in made:
            await conn.disconnect(nowait=True)

    def connections(self) -> list[Any]:
        """Every connection the lane made (to drop their sockets when their loop is gone)."""
        return list(self._made)


def _closed_by_peer(conn: Any) -> bool:
    """Whether an idle connection was closed (or reset) by the other end meanwhile."""
    reader = conn._reader
    return bool(reader.at_eof() or reader.exception() is not None or conn._writer.is_closing())


def open_lane(client: Any) -> DirectLane | None:
    """A lane for ``client`` when it is a single server packing with hiredis, else None."""
    if not isinstance(client, Redis):
        return None
    if client.connection_pool.connection_class is not HiredisPackingConnection:
        return None
    return DirectLane(client)
