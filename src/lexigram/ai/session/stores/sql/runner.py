"""Running a store operation as one transaction, on SQLite or PostgreSQL.

Every store operation is a *script*: an ``async def`` taking a :class:`Tx` and doing
its reads, checks and writes through it. The runner wraps the script in exactly one
transaction:

* **SQLite** (aiosqlite): the whole script runs inside the connection's worker
  thread in *one* hop — ``BEGIN IMMEDIATE`` (writes) or ``BEGIN`` (snapshot reads),
  the script, ``COMMIT`` — because each aiosqlite call is a thread round trip that
  costs more than the SQL itself. The script's ``await tx.…`` calls never suspend
  there (SQLite answers synchronously), so the coroutine is driven to completion
  with ``send(None)`` in the worker thread. Operations that arrive while a hop runs
  wait on the event loop and the next hop runs them all (:class:`PinnedQueue`): the
  reads, then the writes as one transaction with a savepoint each (one commit).
* **PostgreSQL** (asyncpg): the script runs on the event loop against the driver
  connection inside ``BEGIN … COMMIT`` (READ COMMITTED for writes, REPEATABLE READ
  READ ONLY for snapshot reads). A connection found closed (server restarted) is
  discarded and the operation retried on a fresh one as long as nothing was sent;
  a deadlock or serialisation failure (the transaction was rolled back) is retried.

SQLAlchemy owns the engine, the pool, URL handling and the DDL; the statements of
the hot path go straight to the driver connection the pool hands out.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import re
import sqlite3
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from lexigram.ai.session.exceptions import (
    SessionError,
    SessionStoreError,
    SessionValidationError,
    StoreUnavailableError,
    WriteOutcomeUnknownError,
)
from lexigram.ai.session.stores.loops import PerLoop
from lexigram.ai.session.stores.sql.engine import (
    drop_driver_connection,
    loop_agnostic,
    track_connections,
)
from lexigram.ai.session.stores.sql.settle import StepStillRunning, settled

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = [
    "RETURNED_CLEAN",
    "Conflict",
    "Row",
    "Runner",
    "Script",
    "Tx",
    "make_runner",
    "mark_resent",
    "socket_lost",
    "was_resent",
]

T = TypeVar("T")
Row = Sequence[Any]
Script = Callable[..., Coroutine[Any, Any, T]]


_RESENT: ContextVar[bool] = ContextVar("lexigram_ai_session_sql_resent", default=False)


def mark_resent(value: bool) -> None:
    """Record whether the running operation is a re-send of a write whose reply was lost."""
    _RESENT.set(value)


def was_resent() -> bool:
    """True while (and after) the runner re-sends a write whose commit reply was lost.

    Only then may a store treat turns it finds already stored as its own earlier
    attempt (:func:`ops_turns.replay_outcome`); a caller's own second append of the
    same turn is a duplicate, as on every other backend.
    """
    return _RESENT.get()


class Conflict(Exception):
    """A unique constraint refused a row (translated by the store into a domain error)."""


class Tx(abc.ABC):
    """The statements a script can run inside its transaction (``:name`` parameters)."""

    dialect: ClassVar[str]

    @abc.abstractmethod
    async def one(self, sql: str, params: Mapping[str, Any] | None = None) -> Row | None:
        """The first row of ``sql``, or None."""

    @abc.abstractmethod
    async def all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """Every row of ``sql``."""

    @abc.abstractmethod
    async def run(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        """Execute ``sql``; the number of rows it changed."""

    @abc.abstractmethod
    async def many(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Execute ``sql`` once per parameter set."""

    async def lock_user(self, key: str) -> None:  # noqa: B027 - a dialect may need none
        """Hold ``key`` (a namespaced user id) until the transaction ends.

        What serialises the per-user cap where the transaction's own locks do not (the
        default: nothing, SQLite's writers are serialised already; PostgreSQL takes an
        advisory lock in the script, MariaDB a named lock, see ``mysql.MyTx``).
        """

    async def call_sets(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> list[list[Row]] | None:
        """Every result set of the procedure ``CALL`` ``sql``; None when it cannot run.

        None also on dialects without stored procedures (the default here): the
        caller then runs the statements the procedure stands for.
        """
        return None


# --------------------------------------------------------------------- SQLite
class SqliteTx(Tx):
    """Statements on a ``sqlite3`` connection, called from its aiosqlite worker thread."""

    dialect: ClassVar[str] = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def one(self, sql: str, params: Mapping[str, Any] | None = None) -> Row | None:
        cur = self._exec(sql, params)
        row: Row | None = cur.fetchone()
        cur.close()
        return row

    async def all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        rows: list[Row] = self._exec(sql, params).fetchall()
        return rows

    async def run(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        return self._exec(sql, params).rowcount

    async def many(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        try:
            self._conn.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from exc

    def _exec(self, sql: str, params: Mapping[str, Any] | None) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params or {})
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from exc


def _drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends to completion, synchronously."""
    try:
        coro.send(None)
    except StopIteration as stop:
        result: T = stop.value
        return result
    coro.close()
    raise RuntimeError("a SQLite store script awaited something that is not the database")


def _sqlite_call(
    conn: sqlite3.Connection, begin: str | None, script: Script[T], args: tuple[Any, ...]
) -> T:
    """The body of one hop into the worker thread: a whole transaction."""
    if begin is not None:
        conn.execute(begin)
    try:
        result = _drive(script(SqliteTx(conn), *args))
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    if conn.in_transaction:
        conn.commit()
    return result


#: How a write transaction starts on SQLite (a script given it is a write).
_WRITE_BEGIN = "BEGIN IMMEDIATE"
#: The most operations one hop into the worker thread runs (see :func:`_run_ops`).
BATCH_MAX = 64
Outcome = tuple[bool, Any]


class _Op:
    """One operation waiting for the pinned connection's worker thread."""

    __slots__ = ("args", "begin", "future", "script")

    def __init__(
        self, begin: str | None, script: Script[Any], args: tuple[Any, ...], future: Any
    ) -> None:
        self.begin = begin
        self.script = script
        self.args = args
        self.future = future


def _outcome(conn: sqlite3.Connection, op: _Op) -> Outcome:
    try:
        return True, _sqlite_call(conn, op.begin, op.script, op.args)
    except BaseException as exc:
        return False, exc


def _run_ops(conn: sqlite3.Connection, ops: Sequence[_Op]) -> list[Outcome]:
    """The body of one hop running several operations (worker thread), in two steps.

    The reads first, each as alone; then the writes in one ``BEGIN IMMEDIATE …
    COMMIT`` (one commit for all: :func:`_write_group`). Every operation of one hop
    was waiting at the same time (none had returned to its caller), so running the
    reads before the writes is an order the callers could have seen anyway.
    """
    out: list[Outcome] = [(False, None)] * len(ops)
    writes: list[int] = []
    for i, op in enumerate(ops):
        if op.begin == _WRITE_BEGIN:
            writes.append(i)
        else:
            out[i] = _outcome(conn, op)
    if len(writes) == 1:
        out[writes[0]] = _outcome(conn, ops[writes[0]])
    elif writes:
        _write_group(conn, ops, writes, out)
    return out


def _write_group(
    conn: sqlite3.Connection, ops: Sequence[_Op], writes: list[int], out: list[Outcome]
) -> None:
    """Writes ``ops[i]`` (``i`` in ``writes``) as one transaction, each in a savepoint.

    A write that raises is undone alone (``ROLLBACK TO`` its savepoint) and gets its
    error; the others commit together, and each gets its result only once ``COMMIT``
    succeeded (a failed commit is every one's error: none of them was applied). When
    SQLite rolls the whole transaction back itself (disk full, I/O error), the
    failing write gets the error and the others run again in a new transaction.
    """
    while writes:
        try:
            conn.execute(_WRITE_BEGIN)
        except BaseException as exc:
            for i in writes:
                out[i] = (False, exc)
            return
        applied: list[int] = []
        again: list[int] = []
        for k, i in enumerate(writes):
            op = ops[i]
            try:
                conn.execute("SAVEPOINT lexigram_op")
                result = _drive(op.script(SqliteTx(conn), *op.args))
                conn.execute("RELEASE lexigram_op")
            except BaseException as exc:
                out[i] = (False, exc)
                if _undo(conn):
                    continue
                again = applied + writes[k + 1 :]  # nothing of this transaction is left
                applied = []
                break
            applied.append(i)
            out[i] = (True, result)
        if conn.in_transaction:  # also when every write failed: the lock is let go
            try:
                conn.commit()
            except BaseException as exc:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.rollback()
                for i in applied:
                    out[i] = (False, exc)
        writes = again


def _undo(conn: sqlite3.Connection) -> bool:
    """Roll back to the write's savepoint; False when the transaction itself is gone."""
    if not conn.in_transaction:
        return False
    try:
        conn.execute("ROLLBACK TO lexigram_op")
        conn.execute("RELEASE lexigram_op")
    except sqlite3.Error:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.rollback()
        return False
    return True


class PinnedQueue:
    """The operations of one event loop on its pinned SQLite connection.

    Alone, an operation is one hop into the connection's worker thread, as before.
    Operations that arrive while a hop runs wait here and the next hop runs them all
    (:func:`_run_ops`): one thread round trip and one commit for many operations
    instead of one each, which is where a busy process spends most of its time.
    """

    __slots__ = ("_busy", "_driver", "_pending")

    def __init__(self, driver: Any) -> None:
        self._driver = driver
        self._pending: list[_Op] = []
        self._busy = False

    async def run(self, begin: str | None, script: Script[T], args: tuple[Any, ...]) -> T:
        """Run one operation; its result or its error."""
        if not self._busy:
            self._busy = True
            try:
                result: T = await self._driver._execute(
                    _sqlite_call, self._driver._conn, begin, script, args
                )
                return result
            finally:
                self._next()
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Op(begin, script, args, future))
        value: T = await future
        return value

    @property
    def driver(self) -> Any:
        """The aiosqlite connection the operations run on."""
        return self._driver

    def _next(self) -> None:
        """Start a hop for the waiting operations, or become idle."""
        pending = self._pending
        ops = [op for op in pending[:BATCH_MAX] if not op.future.done()]  # not cancelled
        del pending[:BATCH_MAX]
        while not ops and pending:
            ops = [op for op in pending[:BATCH_MAX] if not op.future.done()]
            del pending[:BATCH_MAX]
        if not ops:
            self._busy = False
            return
        try:
            hop = asyncio.ensure_future(self._driver._execute(_run_ops, self._driver._conn, ops))
        except BaseException as exc:  # the connection is closed
            self._settle(ops, [(False, exc)] * len(ops))
            self._next()
            return
        hop.add_done_callback(lambda done: self._finish(ops, done))

    def _finish(self, ops: list[_Op], hop: asyncio.Future[list[Outcome]]) -> None:
        if hop.cancelled():
            outcomes: list[Outcome] = [(False, asyncio.CancelledError())] * len(ops)
        elif hop.exception() is not None:
            outcomes = [(False, hop.exception())] * len(ops)
        else:
            outcomes = hop.result()
        self._settle(ops, outcomes)
        self._next()

    @staticmethod
    def _settle(ops: list[_Op], outcomes: list[Outcome]) -> None:
        for op, (ok, value) in zip(ops, outcomes, strict=True):
            if op.future.done():
                continue
            if ok:
                op.future.set_result(value)
            else:
                op.future.set_exception(value)


# One queue per event loop (its Leases): a loop-agnostic engine (SQLite :memory:)
# pins the same connection on every loop, and each loop settles its own futures.
_QUEUES: weakref.WeakKeyDictionary[Leases, PinnedQueue] = weakref.WeakKeyDictionary()


def pinned_queue(leases: Leases, driver: Any) -> PinnedQueue:
    """The queue of ``leases``' pinned aiosqlite connection ``driver`` (made on first use)."""
    queue = _QUEUES.get(leases)
    if queue is None or queue.driver is not driver:
        queue = _QUEUES[leases] = PinnedQueue(driver)
    return queue


class AiosqliteTx(Tx):
    """Statements through aiosqlite's public API (one worker-thread hop each)."""

    dialect: ClassVar[str] = "sqlite"

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def one(self, sql: str, params: Mapping[str, Any] | None = None) -> Row | None:
        rows = await self.all(sql, params)
        return rows[0] if rows else None

    async def all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        try:
            rows: list[Row] = list(await self._conn.execute_fetchall(sql, params or {}))
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from exc
        return rows

    async def run(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        try:
            cursor = await self._conn.execute(sql, params or {})
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from exc
        count: int = cursor.rowcount
        await cursor.close()
        return count

    async def many(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        try:
            await self._conn.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from exc


async def _aiosqlite_call(
    conn: Any, begin: str | None, script: Script[T], args: tuple[Any, ...]
) -> T:
    """The same transaction as :func:`_sqlite_call`, through the public aiosqlite API."""
    if begin is not None:
        await conn.execute(begin)
    try:
        result = await script(AiosqliteTx(conn), *args)
    except BaseException:
        if conn.in_transaction:
            await conn.rollback()
        raise
    if conn.in_transaction:
        await conn.commit()
    return result


# ----------------------------------------------------------------- PostgreSQL
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_PG_SQL: dict[str, tuple[str, tuple[str, ...]]] = {}


def to_numeric(sql: str) -> tuple[str, tuple[str, ...]]:
    """``:name`` parameters rewritten to asyncpg's ``$n`` (memoised)."""
    cached = _PG_SQL.get(sql)
    if cached is not None:
        return cached
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    converted = (_PARAM.sub(number, sql), tuple(names))
    _PG_SQL[sql] = converted
    return converted


class PgTx(Tx):
    """Statements on an asyncpg connection."""

    dialect: ClassVar[str] = "postgresql"

    def __init__(self, conn: Any) -> None:
        import asyncpg

        self._conn = conn
        self._integrity = asyncpg.IntegrityConstraintViolationError

    @staticmethod
    def _args(names: tuple[str, ...], params: Mapping[str, Any] | None) -> list[Any]:
        if not names:
            return []
        assert params is not None
        return [params[n] for n in names]

    async def one(self, sql: str, params: Mapping[str, Any] | None = None) -> Row | None:
        text, names = to_numeric(sql)
        try:
            row: Row | None = await self._conn.fetchrow(text, *self._args(names, params))
        except self._integrity as exc:
            raise Conflict(str(exc)) from exc
        return row

    async def all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        text, names = to_numeric(sql)
        try:
            rows: list[Row] = await self._conn.fetch(text, *self._args(names, params))
        except self._integrity as exc:
            raise Conflict(str(exc)) from exc
        return rows

    async def run(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        text, names = to_numeric(sql)
        try:
            status: str = await self._conn.execute(text, *self._args(names, params))
        except self._integrity as exc:
            raise Conflict(str(exc)) from exc
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def many(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        text, names = to_numeric(sql)
        try:
            await self._conn.executemany(text, [[r[n] for n in names] for r in rows])
        except self._integrity as exc:
            raise Conflict(str(exc)) from exc


# ---------------------------------------------------------------------- leases
Lease = tuple["AsyncConnection", Any]


class Leases:
    """Connections checked out of the SQLAlchemy pool and kept for reuse (LIFO).

    A checkout through ``engine.connect()`` costs three greenlet round trips, more than
    a whole append; the store keeps up to ``keep`` idle connections (with their driver
    connection) and hands them out again. The pool still creates, limits and disposes
    of the connections.
    """

    def __init__(self, engine: AsyncEngine, keep: int) -> None:
        self._engine = engine
        self._keep = keep
        self._idle: list[Lease] = []
        self._closed = False
        self._pinned: Lease | None = None
        self._pinning: asyncio.Lock | None = None
        # Connections being opened or closed in tasks of their own (see acquire and
        # release): close() waits for them, so none is given back after the engine.
        self._background: set[asyncio.Future[Any]] = set()
        self._network = engine.dialect.name != "sqlite"

    def _track(self, task: asyncio.Future[Any]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` or :meth:`take_idle` ran (nothing is kept any more)."""
        return self._closed

    async def pinned(self) -> Lease:
        """The one connection shared by every caller of a kind (SQLite's writes).

        Callers use it at the same time: the driver queues their calls (aiosqlite
        runs them one after the other in its thread). Given back by :meth:`close`.
        """
        lease = self._pinned
        if lease is not None:
            return lease
        if self._pinning is None:
            self._pinning = asyncio.Lock()
        async with self._pinning:
            if self._pinned is None:
                self._pinned = await self.acquire()
            return self._pinned

    async def unpin(self, lease: Lease) -> None:
        """Discard the pinned connection ``lease`` (it broke); the next caller opens another."""
        if self._pinned is not lease:
            return  # another caller of the same connection already discarded it
        self._pinned = None
        await self.release(lease, broken=True)

    def _take_pinned(self) -> list[Lease]:
        pinned, self._pinned = self._pinned, None
        return [] if pinned is None else [pinned]

    async def acquire(self) -> Lease:
        """An idle connection, or a new checkout.

        A new connection is opened in a task of its own: a caller cancelled meanwhile
        leaves the handshake to finish and the connection is kept for the next caller
        (cancelling asyncpg's ``connect`` half way logged "Future exception was never
        retrieved" at ERROR, once per timed-out call that had to connect).
        """
        if self._idle:
            return self._idle.pop()
        if not self._network:
            # aiosqlite opens in its own thread, which a caller's cancellation does not
            # stop; a task left to finish it would outlive a loop its thread closes.
            return await self._open()
        opening = asyncio.ensure_future(self._open())
        self._track(opening)
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            opening.add_done_callback(self._adopt)
            raise

    async def _open(self) -> Lease:
        conn = await self._engine.connect()
        try:
            raw = await conn.get_raw_connection()
        except BaseException:
            await conn.close()
            raise
        return conn, raw.driver_connection

    def _adopt(self, opening: asyncio.Future[Lease]) -> None:
        """Keep a connection opened for a caller that was cancelled meanwhile."""
        if opening.cancelled() or opening.exception() is not None:
            return
        keeping = asyncio.ensure_future(self.release(opening.result()))
        keeping.add_done_callback(_retrieve_quietly)
        self._track(keeping)

    async def release(self, lease: Lease, *, broken: bool = False) -> None:
        """Keep ``lease`` for the next caller, or give it back (``broken``: discard it).

        A network connection whose socket is already gone (the server or something
        on the way dropped it) is discarded too: neither kept nor given back to the
        pool, whose reset of it (a ROLLBACK on MariaDB) would fail and be logged at
        ERROR with the driver's traceback.
        """
        conn = lease[0]
        if broken or (self._network and socket_lost(lease[1])):
            await _to_the_end(_discard(conn), self._track)
            return
        # A pinned connection counts against ``keep``: the pool must always have a
        # connection for a caller waiting on it.
        kept = self._keep - (self._pinned is not None)
        if self._closed or len(self._idle) >= kept:
            closing = _give_back(lease) if self._network else conn.close()
            await _to_the_end(closing, self._track)
        else:
            self._idle.append(lease)

    async def drop_idle(self) -> None:
        """Discard every idle connection (after the server dropped one of them)."""
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            try:
                await conn.invalidate()
            finally:
                await conn.close()

    async def close(self) -> None:
        """Return every idle connection to the pool, once those being opened or closed
        in the background are done (a connection opened for a caller cancelled meanwhile
        is closed, not kept). Cancelled calls just before ``close()`` left connections
        open after it (a ResourceWarning at exit; found by an outside audit)."""
        self._closed = True
        # Only this loop's tasks can finish while we wait: a SQLite store closes the
        # connections of a stopped loop from the caller's (it waited 5 s on them).
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _BACKGROUND_WAIT_S
        # A finished opening's done-callback may start a task of its own (the close of a
        # connection opened for a cancelled caller): wait again for what started meanwhile.
        for _ in range(_BACKGROUND_ROUNDS):
            await asyncio.sleep(0)  # let finished tasks' done-callbacks run first
            ours = {t for t in self._background if not t.done() and t.get_loop() is loop}
            left = deadline - loop.time()
            if not ours or left <= 0:
                break
            await asyncio.wait(ours, timeout=left)
        idle, self._idle = self._idle + self._take_pinned(), []
        for lease in idle:
            await (_give_back(lease) if self._network else lease[0].close())

    def take_idle(self) -> list[Lease]:
        """Stop keeping connections and hand over the idle ones (no I/O)."""
        self._closed = True
        idle, self._idle = self._idle + self._take_pinned(), []
        return idle


def _untracked(task: asyncio.Future[Any]) -> None:
    """Track nothing (a close after the store's own close, which waits for no one)."""
    task.add_done_callback(_retrieve_quietly)


def _retrieve_quietly(task: asyncio.Future[Any]) -> None:
    """Consume a background task's outcome (nobody awaits it)."""
    if not task.cancelled():
        task.exception()


async def _discard(conn: AsyncConnection) -> None:
    """Invalidate and close a connection that broke or may be out of step."""
    try:
        await conn.invalidate()
    finally:
        await conn.close()


def socket_lost(driver: Any) -> bool:
    """Whether a network driver connection can no longer be used (its socket is gone).

    asyncpg: ``is_closed()``. asyncmy: ``connected`` is cleared only once the driver
    itself met the loss; ``_stream_broken`` (0.2.18) also sees a stream the peer
    closed or reset while the connection was idle or just answered.
    """
    if driver is None:
        return True
    is_closed = getattr(driver, "is_closed", None)
    if callable(is_closed):
        return bool(is_closed())
    if not getattr(driver, "connected", True):
        return True
    return bool(getattr(driver, "_stream_broken", False))


#: Set in a connection's pool ``info`` just before a runner gives it back to the pool
#: with no transaction open (what :meth:`Leases.release` without ``broken`` means):
#: MariaDB's pool then skips its reset, a ROLLBACK (see ``mysql._on_reset``).
RETURNED_CLEAN = "lexigram_ai_session_returned_clean"


async def _give_back(lease: Lease) -> None:
    """Return a network connection to the pool, or discard it if its socket is gone.

    Checked when the close runs (it may run in a task of its own, after the caller
    let go of it). The pool's reset of a connection given back was a ROLLBACK on
    MariaDB; on a socket the server dropped meanwhile (or while that ROLLBACK was on
    its way) it failed with "Lost connection" / "server has gone away", and SQLAlchemy
    logged that at ERROR with the driver's traceback ("Exception during reset or
    similar"). The connection is marked clean, so that MariaDB's pool sends none.
    """
    conn, driver = lease
    if socket_lost(driver):
        await _discard(conn)
        return
    with contextlib.suppress(Exception):  # closed or invalidated meanwhile: no marker
        conn.info[RETURNED_CLEAN] = True
    await conn.close()


#: How long closing the store waits for connections being opened or closed meanwhile.
_BACKGROUND_WAIT_S = 5.0

#: How many times closing looks again for tasks started while it waited (bounded).
_BACKGROUND_ROUNDS = 8


async def _to_the_end(
    step: Coroutine[Any, Any, None], track: Callable[[asyncio.Future[Any]], None]
) -> None:
    """Run a connection's close to its end even when the caller is cancelled meanwhile.

    Cancelled half way, SQLAlchemy's reset of the connection (a ROLLBACK) logged
    "Exception during reset or similar" at ERROR with a traceback; the close now
    finishes in the background and the caller gets its cancellation at once.
    """
    task = asyncio.ensure_future(step)
    track(task)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_retrieve_quietly)
        raise


class LoopDb:
    """One event loop's engine and the connections kept for reuse on that loop.

    ``owned``: the engine was made for this loop (closed with it). ``any_loop``:
    the driver is not bound to a loop (aiosqlite), so closing may run on any loop.
    """

    def __init__(self, engine: AsyncEngine, keep: int, *, owned: bool, any_loop: bool) -> None:
        self.engine = engine
        self.leases = Leases(engine, keep)
        self.owned = owned
        self.any_loop = any_loop
        self._opened = track_connections(engine) if owned else None

    async def aclose(self) -> None:
        """Give the kept connections back; dispose of the engine if it is this loop's."""
        try:
            await self.leases.close()
        finally:
            if self.owned:
                await self.engine.dispose()

    def abandon(self) -> None:
        """The loop is gone: close the driver connections without it, drop the rest."""
        for conn, driver in self.leases.take_idle():
            drop_driver_connection(driver)
            sync = conn.sync_connection
            if sync is not None:
                with contextlib.suppress(Exception):
                    sync.invalidate()
        for driver in list(self._opened or ()):
            drop_driver_connection(driver)


# --------------------------------------------------------------------- runners
class Runner(abc.ABC):
    """Runs scripts as transactions on one engine."""

    dialect: ClassVar[str]

    def __init__(
        self,
        engine: AsyncEngine,
        masked_url: str,
        keep: int = 4,
        *,
        make_engine: Callable[[], AsyncEngine] | None = None,
        owns_engine: bool = False,
    ) -> None:
        self.masked_url = masked_url
        pool = engine.sync_engine.pool
        size = getattr(pool, "size", lambda: 5)() + max(getattr(pool, "_max_overflow", 0), 0)
        #: The most connections one loop's engine and kept connections can hold.
        self.most_connections: int = size + keep
        # Connections belong to the event loop that opened them: each loop gets its
        # own engine (made by ``make_engine``) unless one engine can serve them all.
        any_loop = engine.dialect.name == "sqlite"
        shared = loop_agnostic(engine)
        self._shared_owned: AsyncEngine | None = engine if shared and owns_engine else None

        def db(e: AsyncEngine, owned: bool) -> LoopDb:
            return LoopDb(e, keep, owned=owned, any_loop=any_loop)

        make: Callable[[], LoopDb] | None = None
        if shared:
            make = lambda: db(engine, False)  # noqa: E731
        elif make_engine is not None:
            make = lambda: db(make_engine(), True)  # noqa: E731
        self._dbs: PerLoop[LoopDb] = PerLoop(
            make,
            first=db(engine, owns_engine and not shared),
            what=f"the session store on {masked_url}",
            refusal="it was given an engine whose pool keeps connections, which belong "
            "to the event loop they were opened on; build the store from a URL (or give "
            "it an engine with poolclass=NullPool) to use it from any loop",
        )

    @property
    def engine(self) -> AsyncEngine:
        """The engine of the running event loop."""
        return self._dbs.get().engine

    @property
    def leases(self) -> Leases:
        """The connections kept for reuse on the running event loop."""
        return self._dbs.get().leases

    async def _release(self, lease: Lease, *, broken: bool = False) -> None:
        """Give ``lease`` back to the running loop's :class:`Leases`.

        The store may have been closed by another task while ``lease`` was in use: the
        connection is then discarded here. Looking the leases up again raised "store is
        closed" out of the ``finally`` of a write that had committed, so the caller was
        told the write was refused (and retried it: stored twice), and the connection
        was left to the garbage collector (an outside audit).
        """
        try:
            leases = self.leases
        except StoreUnavailableError:
            await _to_the_end(_discard(lease[0]), _untracked)
            return
        await leases.release(lease, broken=broken)

    async def close(self) -> None:
        """Close every event loop's connections and the engines the store made."""
        await self._dbs.aclose()
        if self._shared_owned is not None:
            await self._shared_owned.dispose()

    @abc.abstractmethod
    async def write(self, script: Script[T], *args: Any, retry_safe: bool = False) -> T:
        """Run ``script`` in a write transaction (serialised with other writers).

        ``retry_safe``: running the script again after it committed has the same
        effect and reports the same outcome, so a commit whose reply was lost may be
        retried instead of raising ``WriteOutcomeUnknownError``.
        """

    async def write_statement(
        self, script: Script[T], *args: Any, retry_safe: bool = False
    ) -> T:
        """Run a script of exactly one statement, atomic on its own (default: as a write)."""
        return await self.write(script, *args, retry_safe=retry_safe)

    @abc.abstractmethod
    async def read(self, script: Script[T], *args: Any, snapshot: bool = False) -> T:
        """Run ``script`` as a read; ``snapshot`` makes several statements agree."""

    def may_call(self, sql: str) -> bool:
        """Whether the procedure ``CALL`` ``sql`` is worth sending (never, by default).

        False on dialects without stored procedures, and where one was found missing
        or not executable: the caller then runs the statements it stands for without
        taking a connection for the call first.
        """
        return False

    def unavailable(self, exc: BaseException, doing: str = "reach") -> StoreUnavailableError:
        """The error for a database that cannot be reached."""
        return StoreUnavailableError(
            f"cannot {doing} the session database {self.masked_url}: "
            f"{type(exc).__name__}: {exc}"
        )

    def outcome_unknown(
        self, exc: BaseException, doing: str | None = None
    ) -> WriteOutcomeUnknownError:
        """The error for a write whose commit was sent and whose reply never came.

        ``doing``: what failed afterwards, when an earlier attempt was the unsure one
        and a later step (reconnecting to settle it) failed: the write is still
        possibly applied, never plainly "not reached".
        """
        cause = f"{type(exc).__name__}: {exc}"
        if doing is not None:
            cause = f"then cannot {doing} it again: {cause}"
        return WriteOutcomeUnknownError(
            f"the connection to {self.masked_url} was lost after the write was sent to "
            f"be committed; it may or may not have been applied ({cause})"
        )

    def translate(self, exc: BaseException) -> BaseException:
        """The domain error for a driver error (others are returned unchanged)."""
        return exc


class SqliteRunner(Runner):
    """SQLite through aiosqlite: one worker-thread hop per operation (or per batch of
    operations that waited together, see :class:`PinnedQueue`).

    Writers of one process queue on an asyncio lock shared by every store on the same
    database file, so ``BEGIN IMMEDIATE`` only ever waits (``busy_timeout``) for other
    processes.
    """

    dialect: ClassVar[str] = "sqlite"
    #: Run each operation inside the aiosqlite worker thread in one hop (its private
    #: ``_execute``); False (or an aiosqlite without it) uses the public API instead,
    #: one hop per statement.
    one_hop: ClassVar[bool] = True
    #: Reads go to the pinned writer connection too: each process then runs its SQLite
    #: work in one worker thread, as the raw driver does, instead of one thread per
    #: pooled connection contending for the GIL with the writer while it holds the
    #: database's write lock (more chat exchanges per second: docs/performance.md).
    reads_on_writer: ClassVar[bool] = True
    #: Operations that wait for the pinned connection while a hop runs go together in
    #: the next hop, the writes as one transaction (:class:`PinnedQueue`); False sends
    #: each in a hop of its own.
    batch_hops: ClassVar[bool] = True

    def __init__(
        self, engine: AsyncEngine, masked_url: str, lock_key: str, keep: int = 4, **loops: Any
    ) -> None:
        super().__init__(engine, masked_url, keep, **loops)
        self._lock_key = lock_key

    def _lock(self) -> asyncio.Lock:
        return _shared_lock(self._lock_key)

    async def write(self, script: Script[T], *args: Any, retry_safe: bool = False) -> T:
        # Every write of this event loop goes to one pinned connection: aiosqlite
        # queues them and its thread runs them back to back (no idle gap between
        # two writes while the event loop wakes up), and they never contend for
        # SQLite's write lock among themselves.
        leases = self.leases
        if not self.one_hop or leases.closed:
            return await self._locked_write(script, args)
        return await self._on_pinned("BEGIN IMMEDIATE", script, args)

    async def _on_pinned(self, begin: str | None, script: Script[T], args: tuple[Any, ...]) -> T:
        """One hop on the pinned connection (a write, or a read: see ``reads_on_writer``)."""
        leases = self.leases
        try:
            lease = await leases.pinned()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            raise self.translate(exc) from exc
        driver = lease[1]
        call: Callable[..., Awaitable[T]] | None = getattr(driver, "_execute", None)
        if call is None:  # an aiosqlite without it: one hop per statement
            if begin == "BEGIN IMMEDIATE":
                return await self._locked_write(script, args)
            return await self._hop(begin, script, args)
        try:
            if not self.batch_hops:
                return await call(_sqlite_call, driver._conn, begin, script, args)
            return await pinned_queue(leases, driver).run(begin, script, args)
        except (SessionError, Conflict, asyncio.CancelledError):
            raise
        except BaseException as exc:
            error = self.translate(exc)
            if isinstance(error, StoreUnavailableError) or error is exc:
                await leases.unpin(lease)
            raise error from exc

    async def _locked_write(self, script: Script[T], args: tuple[Any, ...]) -> T:
        async with self._lock():
            return await self._hop("BEGIN IMMEDIATE", script, args)

    async def read(self, script: Script[T], *args: Any, snapshot: bool = False) -> T:
        begin = "BEGIN" if snapshot else None
        if self.reads_on_writer and self.one_hop and not self.leases.closed:
            return await self._on_pinned(begin, script, args)
        return await self._hop(begin, script, args)

    async def _hop(self, begin: str | None, script: Script[T], args: tuple[Any, ...]) -> T:
        try:
            lease = await self.leases.acquire()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            raise self.translate(exc) from exc
        broken = False
        try:
            driver = lease[1]
            call: Callable[..., Awaitable[T]] | None = getattr(driver, "_execute", None)
            if call is None or not self.one_hop:
                return await _aiosqlite_call(driver, begin, script, args)
            sync_conn: sqlite3.Connection = driver._conn
            return await call(_sqlite_call, sync_conn, begin, script, args)
        except (SessionError, Conflict, asyncio.CancelledError):
            raise
        except BaseException as exc:
            error = self.translate(exc)
            broken = isinstance(error, StoreUnavailableError) or error is exc
            raise error from exc
        finally:
            await self._release(lease, broken=broken)

    def translate(self, exc: BaseException) -> BaseException:
        if isinstance(exc, DBAPIError) and exc.orig is not None:
            exc = exc.orig
        if isinstance(exc, sqlite3.OperationalError):
            text = str(exc)
            if "no such table" in text:
                return SessionStoreError(
                    f"the session tables are missing in {self.masked_url} ({text}); "
                    "call initialize() (or `setup_schema`) first"
                )
            return self.unavailable(exc, "use")
        if isinstance(exc, sqlite3.DatabaseError | SQLAlchemyError):
            return SessionStoreError(f"session database {self.masked_url} failed: {exc}")
        if isinstance(exc, ValueError) and "closed" in str(exc).lower():
            return self.unavailable(exc, "use")
        if isinstance(exc, OSError):
            return self.unavailable(exc, "open")
        return exc


_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _shared_lock(key: str) -> asyncio.Lock:
    """One asyncio lock per (event loop, database file)."""
    loop = asyncio.get_running_loop()
    locks = _LOCKS.get(loop)
    if locks is None:
        locks = _LOCKS[loop] = {}
    lock = locks.get(key)
    if lock is None:
        lock = locks[key] = asyncio.Lock()
    return lock


class PgRunner(Runner):
    """PostgreSQL through asyncpg: BEGIN, the script, COMMIT on a pooled connection."""

    dialect: ClassVar[str] = "postgresql"
    retries: ClassVar[int] = 3

    async def write(self, script: Script[T], *args: Any, retry_safe: bool = False) -> T:
        return await self._run(script, args, write=True, snapshot=False, retry_safe=retry_safe)

    async def write_statement(
        self, script: Script[T], *args: Any, retry_safe: bool = False
    ) -> T:
        """Run a script of exactly one statement, atomic on its own (no BEGIN/COMMIT)."""
        return await self._run(
            script, args, write=True, snapshot=False, single=True, retry_safe=retry_safe
        )

    async def read(self, script: Script[T], *args: Any, snapshot: bool = False) -> T:
        return await self._run(script, args, write=False, snapshot=snapshot)

    def _attempts(self) -> int:
        """Enough tries to get past every stale connection the pool may hold."""
        return self.most_connections + 2

    async def _connect(self) -> Lease:
        """A pooled connection and its asyncpg driver connection, known to be open."""
        for _ in range(self._attempts()):
            lease = await self.leases.acquire()
            driver = lease[1]
            if driver is not None and not driver.is_closed():
                return lease
            # The server closed it (restart, pg_terminate_backend): the idle ones kept
            # with it are as dead; discard them all.
            await self._release(lease, broken=True)
            await self.leases.drop_idle()
        raise StoreUnavailableError(f"no open connection to {self.masked_url}")

    async def _run(
        self,
        script: Script[T],
        args: tuple[Any, ...],
        *,
        write: bool,
        snapshot: bool,
        single: bool = False,
        retry_safe: bool = False,
    ) -> T:
        """One operation, retried on a fresh connection while that cannot apply it twice.

        A connection lost while the script's statements run inside BEGIN … COMMIT
        rolls the transaction back: retried. Lost while COMMIT (or a single-statement
        write) was on its way, the outcome is unknown: retried when ``retry_safe``,
        else ``WriteOutcomeUnknownError``.
        """
        import asyncpg

        last: BaseException | None = None
        deadlocks = 0
        # An earlier attempt's commit was sent and its reply lost: whatever fails from
        # then on, the write may have been applied (never a plain "cannot connect").
        sent = False
        for _ in range(self._attempts()):
            try:
                lease = await self._connect()
            except Conflict:
                raise
            except BaseException as exc:
                if isinstance(exc, asyncio.CancelledError):
                    raise
                if sent:
                    raise self.outcome_unknown(_root(exc), "connect to") from exc
                if isinstance(exc, SessionError):
                    raise
                raise self.unavailable(_root(exc), "connect to") from exc
            driver = lease[1]
            unsure = False  # a commit may have happened without our hearing of it
            broken = False
            try:
                tr = None
                if (write and not single) or snapshot:
                    tr = driver.transaction(
                        isolation="read_committed" if write else "repeatable_read",
                        readonly=not write,
                    )
                    try:
                        await tr.start()
                    except Exception as exc:  # BEGIN failed: the connection is unusable
                        tr = None
                        broken = True
                        last = exc
                        continue
                unsure = write and tr is None
                if unsure:  # the statement commits by itself: see settle.py
                    result = await settled(script(PgTx(driver), *args))
                else:
                    result = await script(PgTx(driver), *args)
                if tr is not None:
                    # A read-only snapshot's COMMIT changes nothing: its lost reply is
                    # retried like any read.
                    unsure = write
                    await settled(tr.commit())
                return result
            except BaseException as exc:
                if isinstance(exc, StepStillRunning):
                    broken = True  # the statement still runs on it: never to be reused
                    raise
                if (
                    tr is not None
                    and not driver.is_closed()
                    and not _is_disconnect(exc)
                    and driver.is_in_transaction()  # not after a commit settled on cancel
                ):
                    try:
                        await tr.rollback()
                    except asyncio.CancelledError:
                        # Cancelled during the rollback: the cancellation is the outcome
                        # (it was swallowed and the refusal raised instead).
                        broken = True
                        raise
                    except BaseException:
                        broken = True
                if _is_disconnect(exc):
                    broken = True
                    last = exc
                    if not unsure or _not_applied(exc) or retry_safe:
                        if unsure and not _not_applied(exc):
                            sent = True
                            mark_resent(True)  # the next attempt may find its own commit
                        continue  # rolled back, never sent, a read, or safe to redo
                    raise self.outcome_unknown(exc) from exc
                retry = asyncpg.DeadlockDetectedError | asyncpg.SerializationError
                if isinstance(exc, retry) and deadlocks < self.retries:
                    deadlocks += 1
                    last = exc
                    continue  # rolled back as a whole: safe to run again
                if isinstance(exc, SessionError | Conflict | asyncio.CancelledError):
                    raise
                raise self.translate(exc) from exc
            finally:
                dirty = broken or driver.is_closed() or driver.is_in_transaction()
                await self._release(lease, broken=dirty)
        assert last is not None
        if sent:
            raise self.outcome_unknown(last, "use") from last
        raise self.unavailable(last, "use") from last

    def translate(self, exc: BaseException) -> BaseException:
        import asyncpg

        exc = _root(exc)
        bad_text = asyncpg.CharacterNotInRepertoireError | asyncpg.UntranslatableCharacterError
        if isinstance(exc, bad_text):
            return SessionValidationError(
                "value", f"PostgreSQL cannot store or look up this text: {exc}"
            )
        if isinstance(exc, asyncpg.UndefinedTableError):
            return SessionStoreError(
                f"the session tables are missing in {self.masked_url} ({exc}); "
                "call initialize() (or `setup_schema`) first"
            )
        if _is_disconnect(exc):
            return self.unavailable(exc, "use")
        if isinstance(exc, asyncpg.PostgresError | SQLAlchemyError):
            return SessionStoreError(f"session database {self.masked_url} failed: {exc}")
        return exc


def _root(exc: BaseException) -> BaseException:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        orig: BaseException = exc.orig
        return orig
    return exc


def _not_applied(exc: BaseException) -> bool:
    """Whether a failed statement certainly changed nothing on the server.

    True for asyncpg errors raised by the client before a statement goes out (a
    connection the server closed behind our back is found closed, ``InterfaceError``,
    or still busy with the server's farewell, ``InternalClientError``), and for a
    connection lost *after the server answered the statement with an error* (e.g.
    ``57P01 terminating connection due to administrator command`` during a restart):
    a statement that failed did not commit. Either way a retry cannot apply it twice.
    """
    import asyncpg

    root = _root(exc)
    if isinstance(root, asyncpg.InterfaceError | asyncpg.InternalClientError):
        return True
    return isinstance(root, asyncpg.ConnectionDoesNotExistError) and isinstance(
        root.__cause__, asyncpg.PostgresError
    )


def _is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection (not the statement) failed."""
    import asyncpg

    exc = _root(exc)
    return isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.InterfaceError
        | asyncpg.InternalClientError
        | asyncpg.OperatorInterventionError
        | ConnectionError
        | OSError
        | TimeoutError,
    ) and not isinstance(exc, asyncpg.QueryCanceledError)


def make_runner(
    engine: AsyncEngine,
    masked_url: str,
    *,
    sqlite_lock_key: str | None,
    keep: int = 4,
    make_engine: Callable[[], AsyncEngine] | None = None,
    owns_engine: bool = False,
) -> Runner:
    """The runner for ``engine``'s dialect (``keep``: idle connections kept for reuse).

    ``make_engine`` builds the engine of each further event loop (see
    :class:`~lexigram.ai.session.stores.loops.PerLoop`); ``owns_engine``: ``engine``
    was made by the store and is disposed of by :meth:`Runner.close`.
    """
    loops: dict[str, Any] = {"make_engine": make_engine, "owns_engine": owns_engine}
    if engine.dialect.name == "sqlite":
        return SqliteRunner(engine, masked_url, sqlite_lock_key or masked_url, keep, **loops)
    if engine.dialect.name == "postgresql":
        return PgRunner(engine, masked_url, keep, **loops)
    if engine.dialect.name == "mysql":
        from lexigram.ai.session.stores.sql.mysql import MyRunner

        return MyRunner(engine, masked_url, keep, **loops)
    raise SessionStoreError(f"unsupported SQL dialect {engine.dialect.name!r}")
