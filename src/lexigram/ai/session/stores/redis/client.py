"""Connecting to Redis (single server or Cluster) and running the store's scripts.

Errors of the driver are translated here: an unreachable server becomes
:class:`StoreUnavailableError` (with the password masked out of the URL), a
server-side failure :class:`SessionStoreError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, NoReturn

import orjson
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    AskError,
    ClusterDownError,
    DataError,
    NoScriptError,
    ReadOnlyError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)

from lexigram.ai.session.config_urls import redis_url_problem
from lexigram.ai.session.exceptions import (
    CorruptRecordError,
    SessionStoreError,
    SessionValidationError,
    StoreUnavailableError,
)
from lexigram.ai.session.redaction import redact_url
from lexigram.ai.session.stores.loops import PerLoop, drop_transport
from lexigram.ai.session.stores.redis.gate import CallGate, new_gate
from lexigram.ai.session.stores.redis.lane import DirectLane, LaneError, open_lane
from lexigram.ai.session.stores.redis.packing import connection_class
from lexigram.ai.session.stores.redis.scripts import SCRIPTS

__all__ = ["AnyRedis", "LoopClient", "ScriptRunner", "connect", "mask_url", "translate"]

AnyRedis = Redis | RedisCluster

#: A few quick reconnect attempts (a restarted server is picked up again), but a
#: server that is down fails in well under a second instead of retrying for long.
_RETRIES = 4
_BACKOFF_BASE = 0.02
_BACKOFF_CAP = 0.25
_CONNECT_TIMEOUT = 3.0


def mask_url(url: str) -> str:
    """``url`` with its secrets replaced by ``***``: the password, a token used as the
    user name, and ``password=`` / ``token=`` query parameters (see ``redaction``)."""
    return redact_url(url)


def connect(url: str, *, cluster: bool, pool_size: int) -> AnyRedis:
    """A (lazily connecting) client for ``url``; a malformed URL names ``redis_url``."""
    found = redis_url_problem(url, cluster=cluster)
    if found is not None:  # as SessionConfig says it (``/abc`` went to db 0)
        raise SessionValidationError("redis_url", found[1])
    retry = Retry(ExponentialWithJitterBackoff(cap=_BACKOFF_CAP, base=_BACKOFF_BASE), _RETRIES)
    try:
        if cluster:
            return RedisCluster.from_url(
                url,
                max_connections=pool_size,
                retry=retry,
                socket_connect_timeout=_CONNECT_TIMEOUT,
            )
        packing = connection_class(url)
        extra: dict[str, Any] = {} if packing is None else {"connection_class": packing}
        return Redis.from_url(
            url,
            max_connections=pool_size,
            retry=retry,
            socket_connect_timeout=_CONNECT_TIMEOUT,
            **extra,
        )
    except (ValueError, TypeError, RedisError, RedisClusterException) as exc:
        raise SessionValidationError("redis_url", f"cannot use {mask_url(url)!r}: {exc}") from exc


#: What redis-py raises: its errors, and the Cluster client's own (``RedisClusterException``
#: is no ``RedisError``: an unreachable Cluster raised through untranslated).
_DRIVER_ERRORS = (RedisError, RedisClusterException)


#: Replies refusing a write for now, with nothing applied: too few replicas keep up
#: (``min-replicas-to-write``), a replica or a demoted master (``READONLY``), a master
#: down or a server still loading its data.
#: A pipeline's error names its command first (``Command # 1 (...) of pipeline caused
#: error: NOREPLICAS ...``).
_NOT_NOW = re.compile(
    r"^(?:Command # \d+ \(.*\) of pipeline caused error: )?"
    r"(?:NOREPLICAS|READONLY|MASTERDOWN|LOADING)\b",
    re.DOTALL,
)


def translate(exc: BaseException, where: str) -> NoReturn:
    """Re-raise a driver error as the store's own error type.

    A Cluster that is down or moving a slot (``CLUSTERDOWN``, ``TRYAGAIN``, and an
    ``ASK``/``MOVED`` redirection a transaction cannot follow), and a server refusing
    writes for now (:data:`_NOT_NOW`), refused nothing for good: the command did not
    run, and may once the cluster is back or the slot has moved
    (``StoreUnavailableError``).
    """
    if isinstance(exc, ClusterDownError | TryAgainError | AskError | ReadOnlyError) or (
        isinstance(exc, ResponseError) and _NOT_NOW.search(str(exc)) is not None
    ):
        raise StoreUnavailableError(f"Redis is unavailable ({where}): {exc}") from exc
    if isinstance(exc, ResponseError | DataError):
        raise SessionStoreError(f"Redis refused {where}: {exc}") from exc
    raise StoreUnavailableError(f"Redis is unavailable ({where}): {exc}") from exc


class LoopClient:
    """One event loop's Redis client, its in-flight gate and its script objects."""

    any_loop = False

    def __init__(self, client: AnyRedis, pool_size: int, owned: bool) -> None:
        self.client = client
        self.owned = owned
        self.gate = new_gate(pool_size)
        self.scripts: dict[str, AsyncScript] = {
            name: client.register_script(source) for name, source in SCRIPTS.items()
        }
        self.lane: DirectLane | None = open_lane(client)

    async def aclose(self) -> None:
        """Close the client's connections (on its own loop), if the store made it."""
        if self.lane is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.lane.aclose()
        if self.owned:
            with contextlib.suppress(RedisError, OSError):
                await self.client.aclose()

    def abandon(self) -> None:
        """Close the sockets of a client whose loop is gone, without that loop."""
        lane = [] if self.lane is None else self.lane.connections()
        if not self.owned:
            _drop(lane)
            return
        _drop([*_connections(self.client), *lane])
        if isinstance(self.client, RedisCluster):
            # What aclose() leaves behind, so the client's __del__ does not warn
            # "Unclosed RedisCluster client": redis-py up to 8.1 checks _initialize,
            # 8.2 whether the nodes manager still has a default node.
            self.client._initialize = True
            self.client.nodes_manager.default_node = None  # type: ignore[assignment]  # as aclose()


def _drop(connections: Sequence[Any]) -> None:
    """Close the sockets of ``connections`` without their (gone) event loop."""
    for conn in connections:
        writer = getattr(conn, "_writer", None)
        if writer is not None:
            drop_transport(writer.transport)
        conn._reader = conn._writer = None


def _settle(reply: Any, name: str) -> Any:
    """A pipeline reply as is, or a driver error as the store's own error."""
    if isinstance(reply, RedisError):
        try:
            translate(reply, f"script {name}")
        except (SessionStoreError, StoreUnavailableError) as exc:
            return exc
    if isinstance(reply, BaseException) and not isinstance(reply, Exception):
        raise reply
    return reply


def _connections(client: AnyRedis) -> list[Any]:
    """Every connection a client holds (idle or in use)."""
    if isinstance(client, RedisCluster):
        manager = client.nodes_manager
        nodes = {id(n): n for n in (*manager.nodes_cache.values(), *manager.startup_nodes.values())}
        return [c for node in nodes.values() for c in getattr(node, "_connections", ())]
    pool = client.connection_pool
    return [*pool._get_free_connections(), *pool._get_in_use_connections()]


class ScriptRunner:
    """The store's only way to Redis: scripts by SHA, plain commands and pipelines.

    At most ``pool_size`` calls are in flight at once (callers beyond that wait
    their turn instead of failing with "Too many connections"), and every driver
    error is translated by :func:`translate`. Scripts are loaded once and reloaded
    automatically on NOSCRIPT (after a server restart or ``SCRIPT FLUSH``).
    """

    def __init__(
        self,
        client: AnyRedis,
        pool_size: int,
        *,
        make_client: Callable[[], AnyRedis] | None = None,
        owns_client: bool = False,
    ) -> None:
        def bundle(c: AnyRedis, owned: bool) -> LoopClient:
            return LoopClient(c, pool_size, owned)

        # Connections belong to the event loop that opened them: one client (and
        # one gate) per loop; ``make_client`` builds the clients of other loops.
        self._loops: PerLoop[LoopClient] = PerLoop(
            None if make_client is None else lambda: bundle(make_client(), True),
            first=bundle(client, owns_client),
            what="the Redis session store",
            refusal="it was given a Redis client, which belongs to the event loop it "
            "was first used on; build the store from a URL to use it from any loop",
        )

    @property
    def _client(self) -> AnyRedis:
        return self._loops.get().client

    @property
    def _gate(self) -> asyncio.Semaphore | CallGate:
        return self._loops.get().gate

    @property
    def _scripts(self) -> dict[str, AsyncScript]:
        return self._loops.get().scripts

    def client(self) -> AnyRedis:
        """The client of the running event loop."""
        return self._loops.get().client

    async def close(self) -> None:
        """Close the clients of every event loop (those the store made)."""
        await self._loops.aclose()

    @contextlib.asynccontextmanager
    async def guarded(self, where: str) -> AsyncIterator[AnyRedis]:
        """The running loop's client, for calls made on it directly (scans, maintenance).

        Held under the loop's gate (see :mod:`.gate`: a cancellation the driver
        swallowed is given back), with the driver's errors raised as the store's own
        (:func:`translate`, naming ``where``). Not to be nested in one task: the gate
        may have one place.
        """
        loop = self._loops.get()
        async with loop.gate:
            try:
                yield loop.client
            except _DRIVER_ERRORS as exc:
                translate(exc, where)

    async def command(self, name: str, *args: Any, **options: Any) -> Any:
        """Run one client command (``name`` is the redis-py method)."""
        async with self.guarded(name.upper()) as client:
            return await getattr(client, name)(*args, **options)

    async def pipeline(
        self,
        commands: Sequence[tuple[str, tuple[Any, ...]]],
        *,
        transaction: bool = False,
        raise_on_error: bool = True,
    ) -> list[Any]:
        """Run commands in one round trip.

        Without ``transaction`` they are independent (and may span cluster slots);
        with it they run as one MULTI/EXEC and must all be on one slot. With
        ``raise_on_error=False`` a command the server refused (e.g. ``WRONGTYPE``)
        leaves its ``ResponseError`` in the results instead of failing them all.
        """
        if not commands:
            return []
        async with self._gate:
            try:
                async with self._client.pipeline(transaction=transaction) as pipe:
                    for name, args in commands:
                        getattr(pipe, name)(*args)
                    return list(await pipe.execute(raise_on_error=raise_on_error))
            except _DRIVER_ERRORS as exc:
                translate(exc, "pipeline")

    async def load_all(self) -> None:
        """Load every script into the server(s) now, so the first call is not slowed."""
        for script in self._scripts.values():
            script.sha = await self.command("script_load", script.script)

    async def many(
        self, name: str, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]
    ) -> list[Any]:
        """Run one script for many key sets in one round trip (keys may span slots).

        A server that lost its scripts (restart, ``SCRIPT FLUSH``) answers NOSCRIPT;
        the scripts are then loaded again and the pipeline retried once.
        """
        if not calls:
            return []
        if isinstance(self._client, RedisCluster):
            # redis-py refuses EVALSHA in a cluster pipeline: run them side by side.
            return list(await asyncio.gather(*(self.raw(name, k, a) for k, a in calls)))
        sha = self._scripts[name].sha
        for attempt in range(2):
            try:
                async with self._gate, self._client.pipeline(transaction=False) as pipe:
                    for keys, args in calls:
                        pipe.evalsha(sha, len(keys), *keys, *args)
                    return list(await pipe.execute())
            except NoScriptError as exc:
                if attempt:
                    translate(exc, f"script {name}")
                await self.load_all()
                sha = self._scripts[name].sha
            except _DRIVER_ERRORS as exc:
                translate(exc, f"script {name}")
        raise AssertionError("unreachable")  # pragma: no cover

    async def many_settled(
        self, name: str, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]
    ) -> list[Any]:
        """:meth:`many`, but each call's failure is returned in its place, not raised.

        A failed call's entry is the store's own error (see :func:`translate`); the
        others are unaffected, so a batch never hides what its other calls did. A
        failure to reach Redis at all still raises.
        """
        if not calls:
            return []
        if isinstance(self._client, RedisCluster):
            settled = await asyncio.gather(
                *(self.raw(name, k, a) for k, a in calls), return_exceptions=True
            )
            return [_settle(r, name) for r in settled]
        results: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(2):
            sha = self._scripts[name].sha
            try:
                async with self._gate, self._client.pipeline(transaction=False) as pipe:
                    for i in todo:
                        keys, args = calls[i]
                        pipe.evalsha(sha, len(keys), *keys, *args)
                    replies = list(await pipe.execute(raise_on_error=False))
            except _DRIVER_ERRORS as exc:
                translate(exc, f"script {name}")
            missing = []
            for i, reply in zip(todo, replies, strict=True):
                if isinstance(reply, NoScriptError) and not attempt:
                    missing.append(i)  # not run: the server lost its scripts
                else:
                    results[i] = _settle(reply, name)
            if not missing:
                break
            await self.load_all()
            todo = missing
        return results

    async def raw(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """The script's reply as the driver returns it.

        Sent through the direct lane when there is one (see ``lane.py``); when the
        lane fails the full client path runs it (loading a script the server lost,
        reconnecting and retrying). A write re-sent that way is still applied once
        (its operation id), and if it cannot be sent again its failure says it may
        have run.
        """
        loop = self._loops.get()
        script = loop.scripts[name]
        sent: LaneError | None = None
        if loop.lane is not None and keys:
            async with loop.gate:
                try:
                    return await loop.lane.call(
                        keys[0], "EVALSHA", script.sha, len(keys), *keys, *args
                    )
                except NoScriptError:
                    pass  # the full path loads the scripts again
                except LaneError as exc:
                    sent = exc if exc.sent else None
                except _DRIVER_ERRORS as exc:
                    translate(exc, f"script {name}")
        async with loop.gate:
            try:
                return await script(keys=keys, args=args)
            except _DRIVER_ERRORS as exc:
                if sent is not None and not isinstance(exc, ResponseError | DataError):
                    translate(sent.cause, f"script {name}")
                translate(exc, f"script {name}")

    async def fast(self, *args: Any) -> Any:
        """One plain command on one key (``"LRANGE", key, ...``), through the lane if any."""
        loop = self._loops.get()
        if loop.lane is not None:
            async with loop.gate:
                try:
                    return await loop.lane.call(str(args[1]), *args)
                except LaneError:
                    pass  # a read: the full path below simply runs it again
                except _DRIVER_ERRORS as exc:
                    translate(exc, str(args[0]))
        async with loop.gate:
            try:
                return await loop.client.execute_command(*args)
            except _DRIVER_ERRORS as exc:
                translate(exc, str(args[0]))

    async def atomic_read(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Read commands on one slot (``("HGETALL", key)``, ...) as one MULTI/EXEC: replies.

        Through the lane when there is one (one write, one round trip, replies as
        the server sends them: ``HGETALL`` a flat list on RESP2); when it fails, the
        full client path runs the whole transaction again (``HGETALL`` a dict).
        Keyed by the first command's key.
        """
        loop = self._loops.get()
        if loop.lane is not None:
            async with loop.gate:
                try:
                    return await loop.lane.transaction(str(commands[0][1]), *commands)
                except LaneError:
                    pass  # reads: the full path simply runs them again
                except _DRIVER_ERRORS as exc:
                    translate(exc, str(commands[0][0]))
        async with loop.gate:
            try:
                async with loop.client.pipeline(transaction=True) as pipe:
                    for command in commands:
                        pipe.execute_command(*command)
                    return list(await pipe.execute())
            except _DRIVER_ERRORS as exc:
                translate(exc, "pipeline")

    async def json(
        self, name: str, keys: Sequence[str], args: Sequence[Any], *, record: str
    ) -> Any:
        """Run a script whose reply is one JSON document and decode it.

        A reply that is not valid JSON means stored bytes are damaged (the reply
        embeds them): :class:`CorruptRecordError` naming ``record``.
        """
        reply = await self.raw(name, keys, args)
        try:
            return orjson.loads(reply)
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise CorruptRecordError(record, f"stored data is not valid JSON/UTF-8: {exc}") from exc
