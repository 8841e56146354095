"""MariaDB through asyncmy: the engine, the statements' dialect and the runner.

The store's statements are written once, in the SQL that SQLite and PostgreSQL share
(each area's beside its scripts; see :mod:`~lexigram.ai.session.stores.sql.statements`).
On MariaDB each is translated once (memoised) by :func:`translate`:

* ``:name`` parameters become asyncmy's ``%(name)s``;
* ``CAST(… AS TEXT)`` / ``AS BIGINT`` become ``AS CHAR`` / ``AS SIGNED``;
* ``ON CONFLICT (…) DO UPDATE SET c = excluded.c`` becomes
  ``ON DUPLICATE KEY UPDATE c = VALUES(c)``;
* ``json_each(:ids)`` (a JSON array of ids) becomes ``JSON_TABLE``;
* ``UPDATE … RETURNING`` (MariaDB has ``INSERT``/``DELETE … RETURNING`` only)
  becomes the ``UPDATE`` and a ``SELECT`` of the changed rows in the same transaction:
  for a statement on one session (``WHERE session_id = :sid …``) the row is read back
  when the update matched it; for a batch the rows are first locked with
  ``SELECT … FOR UPDATE`` so that exactly the rows updated are returned.

An append of up to ``ONE_STATEMENT_TURNS`` turns is one compound statement
(``BEGIN NOT ATOMIC … END``, :meth:`.ops_turns.TurnStatements.append_rows`) that runs its
own transaction: one round trip instead of ``START TRANSACTION``, the update, its
read-back, the insert and ``COMMIT`` (:meth:`MyRunner.write_statement`). An append of one
or two turns calls the stored procedure that does the same instead
(:mod:`.mysql_routines`): a :class:`~.mysql_routines.Call` statement, whose compound
statement runs when the procedure is missing or may not be executed.

The statements run as server-side prepared statements (asyncmy's statement cache,
:data:`STATEMENT_CACHE` per connection): their ``%(name)s`` parameters are bound by
position (:func:`_bind`), except in a compound statement, which cannot be prepared
and goes as text.

Every connection runs with ``sql_mode`` ``SIMULTANEOUS_ASSIGNMENT`` (``SET a = …, b
= …`` sees the old ``a``, as in standard SQL) and ``PIPES_AS_CONCAT``, and write
transactions are ``SERIALIZABLE``: a plain ``SELECT`` in them takes shared next-key
locks, so the checks of an operation (the per-user cap, the branch cap, an unused id)
hold until it commits, as with SQLite's ``BEGIN IMMEDIATE``. Two writers that lock
the same range in opposite orders meet a deadlock; InnoDB rolls one back and the
runner runs it again. Snapshot reads are ``REPEATABLE READ READ ONLY``.

Supported servers: MariaDB 10.6 or later (``JSON_TABLE``, ``INSERT … RETURNING``,
``SIMULTANEOUS_ASSIGNMENT``). MySQL has none of the three in this form and is
refused when the first connection is made.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from lexigram.ai.session.exceptions import (
    SessionError,
    SessionStoreError,
    StoreUnavailableError,
)
from lexigram.ai.session.stores.sql.mysql_routines import Call
from lexigram.ai.session.stores.sql.runner import (
    RETURNED_CLEAN,
    Conflict,
    Lease,
    Row,
    Runner,
    Script,
    Tx,
    mark_resent,
    socket_lost,
)
from lexigram.ai.session.stores.sql.settle import settled

if TYPE_CHECKING:
    from lexigram.ai.session.stores.sql.urls import DatabaseURL

__all__ = [
    "MYSQL_CONNECT_TIMEOUT_S",
    "STATEMENT_CACHE",
    "MyRunner",
    "MyTx",
    "Plan",
    "make_mysql_engine",
    "translate",
]

T = TypeVar("T")

#: How long connecting to MariaDB may take before the store reports it unreachable.
MYSQL_CONNECT_TIMEOUT_S = 10
#: Server-side prepared statements each connection keeps (asyncmy's statement cache,
#: least recently used out). A statement with positional arguments runs prepared: the
#: server parses it once per connection, arguments and rows travel in the binary
#: protocol (no escaping, no parsing of numbers). Each counts against the server's
#: ``max_prepared_stmt_count`` (16,382 by default, for all clients).
STATEMENT_CACHE = 32
#: The collation of every table: binary and without padding, so ``"a"``, ``"A"`` and
#: ``"a "`` are three ids, as on the other backends.
COLLATION = "utf8mb4_nopad_bin"
#: What every connection runs first.
INIT_COMMAND = (
    "SET SESSION sql_mode = CONCAT(@@sql_mode, ',SIMULTANEOUS_ASSIGNMENT,PIPES_AS_CONCAT'), "
    "SESSION tx_isolation = 'SERIALIZABLE', SESSION innodb_lock_wait_timeout = 30"
)
_ID_LIST = (
    "JSON_TABLE({p}, '$[*]' COLUMNS (value VARCHAR(255) CHARACTER SET utf8mb4 "
    f"COLLATE {COLLATION} PATH '$')) AS je"
)

#: The longest pause before a transaction that met a deadlock runs again.
_MAX_PAUSE_S = 0.1
#: How long a write waits for the named lock of a user (``MyTx.lock_user``): as long
#: as for a row lock (``innodb_lock_wait_timeout`` in :data:`INIT_COMMAND`).
_USER_LOCK_WAIT_S = 30

# Server error codes.
_DUP_ENTRY = 1062
_DEADLOCK = 1213
_LOCK_WAIT_TIMEOUT = 1205
_NO_SUCH_TABLE = 1146
#: A ``CALL`` of a procedure that does not exist, may not be executed, or cannot be
#: loaded: the statement's fallback runs instead.
_NO_ROUTINE = {1305, 1370, 1457}
_LOST = {2003, 2006, 2013, 2055, 1927, 1053, 1077, 1078, 1079, 1080, 1152, 1153, 1158,
         1159, 1160, 1161, 4031}


def make_mysql_engine(url: DatabaseURL, *, pool_size: int, table_prefix: str) -> AsyncEngine:
    """An engine for MariaDB: utf8mb4, autocommit driver mode, the session settings.

    The store opens its transactions itself (``START TRANSACTION``); transactions
    SQLAlchemy opens (``initialize()``'s DDL) hold a named lock per table prefix, so
    that processes initialising at once create the tables one after the other.
    """
    engine = create_async_engine(
        url.render(),
        pool_size=pool_size,
        max_overflow=pool_size,
        isolation_level="AUTOCOMMIT",
        # Reset by _on_reset below: no ROLLBACK for a connection the runner left clean.
        pool_reset_on_return=None,
        connect_args={
            "connect_timeout": MYSQL_CONNECT_TIMEOUT_S,
            "init_command": INIT_COMMAND,
            "stmt_cache_size": STATEMENT_CACHE,
        },
    )
    name = f"lexigram-ai-session:{table_prefix}"[:64]

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("SELECT GET_LOCK(%(n)s, 60)", {"n": name})

    @event.listens_for(engine.sync_engine, "commit")
    def _on_commit(conn: Any) -> None:
        conn.exec_driver_sql("DO RELEASE_ALL_LOCKS()")

    @event.listens_for(engine.sync_engine, "rollback")
    def _on_rollback(conn: Any) -> None:
        # A dead connection fails here: the server released the lock with it.
        with contextlib.suppress(Exception):
            conn.exec_driver_sql("DO RELEASE_ALL_LOCKS()")

    event.listen(engine.sync_engine.pool, "reset", _on_reset)
    return engine


def _on_reset(dbapi_connection: Any, record: Any, state: Any) -> None:
    """The pool's reset of a connection given back (``pool_reset_on_return=None``).

    As SQLAlchemy's default (a ROLLBACK), except for a connection the store's runner
    gives back marked :data:`~.runner.RETURNED_CLEAN`: it ended every transaction it
    started on it (COMMIT, ROLLBACK, or the connection is discarded instead), and the
    connection runs in autocommit mode, so nothing is left to roll back. The ROLLBACK
    was a round trip for nothing, and on a socket the server dropped while it was on
    its way (a connection cut just after it answered) it failed with "Lost connection"
    and SQLAlchemy logged that at ERROR with the driver's traceback ("Exception during
    reset or similar"). asyncpg's adapter sends none either when no transaction is open.
    """
    info = getattr(record, "info", None)
    clean = bool(info.pop(RETURNED_CLEAN, False)) if info is not None else False
    if clean or not state.asyncio_safe or state.transaction_was_reset:
        return
    dbapi_connection.rollback()


# ---------------------------------------------------------------- statements
_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_ON_CONFLICT = re.compile(r"ON CONFLICT \([^)]*\) DO UPDATE SET (.*)$", re.S)
_EXCLUDED = re.compile(r"excluded\.(\w+)")
_UPDATE = re.compile(r"^UPDATE (\w+) SET ", re.S)
_ONE_KEY = re.compile(r" WHERE session_id = :(\w+)")


@dataclass(frozen=True, slots=True)
class Plan:
    """One statement as MariaDB runs it.

    ``kind``: ``plain`` (``sql`` as is), ``update_one`` (``sql``, then ``fetch``
    with ``key`` when a row matched), ``update_many`` (``lock`` picks and locks the
    ids, ``sql`` updates them, ``fetch`` reads them back), ``call`` (``sql`` calls a
    procedure and returns its first result; ``fetch`` is the plain statement run
    instead when the procedure is not there).
    """

    kind: str
    sql: str
    fetch: str = ""
    lock: str = ""
    key: str = ""


_PLANS: dict[str, Plan] = {}
#: Procedure calls found missing or not executable in this process (see ``call_sets``).
_NO_PROCEDURE: set[str] = set()


def _pyformat(sql: str) -> str:
    return _PARAM.sub(r"%(\1)s", sql.replace("%", "%%"))


def translate(sql: str) -> Plan:
    """The MariaDB form of one of the store's statements (memoised)."""
    plan = _PLANS.get(sql)
    if plan is not None:
        return plan
    if isinstance(sql, Call):
        plan = _PLANS[sql] = Plan("call", _pyformat(sql), fetch=translate(sql.fallback).sql)
        return plan
    text = sql.replace(" AS TEXT)", " AS CHAR)").replace(" AS BIGINT)", " AS SIGNED)")
    text = re.sub(r"json_each\((:\w+)\)", lambda m: _ID_LIST.format(p=m.group(1)), text)
    conflict = _ON_CONFLICT.search(text)
    if conflict is not None:
        sets = _EXCLUDED.sub(r"VALUES(\1)", conflict.group(1))
        text = text[: conflict.start()] + "ON DUPLICATE KEY UPDATE " + sets
    update = _UPDATE.match(text)
    at = text.rfind(" RETURNING ")
    if update is None or at < 0:
        plan = Plan("plain", _pyformat(text))
    else:
        table, columns, body = update.group(1), text[at + 11:], text[:at]
        key = _ONE_KEY.search(body)
        if key is not None:
            plan = Plan(
                "update_one",
                _pyformat(body),
                fetch=f"SELECT {columns} FROM {table} WHERE session_id = %(k)s",
                key=key.group(1),
            )
        else:
            where = body[body.index(" WHERE ") + 7:]
            plan = Plan(
                "update_many",
                _pyformat(body),
                lock=_pyformat(f"SELECT session_id FROM {table} WHERE {where} FOR UPDATE"),
                fetch=f"SELECT {columns} FROM {table} WHERE session_id IN ({{ids}})",
            )
    _PLANS[sql] = plan
    return plan


_NAMED = re.compile(r"%\((\w+)\)s")
#: The positional form of each statement: its text with ``%s`` and the parameter
#: names in order (None: a compound statement, sent as text with its named form).
_POSITIONAL: dict[str, tuple[str, tuple[str, ...] | None]] = {}


def _bind(
    sql: str, params: Mapping[str, Any] | Sequence[Any] | None
) -> tuple[str, Mapping[str, Any] | Sequence[Any] | None]:
    """A statement and its arguments as asyncmy takes them (see :data:`STATEMENT_CACHE`).

    Named parameters become positional ones, so the driver runs the statement as a
    server-side prepared statement; a compound statement (which cannot be prepared)
    keeps its named form and goes as text.
    """
    if not params:
        return sql, None
    if not isinstance(params, Mapping):
        return sql, params
    form = _POSITIONAL.get(sql)
    if form is None:
        if sql.startswith("BEGIN NOT ATOMIC"):
            form = (sql, None)
        else:
            names: list[str] = []

            def positional(match: re.Match[str]) -> str:
                names.append(match.group(1))
                return "%s"

            form = (_NAMED.sub(positional, sql), tuple(names))
        _POSITIONAL[sql] = form
    text, order = form
    if order is None:
        return sql, params
    return text, tuple([params[name] for name in order])


# ---------------------------------------------------------------------- Tx
class UserLockTimeout(Exception):
    """``GET_LOCK`` timed out: retried as a lock wait timeout (``args[0]`` is 1205)."""


class MyTx(Tx):
    """Statements on an asyncmy connection (``:name`` parameters, translated)."""

    dialect: ClassVar[str] = "mysql"

    def __init__(self, conn: Any) -> None:
        import asyncmy.errors

        self._conn = conn
        self._integrity = asyncmy.errors.IntegrityError
        #: A named lock was asked for: the runner releases it when the transaction ends.
        self.user_locked = False

    async def lock_user(self, key: str) -> None:
        """``GET_LOCK`` on ``key`` (hashed: MariaDB names have at most 64 characters).

        The per-user cap's count and the insert after it, in ``SERIALIZABLE``, take
        gap locks that concurrent creates and forks of one user all hold at once: each
        insert then waits for the others' gap lock, a deadlock InnoDB breaks by rolling
        one back, which under load (8 creates and forks of one user at a time) outlasted
        every retry. The named lock makes them wait for each other instead, as
        PostgreSQL's advisory lock does. It is the transaction's first statement (its
        callers take it before reading anything), so a writer waiting for it holds no
        row lock another writer could need. A named lock outlives a transaction: the
        runner releases it after ``COMMIT`` or ``ROLLBACK`` (and closing the connection
        releases it too).
        """
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        self.user_locked = True
        row = await self.one(
            "SELECT GET_LOCK(:name, :wait)", {"name": "lxs:" + digest, "wait": _USER_LOCK_WAIT_S}
        )
        if row is None or row[0] != 1:  # 0: waited too long; NULL: an error
            raise UserLockTimeout(
                _LOCK_WAIT_TIMEOUT, f"waited {_USER_LOCK_WAIT_S} s for the user's lock"
            )

    async def _exec(
        self, sql: str, params: Mapping[str, Any] | Sequence[Any] | None, fetch: bool
    ) -> tuple[int, list[Row]]:
        sql, args = _bind(sql, params)
        async with self._conn.cursor() as cur:
            try:
                count: int = await cur.execute(sql, args)
            except self._integrity as exc:
                raise Conflict(str(exc)) from exc
            rows: list[Row] = list(await cur.fetchall()) if fetch else []
            return count, rows

    async def _call(self, sql: str, plan: Plan, params: Mapping[str, Any] | None) -> list[Row]:
        """The first result of a procedure call (none when it selected nothing)."""
        call, args = _bind(plan.sql, params)
        async with self._conn.cursor() as cur:
            try:
                await cur.execute(call, args)
            except self._integrity as exc:
                raise Conflict(str(exc)) from exc
            except Exception as exc:
                if _code(exc) not in _NO_ROUTINE:
                    raise
            else:
                rows: list[Row] = list(await cur.fetchall())
                while await cur.nextset():  # the call's own status
                    pass
                return rows
        # Not created (no CREATE ROUTINE privilege) or not ours to execute: the
        # statement it stands for, in this process from now on.
        _PLANS[sql] = Plan("plain", plan.fetch)
        return (await self._exec(plan.fetch, params, fetch=True))[1]

    async def call_sets(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> list[list[Row]] | None:
        """Every result set of a procedure call; None when the procedure is not there.

        Not there (not created: no CREATE ROUTINE privilege) or not ours to execute:
        None from then on in this process, without asking the server again.
        """
        if sql in _NO_PROCEDURE:
            return None
        sets: list[list[Row]] = []
        async with self._conn.cursor() as cur:
            try:
                # Named parameters: sent as text (a prepared CALL returns only its
                # first result set through asyncmy's binary protocol).
                await cur.execute(translate(sql).sql, params)
            except Exception as exc:
                if _code(exc) not in _NO_ROUTINE:
                    raise
                _NO_PROCEDURE.add(sql)
                return None
            while True:
                if cur.description is not None:  # a result set (not the call's status)
                    sets.append(list(await cur.fetchall()))
                if not await cur.nextset():
                    break
        return sets

    async def _plan(
        self, sql: str, params: Mapping[str, Any] | None
    ) -> tuple[int, list[Row]]:
        plan = translate(sql)
        if plan.kind == "plain":
            return await self._exec(plan.sql, params, fetch=True)
        if plan.kind == "call":
            rows = await self._call(sql, plan, params)
            return len(rows), rows
        if plan.kind == "update_one":
            assert params is not None
            count, _ = await self._exec(plan.sql, params, fetch=False)
            if count == 0:
                return 0, []
            return await self._exec(plan.fetch, {"k": params[plan.key]}, fetch=True)
        _, picked = await self._exec(plan.lock, params, fetch=True)
        if not picked:
            return 0, []
        await self._exec(plan.sql, params, fetch=False)
        ids = [row[0] for row in picked]
        fetch = plan.fetch.replace("{ids}", ", ".join(["%s"] * len(ids)))
        return await self._exec(fetch, ids, fetch=True)

    async def one(self, sql: str, params: Mapping[str, Any] | None = None) -> Row | None:
        _, rows = await self._plan(sql, params)
        return rows[0] if rows else None

    async def all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        _, rows = await self._plan(sql, params)
        return rows

    async def run(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        count, rows = await self._plan(sql, params)
        return len(rows) if translate(sql).kind == "update_many" else count

    async def many(self, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        plan = translate(sql)
        async with self._conn.cursor() as cur:
            try:
                await cur.executemany(plan.sql, list(rows))
            except self._integrity as exc:
                raise Conflict(str(exc)) from exc

    async def raw(self, sql: str) -> None:
        """Run a statement without parameters (transaction control)."""
        async with self._conn.cursor() as cur:
            await cur.execute(sql)


# ------------------------------------------------------------------ runner
class MyRunner(Runner):
    """MariaDB through asyncmy: START TRANSACTION, the script, COMMIT.

    A connection lost before COMMIT was sent rolled the transaction back: the
    operation runs again on a fresh connection. Lost while COMMIT was on its way,
    the outcome is unknown: retried when the operation is ``retry_safe``, else
    ``WriteOutcomeUnknownError`` (a statement that runs its own transaction, see
    :meth:`write_statement`, is unsure from the moment it is sent). A deadlock or lock
    wait timeout is retried after a short random pause.
    """

    dialect: ClassVar[str] = "mysql"
    retries: ClassVar[int] = 30

    async def write(self, script: Script[T], *args: Any, retry_safe: bool = False) -> T:
        return await self._run(script, args, write=True, snapshot=False, retry_safe=retry_safe)

    def may_call(self, sql: str) -> bool:
        return sql not in _NO_PROCEDURE

    async def write_statement(
        self, script: Script[T], *args: Any, retry_safe: bool = False
    ) -> T:
        """Run a script of exactly one statement that runs its own transaction."""
        return await self._run(
            script, args, write=True, snapshot=False, single=True, retry_safe=retry_safe
        )

    async def read(self, script: Script[T], *args: Any, snapshot: bool = False) -> T:
        return await self._run(script, args, write=False, snapshot=snapshot)

    def _attempts(self) -> int:
        """Enough tries to get past every stale connection the pool may hold."""
        return self.most_connections + 2

    async def _connect(self) -> Lease:
        """A pooled connection whose driver connection is open."""
        for _ in range(self._attempts()):
            lease = await self.leases.acquire()
            if not socket_lost(lease[1]):
                return lease
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
        last: BaseException | None = None
        conflicts = 0
        attempts = self._attempts()
        tries = 0
        # An earlier attempt's COMMIT (or self-committing statement) was sent and its
        # reply lost: from then on a failure is "may have been applied", never a plain
        # "cannot connect".
        sent = False
        while tries < attempts:
            tries += 1
            try:
                lease = await self._connect()
            except (Conflict, asyncio.CancelledError):
                raise
            except BaseException as exc:
                if sent:
                    raise self.outcome_unknown(_root(exc), "connect to") from exc
                if isinstance(exc, SessionError):
                    raise
                raise self.unavailable(_root(exc), "connect to") from exc
            tx = MyTx(lease[1])
            began = unsure = broken = False
            try:
                try:
                    if write and not single:
                        await tx.raw("START TRANSACTION")
                        began = True
                    elif snapshot:
                        await tx.raw("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                        await tx.raw("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                        began = True
                except Exception as exc:  # the connection is unusable
                    began = False
                    broken = True
                    last = exc
                    continue
                unsure = write and single  # the statement commits by itself
                if unsure:  # see settle.py
                    result = await settled(script(tx, *args))
                else:
                    result = await script(tx, *args)
                if began:
                    unsure = write
                    await (settled(tx.raw("COMMIT")) if write else tx.raw("COMMIT"))
                    began = False
                return result
            except BaseException as exc:
                lost = _is_disconnect(exc)
                if began and not lost:
                    try:
                        await tx.raw("ROLLBACK")
                    except asyncio.CancelledError:
                        broken = True  # the cancellation is the outcome, not the refusal
                        raise
                    except BaseException:
                        broken = True
                if lost:
                    broken = True
                    last = exc
                    if _never_sent(exc):
                        unsure = False  # not sent: not applied (a COMMIT not sent commits nothing)
                    if not unsure or retry_safe:
                        if unsure:
                            sent = True
                            mark_resent(True)  # the next attempt may find its own commit
                        continue
                    raise self.outcome_unknown(exc) from exc
                if _code(exc) in (_DEADLOCK, _LOCK_WAIT_TIMEOUT) and conflicts < self.retries:
                    conflicts += 1
                    tries -= 1  # not a connection problem: does not use up an attempt
                    last = exc
                    # Exponential back-off with jitter: writers that keep meeting (creates
                    # of one user under load) spread out instead of colliding again.
                    pause = min(_MAX_PAUSE_S, 0.001 * 2 ** min(conflicts, 8))
                    await asyncio.sleep(random.uniform(0, pause))
                    continue
                if isinstance(exc, SessionError | Conflict | asyncio.CancelledError):
                    if isinstance(exc, asyncio.CancelledError):
                        broken = True  # a statement may still be on the wire
                    raise
                raise self.translate(exc) from exc
            finally:
                try:
                    if tx.user_locked and not broken:
                        broken = True  # until released: cancelled meanwhile, it is closed
                        broken = not await _unlock_users(tx)
                finally:
                    await self._release(lease, broken=broken)  # a lost socket: Leases.release
        assert last is not None
        if sent:
            raise self.outcome_unknown(_root(last), "use") from last
        raise self.unavailable(_root(last), "use") from last

    def translate(self, exc: BaseException) -> BaseException:
        import asyncmy.errors

        exc = _root(exc)
        code = _code(exc)
        if code == _NO_SUCH_TABLE:
            return SessionStoreError(
                f"the session tables are missing in {self.masked_url} ({exc}); "
                "call initialize() (or `setup_schema`) first"
            )
        if code == 1231 and "SIMULTANEOUS_ASSIGNMENT" in str(exc):
            return SessionStoreError(
                f"the server at {self.masked_url} is not MariaDB 10.6 or later "
                "(MySQL is not supported by the SQL store)"
            )
        if _is_disconnect(exc):
            return self.unavailable(exc, "use")
        if isinstance(exc, asyncmy.errors.MySQLError | SQLAlchemyError):
            return SessionStoreError(f"session database {self.masked_url} failed: {exc}")
        return exc


async def _unlock_users(tx: MyTx) -> bool:
    """Release the named locks ``tx`` took; False when the connection must be closed
    instead (which releases them)."""
    try:
        await tx.raw("DO RELEASE_ALL_LOCKS()")
    except Exception:
        return False
    tx.user_locked = False
    return True


def _root(exc: BaseException) -> BaseException:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        orig: BaseException = exc.orig
        return orig
    return exc


def _code(exc: BaseException) -> int | None:
    """The server's error number of a driver error, or None."""
    root = _root(exc)
    args = getattr(root, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def _is_disconnect(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection (not the statement) failed."""
    import asyncmy.errors

    root = _root(exc)
    if _never_sent(root):
        return True
    if isinstance(root, asyncmy.errors.OperationalError | asyncmy.errors.InterfaceError):
        code = _code(root)
        return code is None or code in _LOST or code >= 2000
    return isinstance(
        root, ConnectionError | OSError | TimeoutError | asyncio.IncompleteReadError
    )


def _never_sent(exc: BaseException) -> bool:
    """Whether the driver refused a command before sending it (its connection was closed:
    asyncmy's ``InterfaceError(0, "Not connected")``), so the server never saw it."""
    import asyncmy.errors

    root = _root(exc)
    return isinstance(root, asyncmy.errors.InterfaceError) and _code(root) == 0
