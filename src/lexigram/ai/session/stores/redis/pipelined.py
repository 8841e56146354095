"""Auto-pipelining: the lane's calls to a single server share one connection.

Every call made during one turn of the event loop is written to the connection with
one write, and the replies are read back in order by one reader task. Redis then
reads many commands with one system call and writes their replies with one more,
instead of two system calls per command (the per-command network cost is most of
what a short command costs the server); the client saves the same calls.

Semantics are those of a connection per call:

* the commands of one call (a ``MULTI`` … ``EXEC`` block) are written together, so
  no other call's command falls between them;
* a call cancelled before its bytes were written is taken out and never sent; one
  cancelled after that still has its replies read (and dropped), so the connection
  stays in step;
* when the connection fails, every call waiting on it fails with :class:`LaneError`
  (``sent`` says whether its bytes were written) and the next call opens a new one.

How many calls are in flight at once is bounded by the caller (the store's gate).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from lexigram.ai.session.stores.redis.lane_errors import LaneError, closed_by_peer

__all__ = ["PipelinedConnection"]

#: A timer may run this much before its time (the event loop's clock resolution).
_CLOCK_SLACK_S = 0.001


class _Call:
    """One caller's bytes, how many replies they produce, and where the replies go."""

    __slots__ = ("count", "data", "future", "sent_at")

    def __init__(self, data: bytes, count: int, future: asyncio.Future[list[Any]]) -> None:
        self.data = data
        self.count = count
        self.future = future
        self.sent_at = 0.0  # the event loop's time of its write (the stall watch's start)


class PipelinedConnection:
    """One connection to one server, carrying every lane call of one event loop to it."""

    def __init__(self, make: Callable[[], Any]) -> None:
        # ``make``: a new (unconnected) redis-py connection to the server; they are
        # untyped where the lane reaches into them
        self._make = make
        self._conn: Any = None
        self._made: list[Any] = []
        self._unsent: list[_Call] = []
        self._in_flight: deque[_Call] = deque()
        self._flush_planned = False
        self._reader: asyncio.Task[None] | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None

    async def exchange(self, key: str, packed: bytes, count: int) -> list[Any]:
        """Send ``packed`` (``count`` commands) with the other calls of this loop turn.

        Returns the replies in order (error replies in their places, not raised);
        raises :class:`LaneError` when the connection fails.
        """
        await self._ready()
        loop = asyncio.get_running_loop()
        call = _Call(packed, count, loop.create_future())
        self._unsent.append(call)
        if not self._flush_planned:
            self._flush_planned = True
            loop.call_soon(self._flush)
        try:
            return await call.future
        except asyncio.CancelledError:
            if call in self._unsent:  # not written yet: never sent
                self._unsent.remove(call)
            raise

    async def _ready(self) -> None:
        """A connected connection, opened again when the server closed an idle one."""
        while True:
            conn = self._conn
            if conn is not None:
                idle = not self._in_flight and not self._unsent
                if conn.is_connected and not (idle and closed_by_peer(conn)):
                    return
                # Lost (or, idle, closed by the server meanwhile, as the pool checks):
                # a write never goes out on it.
                self._break(conn, RedisConnectionError("Connection closed by server."))
            if self._connecting is None:
                # Opened in a task of its own: a caller cancelled meanwhile does not
                # cancel the connection the others wait for.
                opening = asyncio.get_running_loop().create_task(self._open())
                opening.add_done_callback(_retrieve)
                self._connecting = opening
            await asyncio.shield(self._connecting)  # its LaneError is raised here

    async def _open(self) -> None:
        conn = self._make()
        self._made.append(conn)
        try:
            await conn.connect()
        except BaseException as exc:
            self._made.remove(conn)
            raise LaneError(exc, sent=False) from exc
        finally:
            self._connecting = None
        self._conn = conn

    def _flush(self) -> None:
        """Write every call made since the last flush with one write; start the reader."""
        self._flush_planned = False
        # A caller cancelled before this write is left out (its future is cancelled).
        calls = [call for call in self._unsent if not call.future.done()]
        self._unsent = []
        if not calls:
            return
        conn = self._conn
        writer = None if conn is None else conn._writer
        if writer is None:
            _fail(calls, RedisConnectionError("not connected"), sent=False)
            return
        try:
            writer.write(b"".join([call.data for call in calls]))
        except Exception as exc:  # any failure to write ends the connection
            _fail(calls, exc, sent=False)
            self._break(conn, exc)
            return
        now = asyncio.get_running_loop().time()
        for call in calls:
            call.sent_at = now
        self._in_flight.extend(calls)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read(conn))
        if self._watchdog is None:
            self._watch(conn)

    async def _read(self, conn: Any) -> None:
        """Read replies in order until every written call has its own."""
        read = conn._parser.read_response
        in_flight = self._in_flight
        try:
            while in_flight:
                call = in_flight[0]
                replies = [await read() for _ in range(call.count)]
                in_flight.popleft()
                if not call.future.done():  # its caller may have been cancelled
                    call.future.set_result(replies)
        except BaseException as exc:
            self._break(conn, exc)
            if not isinstance(exc, Exception):
                raise

    def _watch(self, conn: Any) -> None:
        """Fail the connection when no reply came for ``socket_timeout`` while calls wait.

        Each call's replies must come within the connection's ``socket_timeout`` (as
        redis-py reads them; 5 s by default): a server that stalls fails the calls on
        the connection (``TimeoutError``, sent), which the store then runs on the full
        path, with its own timeout and retries. One timer at a time, set for the oldest
        waiting call's deadline (its write plus ``socket_timeout``): replies come in
        order, so a later call's deadline is watched once the calls before it are
        answered. (Re-armed for a whole ``socket_timeout`` after any progress, a call
        written just after another's reply waited up to twice as long.)
        """
        limit = getattr(conn, "socket_timeout", None)
        if not limit or self._watchdog is not None or self._conn is not conn:
            return
        if not self._in_flight:
            return
        loop = asyncio.get_running_loop()

        def check() -> None:
            self._watchdog = None
            if self._conn is not conn or not self._in_flight:
                return
            if loop.time() + _CLOCK_SLACK_S >= self._in_flight[0].sent_at + limit:
                reader = self._reader
                self._break(conn, TimeoutError(f"no reply from Redis in {limit} s"))
                if reader is not None and not reader.done():
                    reader.cancel()
                return
            self._watch(conn)  # the oldest call was answered: watch the next one's deadline

        self._watchdog = loop.call_at(self._in_flight[0].sent_at + limit, check)

    def _break(self, conn: Any, exc: BaseException) -> None:
        """The connection failed: fail every call on it; the next call opens a new one."""
        if self._conn is not conn:
            return
        self._conn = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._reader = None  # the old one stops at its next read; the next flush starts one
        old = self._in_flight
        self._in_flight = deque()
        in_flight = list(old)
        old.clear()
        unsent, self._unsent = self._unsent, []
        _fail(in_flight, exc, sent=True)
        _fail(unsent, exc, sent=False)
        self._forget(conn)

    def _forget(self, conn: Any) -> None:
        """Close ``conn`` without waiting and stop tracking it."""
        if self._conn is conn:
            self._conn = None
        if conn in self._made:
            self._made.remove(conn)
        writer = conn._writer
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        conn._reader = conn._writer = None

    async def aclose(self) -> None:
        """Stop the reader and close every connection made (waiting calls fail)."""
        opening, self._connecting = self._connecting, None
        if opening is not None and not opening.done():
            opening.cancel()
            with contextlib.suppress(BaseException):
                await opening
        reader, self._reader = self._reader, None
        if reader is not None and not reader.done():
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
        conn = self._conn
        if conn is not None:
            self._break(conn, RedisConnectionError("the store was closed"))
        made, self._made = self._made, []
        for each in made:
            with contextlib.suppress(Exception):
                await each.disconnect(nowait=True)

    def connections(self) -> list[Any]:
        """The connections made and still open (to drop when their loop is gone)."""
        return list(self._made)


def _fail(calls: list[_Call], exc: BaseException, *, sent: bool) -> None:
    for call in calls:
        if not call.future.done():
            call.future.set_exception(LaneError(exc, sent=sent))
            call.future.exception()  # a cancelled caller never retrieves it


def _retrieve(task: asyncio.Task[None]) -> None:
    """Mark a connection attempt's failure as seen (its callers may all be gone)."""
    if not task.cancelled():
        task.exception()
