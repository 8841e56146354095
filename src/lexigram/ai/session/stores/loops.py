"""One set of connections per event loop: connections belong to the loop that opened them.

A driver connection (asyncpg, redis-py) is tied to the event loop it was opened on:
used from another loop it fails ("attached to a different loop"), hangs, or — two
loops reading one socket — corrupts the protocol. :class:`PerLoop` gives every event
loop of the process its own resource (a Redis client, an SQL engine and its kept
connections), made on the loop's first call:

* the hot path is one ``get_running_loop()`` and an identity check against the
  last (loop, resource) pair;
* a loop that shuts down the usual way (``asyncio.run``, ``asyncio.Runner``, any
  ``loop.shutdown_asyncgens()``) closes its resource on its own loop just before
  it stops, through a one-step async generator registered with the loop;
* a loop found closed without that (``loop.close()`` alone) has its resource
  *abandoned*: sockets are closed without touching the loop;
* :meth:`PerLoop.aclose` (the store's ``close()``) closes every resource: on the
  calling loop directly, on another running loop through
  ``run_coroutine_threadsafe`` (bounded), and abandons the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

from lexigram.ai.session.exceptions import SessionStoreError, StoreUnavailableError

__all__ = ["CLOSE_TIMEOUT_S", "LoopResource", "PerLoop", "drop_transport", "one_at_a_time"]

_log = logging.getLogger(__name__)
_running_loop = asyncio.get_running_loop

#: How often, at most, a call looks for other loops closed meanwhile (seconds).
_LOOK_S = 0.05
_monotonic = time.monotonic

#: How long closing one loop's connections may take before they are abandoned.
CLOSE_TIMEOUT_S = 5.0


class LoopResource(Protocol):
    """What :class:`PerLoop` keeps per event loop."""

    #: True when :meth:`aclose` may run on any loop (the driver is not loop-bound).
    any_loop: bool

    async def aclose(self) -> None:
        """Close the connections (on the loop that opened them, unless ``any_loop``)."""

    def abandon(self) -> None:
        """Drop the connections without touching their loop (it is closed or idle)."""


R = TypeVar("R", bound=LoopResource)


class _Entry(Generic[R]):
    """A loop, its resource and the watcher that closes it when the loop shuts down."""

    __slots__ = ("armed", "loop", "resource", "watcher")

    def __init__(self, loop: asyncio.AbstractEventLoop, resource: R) -> None:
        self.loop = loop
        self.resource = resource
        self.watcher: AsyncGenerator[None, None] | None = None
        self.armed = False


class PerLoop(Generic[R]):
    """A resource per running event loop, made by ``make`` on the loop's first call.

    ``first`` (made when the store was built) goes to the first loop that asks.
    Without ``make`` no other loop is served: :meth:`get` raises
    :class:`SessionStoreError` with ``refusal``. ``what`` names the owner in errors.
    """

    def __init__(
        self,
        make: Callable[[], R] | None,
        *,
        first: R | None = None,
        what: str,
        refusal: str = "",
    ) -> None:
        self._make = make
        self._first = first
        self._what = what
        self._refusal = refusal
        self._entries: dict[asyncio.AbstractEventLoop, _Entry[R]] = {}
        self._last: tuple[asyncio.AbstractEventLoop | None, R | None] = (None, None)
        self._mutex = threading.Lock()
        self._closed = False
        self._pending: set[asyncio.Task[None]] = set()
        # Other loops hold resources too: calls look for closed ones (``_look``).
        self._others = False
        self._next_look = 0.0

    # ------------------------------------------------------------------ lookup
    def get(self) -> R:
        """The resource of the running loop (made on its first call)."""
        loop = _running_loop()
        last_loop, last = self._last
        if last_loop is loop and last is not None and not (self._others and self._look()):
            return last
        return self._slow(loop)

    def _look(self) -> bool:
        """Whether another loop holding a resource is closed (looked at most every
        :data:`_LOOK_S`, without the mutex; the hot path stays a few checks)."""
        now = _monotonic()
        if now < self._next_look:
            return False
        self._next_look = now + _LOOK_S
        return any(lp.is_closed() for lp in list(self._entries))

    def loops(self) -> int:
        """How many loops hold a resource now."""
        return len(self._entries)

    def _slow(self, loop: asyncio.AbstractEventLoop) -> R:
        dead: list[_Entry[R]] = []
        refused: Exception | None = None
        fresh = False
        with self._mutex:
            if self._closed:
                raise StoreUnavailableError(f"{self._what} is closed")
            # A loop closed with ``loop.close()`` alone, maybe mid-transaction: its
            # connections still hold the server's locks until they are dropped, and a
            # live loop's write waiting on such a lock would hang (an outside audit).
            dead = [e for lp, e in self._entries.items() if lp.is_closed() and lp is not loop]
            for gone in dead:
                del self._entries[gone.loop]
                gone.armed = False
            entry = self._entries.get(loop)
            if entry is None:
                try:
                    entry = _Entry(loop, self._new())
                except Exception as exc:  # raised below, once the dead are let go
                    refused = exc
                else:
                    self._entries[loop] = entry
                    fresh = True
            if entry is not None:
                self._last = (loop, entry.resource)
            self._others = len(self._entries) > 1
        for gone in dead:
            self._finish_watcher(gone)
            self._discard_dead(gone.resource)
        if refused is not None:
            raise refused
        assert entry is not None
        if fresh:
            self._arm(entry)
        return entry.resource

    def _new(self) -> R:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        if self._make is None:
            raise SessionStoreError(
                f"{self._what} cannot be used from this event loop: {self._refusal}"
            )
        return self._make()

    # --------------------------------------------------------- loop shutdown
    def _arm(self, entry: _Entry[R]) -> None:
        """Register a watcher the loop closes in ``shutdown_asyncgens()``."""
        loop = entry.loop
        # A loop that already shut its async generators down once and runs again
        # (the Agents SDK's Runner.run_sync keeps the thread's loop open) would warn
        # about a new one; it will call shutdown_asyncgens() again, so reset the flag.
        if getattr(loop, "_asyncgens_shutdown_called", False):
            with contextlib.suppress(AttributeError):
                setattr(loop, "_asyncgens_shutdown_called", False)  # noqa: B010
        watcher = _watch(self, entry)
        entry.watcher = watcher
        entry.armed = True
        with contextlib.suppress(StopIteration):  # runs it up to its only ``yield``
            watcher.asend(None).send(None)

    async def _on_shutdown(self, entry: _Entry[R]) -> None:
        """The loop of ``entry`` is shutting down: close its resource on it."""
        with self._mutex:
            mine = self._entries.get(entry.loop) is entry
            if mine:
                del self._entries[entry.loop]
            if self._last[0] is entry.loop:
                self._last = (None, None)
            self._others = len(self._entries) > 1
        if mine:
            await _close_bounded(entry.resource)

    @staticmethod
    def _finish_watcher(entry: _Entry[R]) -> None:
        """End a disarmed watcher synchronously (its loop may be closed)."""
        entry.armed = False
        watcher, entry.watcher = entry.watcher, None
        if watcher is None:
            return
        with contextlib.suppress(StopIteration, RuntimeError):
            watcher.aclose().send(None)

    def _discard_dead(self, resource: R) -> None:
        """A closed loop's resource: closed on this loop if it can be, else abandoned."""
        if not resource.any_loop:
            resource.abandon()
            return
        task = asyncio.get_running_loop().create_task(_close_bounded(resource))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    # ------------------------------------------------------------------ close
    async def aclose(self) -> None:
        """Close every loop's resource (see the module docstring); idempotent."""
        with self._mutex:
            self._closed = True
            entries = list(self._entries.values())
            self._entries.clear()
            self._last = (None, None)
            self._others = False
            first, self._first = self._first, None
            for entry in entries:
                entry.armed = False
        here = asyncio.get_running_loop()
        if first is not None:
            await _close_bounded(first)
        for entry in entries:
            self._finish_watcher(entry)
            await _close_elsewhere(entry, here)
        pending = [t for t in list(self._pending) if t.get_loop() is here]
        if pending:
            await asyncio.wait(pending, timeout=CLOSE_TIMEOUT_S)


async def _watch(owner: PerLoop[Any], entry: _Entry[Any]) -> AsyncGenerator[None, None]:
    """Suspends once; the loop's ``shutdown_asyncgens()`` resumes it to close ``entry``."""
    try:
        yield
    finally:
        if entry.armed:
            entry.armed = False
            await owner._on_shutdown(entry)


async def _close_bounded(resource: LoopResource) -> None:
    """``resource.aclose()`` within :data:`CLOSE_TIMEOUT_S`; abandoned if it fails."""
    try:
        await asyncio.wait_for(resource.aclose(), CLOSE_TIMEOUT_S)
    except Exception as exc:
        _log.warning("ai_session.loop_close_failed: %s: %s", type(exc).__name__, exc)
        resource.abandon()


async def _close_elsewhere(entry: _Entry[Any], here: asyncio.AbstractEventLoop) -> None:
    """Close ``entry`` from the loop ``here`` without ever blocking on a dead loop."""
    loop, resource = entry.loop, entry.resource
    if loop is here or (resource.any_loop and not loop.is_running()):
        await _close_bounded(resource)
        return
    if loop.is_closed() or not loop.is_running():
        resource.abandon()
        return
    try:
        future = asyncio.run_coroutine_threadsafe(_close_bounded(resource), loop)
    except RuntimeError:  # closed meanwhile
        resource.abandon()
        return
    try:
        await asyncio.wait_for(asyncio.wrap_future(future), CLOSE_TIMEOUT_S + 1.0)
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # the caller of close() is being cancelled
        # That loop ended meanwhile (``asyncio.run`` cancels what it still runs) and
        # cancelled the close it was handed: close() raised CancelledError (an audit).
        resource.abandon()
    except Exception as exc:  # that loop is stuck: leave its connections to it
        _log.warning("ai_session.loop_close_timeout: %r", exc)  # a timeout's str() is empty


def drop_transport(transport: Any) -> None:
    """Close an asyncio transport's socket without its loop (which may be closed).

    A loop that is still open (but not running) has the socket taken out of its
    selector first. Nothing is scheduled on the loop; errors are ignored.
    """
    inner = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
    if inner is not None:
        drop_transport(inner)
        with contextlib.suppress(AttributeError):
            transport._closed = True
    sock = getattr(transport, "_sock", None)
    if sock is None:
        return
    loop = getattr(transport, "_loop", None)
    fd = getattr(transport, "_sock_fd", -1)
    if loop is not None and not loop.is_closed() and fd >= 0:
        with contextlib.suppress(Exception):
            loop._remove_reader(fd)
            loop._remove_writer(fd)
    with contextlib.suppress(Exception):
        transport._closing = True
        sock.close()
        transport._sock = None


C = TypeVar("C", bound=type)
_OP_LOCK = "_one_at_a_time_lock"


#: Set on a store by ``close()``; every other operation then raises (see one_at_a_time).
CLOSED_FLAG = "_one_at_a_time_closed"
_LIFECYCLE = frozenset({"close"})
#: Hooks of the store base class that must refuse once the store is closed.
_INHERITED_HOOKS = frozenset({"initialize", "ping", "quarantine"})


def one_at_a_time(cls: C) -> C:
    """Run each public coroutine method of ``cls`` under one ``threading.RLock`` per object.

    For stores whose operations never suspend (the in-memory store): under one event
    loop they are atomic anyway, but event loops in other threads could interleave
    with them. The lock is held for the whole call, which never waits for I/O, and
    is re-entrant (an operation may call another one). Once the object's
    :data:`CLOSED_FLAG` is set (its ``close()``), every operation but ``close`` raises
    ``StoreUnavailableError``, as a closed durable store does; the base class's hooks
    too (its ``ping``, ``initialize`` and ``quarantine`` answered after ``close()``, so
    a closed in-memory store passed its health check). Other inherited methods are
    left as they are: code tells an override from them by identity.
    """
    for name in {*vars(cls), *_INHERITED_HOOKS}:
        method = getattr(cls, name, None)
        if not name.startswith("_") and inspect.iscoroutinefunction(method):
            setattr(cls, name, _locked(method, refuse_closed=name not in _LIFECYCLE))
    return cls


def _locked(
    method: Callable[..., Awaitable[Any]], *, refuse_closed: bool
) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        state = self.__dict__
        if refuse_closed and CLOSED_FLAG in state:
            raise StoreUnavailableError(f"the {self.backend_name} session store is closed")
        lock = state.get(_OP_LOCK) or state.setdefault(_OP_LOCK, threading.RLock())
        with lock:
            return await method(self, *args, **kwargs)

    return call
