"""Helpers for driving stores from several event loops: threads, leak checks, sockets.

Every wait is bounded: a thread that does not finish fails the test instead of
hanging it.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.stores.base import SessionStore
from lexigram.ai.session.stores.database import DatabaseSessionStore
from tests.services import POSTGRES_URL, REDIS_URL

T = TypeVar("T")

#: The longest any thread or close may take before the test fails.
DEADLINE_S = 60.0


def bounded(test: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """Run an async test on its own loop in a daemon thread; fail it after ``2 * DEADLINE_S``.

    A regression can leave a loop waiting forever for a reply another loop read,
    beyond the reach of a cancellation; a thread that does not finish in time is
    left behind and the test fails instead of hanging the run. (The test's loop is
    then the "main" loop its stores are booted on.)
    """

    @functools.wraps(test)
    async def run(*args: Any, **kwargs: Any) -> None:
        worker = Worker(functools.partial(test, *args, **kwargs), limit=2 * DEADLINE_S)
        worker.start()
        await asyncio.to_thread(worker.thread.join, 2 * DEADLINE_S + 5.0)
        assert not worker.thread.is_alive(), "the test hung (its event loop never finished)"
        if worker.error is not None:
            raise worker.error

    return run


def new_turn(label: str) -> SessionTurn:
    """A one-line user turn with a fresh id."""
    return SessionTurn(
        turn_id=uuid.uuid4().hex, role="user", content=label, timestamp=datetime.now(UTC)
    )


def new_state(session_id: str | None = None, user_id: str = "loops-user") -> SessionState:
    """An empty ACTIVE session."""
    now = datetime.now(UTC)
    return SessionState(
        session_id=session_id or uuid.uuid4().hex,
        user_id=user_id,
        status=SessionStatus.ACTIVE,
        created_at=now,
        updated_at=now,
        turns=[],
    )


@dataclass
class Worker:
    """A thread running ``asyncio.run(job())``; its result or error is kept."""

    job: Callable[[], Awaitable[Any]]
    limit: float = DEADLINE_S
    result: Any = None
    error: BaseException | None = None
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        try:
            self.result = asyncio.run(self._bounded())
        except BaseException as exc:
            self.error = exc

    async def _bounded(self) -> Any:
        return await asyncio.wait_for(self.job(), self.limit)

    def start(self) -> Worker:
        """Start the thread."""
        self.thread.start()
        return self


async def join(*workers: Worker) -> list[Any]:
    """Wait (without blocking the calling loop) for every worker; raise its first error."""
    for worker in workers:
        await asyncio.to_thread(worker.thread.join, DEADLINE_S)
        assert not worker.thread.is_alive(), "a worker thread is stuck (hang)"
    for worker in workers:
        if worker.error is not None:
            raise worker.error
    return [w.result for w in workers]


def in_thread(job: Callable[[], Awaitable[T]]) -> Awaitable[T]:
    """``asyncio.to_thread(lambda: asyncio.run(job()))``, bounded: the issue's repro."""

    async def run() -> T:
        worker = Worker(job).start()
        results = await join(worker)
        value: T = results[0]
        return value

    return run()


# ----------------------------------------------------------------- leak checks
@dataclass
class Problems:
    """What went wrong outside the test's own calls: warnings, unraisable errors, logs."""

    warnings: list[str] = field(default_factory=list)
    unraisable: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        """Every problem, as text."""
        return [*self.warnings, *self.unraisable, *self.logs]


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(f"log {record.name}: {record.getMessage()}")


@contextmanager
def no_leaks() -> Iterator[Problems]:
    """Collect ResourceWarnings, unraisable exceptions and asyncio/SQLAlchemy errors.

    Exits with an assertion listing them (e.g. "unclosed transport", "Event loop is
    closed"), after a garbage collection so that leaked objects are finalised.
    """
    gc.collect()
    found = Problems()
    old_hook = sys.unraisablehook

    def hook(info: Any) -> None:
        found.unraisable.append(f"unraisable {info.exc_type.__name__}: {info.exc_value}")

    handler = _Collect(found.logs)
    loggers = [logging.getLogger(n) for n in ("asyncio", "sqlalchemy", "lexigram")]
    for lg in loggers:
        lg.addHandler(handler)
    sys.unraisablehook = hook
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield found
            for _ in range(3):
                gc.collect()
        found.warnings.extend(
            f"{w.category.__name__}: {w.message}"
            for w in caught
            if issubclass(w.category, ResourceWarning | RuntimeWarning)
            or "loop" in str(w.message).lower()
        )
    finally:
        sys.unraisablehook = old_hook
        for lg in loggers:
            lg.removeHandler(handler)
    assert not found.all(), found.all()


# --------------------------------------------------------------------- sockets
def _socket_inodes() -> set[str]:
    inodes: set[str] = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def open_connections(ports: set[int]) -> int:
    """How many TCP connections this process holds to 127.0.0.1 on ``ports``."""
    mine = _socket_inodes()
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            remote_port = int(cols[2].rsplit(":", 1)[1], 16)
            state = cols[3]
            if remote_port in ports and state == "01" and cols[9] in mine:
                count += 1
    return count


def open_files(path: Path) -> int:
    """How many file descriptors of this process point at ``path`` (or its WAL files)."""
    names = {str(path), f"{path}-wal", f"{path}-shm"}
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") in names:
                count += 1
        except OSError:
            continue
    return count


async def server_side_closed(backend: Backend) -> None:
    """Wait until the server sees none of the store's connections (where it can tell)."""
    if backend.on_server is None:
        return
    deadline = time.monotonic() + 10.0
    while (count := await backend.on_server()) > 0:
        assert time.monotonic() < deadline, f"the server still sees {count} connections"
        await asyncio.sleep(0.1)


async def eventually(check: Callable[[], bool], what: str) -> None:
    """Wait until ``check()`` holds (connections close asynchronously), at most a deadline."""
    deadline = time.monotonic() + 10.0
    while not check():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.05)


# -------------------------------------------------------------------- backends
@dataclass(frozen=True)
class Backend:
    """How to build a store of one backend and see its connections from outside."""

    name: str
    make: Callable[[], SessionStore]
    ports: frozenset[int] = frozenset()
    files: Path | None = None
    cleanup: Callable[[], Awaitable[None]] | None = None
    #: The server's own count of the store's connections (PostgreSQL: by application_name).
    on_server: Callable[[], Awaitable[int]] | None = None

    def connections(self) -> int:
        """Sockets to the backend's server(s), or files open on its database."""
        if self.files is not None:
            return open_files(self.files)
        return open_connections(set(self.ports)) if self.ports else 0


def sql_backend(name: str, url: str, prefix: str, files: Path | None = None) -> Backend:
    """A SQL backend on ``url`` with table prefix ``prefix``."""

    async def cleanup() -> None:
        from lexigram.ai.session.stores.database import drop_schema

        if url.startswith(("postgresql", "mysql")):
            await drop_schema(url, table_prefix=prefix)

    async def on_server() -> int:
        import asyncpg

        conn = await asyncpg.connect(url.replace("+asyncpg", ""))
        try:
            count: int = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                f"lexigram-ai-session:{prefix}"[:63],
            )
        finally:
            await conn.close()
        return count

    postgres = url.startswith("postgresql")
    ports = {5432} if postgres else {3306} if url.startswith("mysql") else set()
    return Backend(
        name=name,
        make=lambda: DatabaseSessionStore(url, table_prefix=prefix, pool_size=4),
        ports=frozenset(ports),
        files=files,
        cleanup=cleanup,
        on_server=on_server if postgres else None,
    )


def redis_backend(name: str, url: str, ports: set[int], *, cluster: bool) -> Backend:
    """A Redis backend under a fresh key prefix (keys dropped by ``cleanup``)."""
    from lexigram.ai.session.stores.cache import CacheSessionStore

    prefix = f"lxloops:{uuid.uuid4().hex[:10]}"

    async def cleanup() -> None:
        from tests.stores.backends.redis import drop_prefix

        store = CacheSessionStore(url, key_prefix=prefix, cluster=cluster)
        try:
            await drop_prefix(store.client, store.keys.pattern)
        finally:
            await store.close()

    return Backend(
        name=name,
        make=lambda: CacheSessionStore(url, key_prefix=prefix, cluster=cluster, pool_size=8),
        ports=frozenset(ports),
        cleanup=cleanup,
    )


__all__ = [
    "DEADLINE_S",
    "POSTGRES_URL",
    "REDIS_URL",
    "Backend",
    "Problems",
    "Worker",
    "bounded",
    "eventually",
    "in_thread",
    "join",
    "new_state",
    "new_turn",
    "no_leaks",
    "open_connections",
    "redis_backend",
    "server_side_closed",
    "sql_backend",
]
