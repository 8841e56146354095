"""A loopback TCP proxy that injects network faults between a client and a real server.

Used by the fault tests of the Redis and PostgreSQL stores. The proxy listens on
``127.0.0.1`` on an ephemeral port, opens one upstream connection per client
connection and copies bytes both ways. A test arms *one-shot* faults; each fires
on the next client request that matches it (a request is one chunk the client
wrote, as read from the socket), then is used up::

    async with FaultProxy("127.0.0.1", 6379) as proxy:
        store = CacheSessionStore(f"redis://127.0.0.1:{proxy.port}/0", ...)
        proxy.drop_next_reply(match=b"EVALSHA")
        await store.pop_turn(session_id)      # the server pops, the reply is lost,
        assert proxy.replies_dropped == 1     # the client reconnects and re-sends

Faults (all one-shot, armed in order, matched against the client's bytes):

* :meth:`drop_next_reply`: forward the request, let the server apply it, and
  when the reply arrives close the client connection instead of forwarding it.
  This is "the command ran but the caller never heard": the client sees a reset
  connection and (if configured) retries.
* :meth:`cut_before_request`: close the connection instead of forwarding the
  request: the server never sees it.
* :meth:`cut_after_bytes`: forward only the first ``n`` bytes of the request,
  then close: the server sees a truncated request.
* :meth:`cut_mid_transaction`: forward the request up to (not including) a
  marker such as ``b"EXEC"`` (Redis MULTI/EXEC) or ``b"COMMIT"`` (SQL), then
  close: the server saw the start of a transaction but never its end, so it
  discards (Redis) or rolls back (PostgreSQL) what was sent.

Plus persistent settings: :meth:`delay` holds every forwarded chunk for a while,
:meth:`drop_connections` closes every open connection at once, and :meth:`reset`
disarms everything. Counters (``connections_total``, ``connections_open``,
``requests``, ``replies_dropped``, ``cuts``) let a test assert that the fault it
armed really fired, so the test cannot pass by accident.

The proxy is bounded: at most ``max_connections`` client connections at once
(more are closed on accept), and everything is closed when the ``async with``
block exits. A request is matched per chunk read from the client socket, and a
dropped reply is the first chunk the server sends after that request, so use it
with clients that wait for each reply (redis-py, asyncpg) rather than pipelining
unrelated requests on one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

__all__ = ["FaultProxy", "Matcher"]

#: What a fault matches: ``None`` (any request), bytes the request must contain,
#: or a predicate on the request's bytes.
Matcher = bytes | Callable[[bytes], bool] | None

_Kind = Literal["drop_reply", "cut_before", "cut_after", "cut_at"]
_CHUNK = 65536


def _matches(matcher: Matcher, data: bytes) -> bool:
    if matcher is None:
        return True
    if isinstance(matcher, bytes):
        return matcher in data
    return matcher(data)


@dataclass
class _Fault:
    kind: _Kind
    match: Matcher
    nbytes: int = 0
    marker: bytes = b""
    before_close: Callable[[], Awaitable[None]] | None = None


@dataclass(eq=False)
class _Link:
    """One client connection and its upstream connection."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    drop_reply: bool = False
    before_close: Callable[[], Awaitable[None]] | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def close(self) -> None:
        for writer in (self.client, self.upstream):
            transport = writer.transport
            if not transport.is_closing():
                # abort(): an immediate reset, nothing buffered is flushed.
                transport.abort()


class FaultProxy:
    """A TCP proxy on ``127.0.0.1:<ephemeral>`` in front of ``upstream_host:upstream_port``.

    Use it as an async context manager; :attr:`port` is the port to connect to.
    """

    def __init__(
        self, upstream_host: str, upstream_port: int, *, max_connections: int = 64
    ) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._faults: list[_Fault] = []
        self._delay = 0.0
        #: Client connections accepted since the start.
        self.connections_total = 0
        #: Client requests (chunks read from clients) seen since the start.
        self.requests = 0
        #: Replies withheld by :meth:`drop_next_reply` (each closed a connection).
        self.replies_dropped = 0
        #: Connections closed by a ``cut_*`` fault or :meth:`drop_connections`.
        self.cuts = 0

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop listening and close every connection (idempotent)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        links = list(self._links)
        for link in links:
            link.close()
        tasks = [task for link in links for task in link.tasks]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._links.clear()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2.0)

    @property
    def port(self) -> int:
        """The port the proxy listens on (only inside the ``async with`` block)."""
        if self._server is None:
            raise RuntimeError("the proxy is not running")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def connections_open(self) -> int:
        """Client connections open right now."""
        return len(self._links)

    @property
    def armed(self) -> int:
        """One-shot faults armed but not fired yet."""
        return len(self._faults)

    # -- faults ----------------------------------------------------------------

    def drop_next_reply(
        self, match: Matcher = None, *, before_close: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Forward the next matching request, then drop its reply and close the connection.

        The server receives and applies the request; when its reply arrives the
        proxy aborts both sides of that connection instead of forwarding it, so
        the client sees a connection error after the command took effect.
        ``before_close`` is awaited first (another writer acting in that window).
        """
        self._faults.append(_Fault("drop_reply", match, before_close=before_close))

    def cut_before_request(self, match: Matcher = None) -> None:
        """Close the connection instead of forwarding the next matching request."""
        self._faults.append(_Fault("cut_before", match))

    def cut_after_bytes(self, n: int, match: Matcher = None) -> None:
        """Forward only the first ``n`` bytes of the next matching request, then close."""
        if n < 0:
            raise ValueError("n must be >= 0")
        self._faults.append(_Fault("cut_after", match, nbytes=n))

    def cut_mid_transaction(self, marker: bytes = b"EXEC", match: Matcher = None) -> None:
        """Forward the next request containing ``marker`` up to the marker, then close.

        ``marker`` is the command that would end the transaction: ``b"EXEC"`` for
        a Redis MULTI/EXEC pipeline, ``b"COMMIT"`` for SQL sent in one chunk with
        its statements. For a client that sends ``COMMIT`` as its own request, use
        ``cut_before_request(match=b"COMMIT")`` instead (same effect: the server
        never sees the end of the transaction).
        """
        if not marker:
            raise ValueError("marker must not be empty")

        def has_marker(data: bytes) -> bool:
            return marker in data and _matches(match, data)

        self._faults.append(_Fault("cut_at", has_marker, marker=marker))

    def delay(self, seconds: float) -> None:
        """Hold every forwarded chunk (both directions) ``seconds`` until :meth:`reset`."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self._delay = seconds

    def drop_connections(self) -> int:
        """Close every open connection now; returns how many were closed."""
        links = list(self._links)
        for link in links:
            link.close()
        self.cuts += len(links)
        return len(links)

    def upstream_ports(self) -> list[int]:
        """The local ports of the proxy's open connections to the server (as the server
        sees its clients: to find and kill them there)."""
        ports = []
        for link in self._links:
            sockname = link.upstream.get_extra_info("sockname")
            if sockname:
                ports.append(int(sockname[1]))
        return ports

    def reset(self) -> None:
        """Disarm every pending fault and remove the delay."""
        self._faults.clear()
        self._delay = 0.0

    # -- plumbing --------------------------------------------------------------

    def _take_fault(self, data: bytes) -> _Fault | None:
        for index, fault in enumerate(self._faults):
            if _matches(fault.match, data):
                return self._faults.pop(index)
        return None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_total += 1
        if len(self._links) >= self.max_connections:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.upstream_host, self.upstream_port
            )
        except OSError:
            writer.transport.abort()
            return
        link = _Link(client=writer, upstream=up_writer)
        self._links.add(link)
        link.tasks = [
            asyncio.ensure_future(self._client_to_server(link, reader)),
            asyncio.ensure_future(self._server_to_client(link, up_reader)),
        ]
        try:
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            link.close()
            self._links.discard(link)

    async def _client_to_server(self, link: _Link, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(_CHUNK):
                self.requests += 1
                fault = self._take_fault(data)
                if fault is not None and fault.kind != "drop_reply":
                    if fault.kind == "cut_after":
                        await self._send(link.upstream, data[: fault.nbytes])
                    elif fault.kind == "cut_at":
                        await self._send(link.upstream, data[: data.index(fault.marker)])
                    self.cuts += 1
                    link.close()
                    return
                if fault is not None:
                    link.drop_reply = True
                    link.before_close = fault.before_close
                await self._send(link.upstream, data)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            link.close()

    async def _server_to_client(self, link: _Link, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(_CHUNK):
                if link.drop_reply:
                    self.replies_dropped += 1
                    if link.before_close is not None:
                        await link.before_close()
                    link.close()
                    return
                await self._send(link.client, data)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            link.close()

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if self._delay:
            await asyncio.sleep(self._delay)
        if not data or writer.transport.is_closing():
            return
        writer.write(data)
        await writer.drain()
