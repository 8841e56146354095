"""``DatabaseSessionStore``: the session store on SQLAlchemy 2 async (SQLite, PostgreSQL).

One row per turn, a header row per session, checkpoint rows holding ``seq`` ranges.
Every operation is one transaction with its checks inside (see ``runner``); an append
is a conditional header ``UPDATE … RETURNING`` plus one ``INSERT`` per turn, so it
costs the same at turn 5,000 as at turn 10.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from importlib import metadata as _metadata
from typing import Any, ClassVar, TypeVar

from lexigram.contracts.ai.session import (
    SessionCheckpoint,
    SessionState,
    SessionStatus,
    SessionTurn,
)
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from lexigram.ai.session.exceptions import (
    DuplicateTurnError,
    SessionError,
    SessionStoreError,
    SessionValidationError,
    StoreUnavailableError,
    WriteOutcomeUnknownError,
)
from lexigram.ai.session.stores._common import parse_cursor
from lexigram.ai.session.stores.base import (
    BATCH_CONCURRENCY,
    LIVE_STATUSES,
    AppendResult,
    BatchOutcome,
    Clock,
    SessionPage,
    SessionPatch,
    SessionRecord,
    SessionStore,
    TurnReuse,
    check_fork_seq,
)
from lexigram.ai.session.stores.codec import dumps
from lexigram.ai.session.stores.sql import ops_checkpoints as cps
from lexigram.ai.session.stores.sql import ops_sessions as ses
from lexigram.ai.session.stores.sql import ops_turns as trn
from lexigram.ai.session.stores.sql.context import Ctx
from lexigram.ai.session.stores.sql.engine import make_engine
from lexigram.ai.session.stores.sql.inputs import (
    batch_totals,
    checked_id,
    checked_state,
    first_repeat,
    nul_fields_of,
    patch_params,
    refuse_nul,
    turn_rows,
)
from lexigram.ai.session.stores.sql.mysql_replies import HeaderReplies
from lexigram.ai.session.stores.sql.packet import PACKET_MARGIN, check_packet
from lexigram.ai.session.stores.sql.rows import (
    header_params,
    header_to_json,
    to_us,
    turns_from_rows,
    turns_to_json,
)
from lexigram.ai.session.stores.sql.runner import (
    Conflict,
    Runner,
    Script,
    make_runner,
    mark_resent,
    was_resent,
)
from lexigram.ai.session.stores.sql.schema import Schema, check_prefix, create_or_upgrade
from lexigram.ai.session.stores.sql.statements import Statements
from lexigram.ai.session.stores.sql.urls import DatabaseURL, normalise_url
from lexigram.ai.session.validation import (
    check_caps,
    check_checkpoint,
    check_count,
    check_instant,
    check_mapping,
    check_optional_count,
    check_optional_guard,
    check_status,
    check_status_filter,
    check_statuses,
    check_turn_range,
    check_turns,
)

__all__ = ["DEFAULT_URL", "DatabaseSessionStore"]

#: Dialects whose batched sweep statements exist (others loop over single ids).
_BATCH_DIALECTS = frozenset({"sqlite", "postgresql"})

T = TypeVar("T")

#: The field each header or patch column holds (errors of ``check_packet`` name it).
_HEADER_FIELDS = {"system_prompt": "state.system_prompt", "metadata": "state.metadata",
                  "variables": "state.variables", "active_tools": "state.active_tools",
                  "active_skills": "state.active_skills"}
_PATCH_FIELDS = {"p_metadata": "metadata", "p_variables": "variables",
                 "p_prompt": "system_prompt", "p_active_tools": "active_tools",
                 "p_active_skills": "active_skills"}

#: The same fields of a whole checkpoint's state (``save_checkpoint``).
_CHECKPOINT_FIELDS = {k: "checkpoint." + v for k, v in _HEADER_FIELDS.items()}
#: A checkpoint row's large columns and the part of the checkpoint each holds.
_CHECKPOINT_COLUMNS = {"metadata": "checkpoint.metadata", "header": "checkpoint.state",
                       "inline": "checkpoint.state.turns"}

#: The embedded default: a SQLite file in the working directory.
DEFAULT_URL = "sqlite+aiosqlite:///./lexigram_sessions.db"


def _release() -> str:
    try:
        return _metadata.version("lexigram-ai-session")
    except _metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        return "unknown"


class DatabaseSessionStore(SessionStore):
    """Sessions in SQL: SQLite through aiosqlite (default), PostgreSQL through asyncpg.

    ``url`` accepts ``sqlite:///…`` / ``postgresql://…`` / ``postgres://…`` and the
    explicit async forms. ``engine`` lets several stores share one engine (the store
    then leaves it open on :meth:`close`). Call :meth:`initialize` once to create or
    upgrade the tables.
    """

    backend_name: ClassVar[str] = "sql"
    supports_key_guard: ClassVar[bool] = True
    supports_owner_guard = True

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        table_prefix: str = "ai_session_",
        pool_size: int = 10,
        session_ttl: int = 0,
        clock: Clock | None = None,
        engine: AsyncEngine | None = None,
    ) -> None:
        super().__init__(session_ttl=session_ttl, clock=clock)
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise SessionValidationError("pool_size", f"must be an integer >= 1, got {pool_size!r}")
        self.database_url: DatabaseURL = (
            normalise_url(engine.url) if engine is not None else normalise_url(url)
        )
        check_prefix(table_prefix)
        self._owns_engine = engine is None
        self.engine: AsyncEngine = engine or make_engine(
            self.database_url, pool_size=pool_size, table_prefix=table_prefix
        )
        self.dialect: str = self.engine.dialect.name
        if self.dialect == "postgresql":
            # PostgreSQL folds the statements' unquoted names to lower case: so do the tables.
            table_prefix = table_prefix.lower()
        self.schema = Schema.build(table_prefix)
        self.table_prefix = table_prefix
        self._statements = Statements(table_prefix, self.dialect)
        lock_key = str(self.database_url.sqlite_path or self.database_url.masked)
        if self.database_url.sqlite_path is not None:
            lock_key = str(self.database_url.sqlite_path.resolve())
        self._runner: Runner = make_runner(
            self.engine,
            self.database_url.masked,
            sqlite_lock_key=lock_key,
            keep=pool_size,
            # one engine per event loop (see docs/event-loops.md)
            make_engine=None
            if engine is not None
            else lambda: make_engine(
                self.database_url, pool_size=pool_size, table_prefix=table_prefix
            ),
            owns_engine=engine is None,
        )
        self._lock_ns = f"{table_prefix}:"
        # MariaDB: the headers appends need not send back (see mysql_replies).
        self._replies = HeaderReplies() if self.dialect == "mysql" else None
        # MariaDB's max_allowed_packet, read by initialize() (see .packet).
        self._max_packet: int | None = None
        self._closed = False

    # ----------------------------------------------------------------- set-up
    @classmethod
    def from_config(cls, config: Any) -> DatabaseSessionStore:
        """Build from a ``SessionConfig`` (``database_url``, ``table_prefix``,
        ``db_pool_size``, ``session_ttl``)."""
        return cls(
            config.database_url,
            table_prefix=config.table_prefix,
            pool_size=config.db_pool_size,
            session_ttl=config.session_ttl,
        )

    @property
    def url(self) -> str:
        """The database URL with the password masked."""
        return self.database_url.masked

    def __repr__(self) -> str:
        return f"DatabaseSessionStore({self.url!r}, table_prefix={self.table_prefix!r})"

    def _text_ok(self, state: SessionState | None, turns: Sequence[SessionTurn] = ()) -> None:
        if self.dialect == "postgresql":
            refuse_nul(nul_fields_of(state, turns))

    def _now_us(self) -> int:
        return to_us(self.now())

    def _ctx(self) -> Ctx[Statements]:
        if self._closed:
            raise StoreUnavailableError(f"the session store on {self.url} is closed")
        ttl = self.session_ttl
        return Ctx(self._statements, self._now_us, ttl * 1_000_000 if ttl > 0 else 0,
                   self._lock_ns, self._replies)

    async def _write(self, script: Script[T], *args: Any, retry_safe: bool = False) -> T:
        return await self._runner.write(script, self._ctx(), *args, retry_safe=retry_safe)

    async def _read(self, script: Script[T], *args: Any, snapshot: bool = False) -> T:
        return await self._runner.read(script, self._ctx(), *args, snapshot=snapshot)

    # -------------------------------------------------------------- lifecycle
    async def initialize(self) -> None:
        """Create the tables (idempotent) and record or check the schema version.

        Raises ``StoreUnavailableError`` when the database cannot be reached and
        ``SessionStoreError`` for tables written by a newer release.
        """
        path = self.database_url.sqlite_path
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # a read-only or full file system, a file in the way
                raise self._runner.unavailable(exc, "create the directory of") from exc
        await self.ping()
        now = to_us(self.now())
        try:
            async with self._runner.engine.begin() as conn:  # the running loop's
                if self.dialect == "postgresql":
                    await conn.execute(
                        text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                        {"k": f"{self._lock_ns}schema"},
                    )
                await conn.run_sync(create_or_upgrade, self.schema, now_us=now, release=_release())
                if self.dialect == "mysql":
                    found = await conn.execute(text("SELECT @@max_allowed_packet"))
                    self._max_packet = int(found.scalar_one())
        except SessionError:
            raise
        except Exception as exc:
            error = self._runner.translate(exc)
            if not isinstance(error, SessionError):
                error = SessionStoreError(f"cannot create the session tables in {self.url}: {exc}")
            raise error from exc

    async def close(self) -> None:
        """Close every event loop's connections; dispose of the engines the store made.

        Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        await self._runner.close()

    async def ping(self) -> None:
        """``SELECT 1``; ``StoreUnavailableError`` naming the (masked) URL when it fails."""
        try:
            await self._read(_ping)
        except StoreUnavailableError:
            raise
        except SessionError as exc:
            raise StoreUnavailableError(
                f"session database {self.url} is not usable: {exc}"
            ) from exc

    # --------------------------------------------------------- contract (whole)
    async def save(self, state: SessionState) -> None:
        state = checked_state(state)
        if SessionStatus(state.status) in LIVE_STATUSES:
            self.deadline_for(state.updated_at)  # refused naming it when past year 9999
        rows = turn_rows(state.session_id, state.turns)
        self._text_ok(state, state.turns)
        header = header_params(state)
        check_packet(self._max_packet, rows, "state.turns", header, _HEADER_FIELDS)
        live = SessionStatus(state.status) in LIVE_STATUSES
        args = (header, rows, first_repeat(state.turns), live)
        try:
            await self._write(ses.save, *args, retry_safe=True)
        except Conflict:
            # a concurrent first save: replace it
            await self._write(ses.save, *args, retry_safe=True)

    async def load(self, session_id: str) -> SessionState | None:
        return await self._load(session_id, None)

    async def load_reusing(self, session_id: str, reuse: TurnReuse) -> SessionState | None:
        """:meth:`load`, showing ``reuse`` the live turns' stored texts first."""
        return await self._load(session_id, reuse)

    async def _load(self, session_id: str, reuse: TurnReuse | None) -> SessionState | None:
        sid = checked_id(session_id, "session_id")
        if self.dialect == "postgresql":
            return await self._read(ses.load_one_statement, sid, reuse)
        call = self._statements.sessions.load_call
        if call is not None and self._runner.may_call(call):
            called, state = await self._read(ses.load_by_call, sid, reuse)
            if called:
                return state
        return await self._read(ses.load, sid, reuse, snapshot=True)

    async def delete(self, session_id: str) -> None:
        # A re-send after a lost reply deletes the row the first attempt found, never a
        # session created again under the id meanwhile (see ses.delete_session).
        target: list[int | None] = []
        await self._write(
            ses.delete_session, checked_id(session_id, "session_id"), target, retry_safe=True
        )
        self._forget_headers([session_id])

    async def list_sessions(self, user_id: str) -> list[SessionState]:
        """Every session of ``user_id`` that can be decoded (damaged ones are logged)."""
        return await self._read(ses.list_all, checked_id(user_id, "user_id"), snapshot=True)

    async def save_checkpoint(self, checkpoint: SessionCheckpoint) -> None:
        checkpoint = check_checkpoint(checkpoint)
        state = checkpoint.state
        self._text_ok(state, state.turns)
        refuse_nul([("checkpoint.checkpoint_id", checkpoint.checkpoint_id)])
        params = {
            "cp": checkpoint.checkpoint_id,
            "sid": checkpoint.session_id,
            "created": to_us(checkpoint.created_at),
            "parent": checkpoint.parent_checkpoint_id,
            "metadata": dumps(checkpoint.metadata, field="checkpoint.metadata").decode(),
            "header": header_to_json(state),
            "ranges": None,
            "inline": turns_to_json(state.turns),
        }
        self._checkpoint_fits(params, state)
        await self._write(cps.save_checkpoint, params, retry_safe=True)

    def _checkpoint_fits(self, params: dict[str, Any], state: SessionState) -> None:
        """MariaDB: refuse a whole checkpoint whose row cannot travel in one statement.

        Named as the checkpoint's validation names its parts (``checkpoint.metadata``,
        ``checkpoint.state.variables``, ``checkpoint.state.turns[i]``), the part too
        large alone first, then the turns (one column) or the header together, then
        the checkpoint as a whole.
        """
        limit = self._max_packet
        if limit is None:
            return
        whole = {k: params[k] for k in ("metadata", "header", "inline")}
        if sum(4 * len(v) for v in whole.values() if isinstance(v, str)) <= limit - PACKET_MARGIN:
            return  # the common case: nothing to measure exactly
        check_packet(limit, header={"metadata": params["metadata"]},
                     header_fields={"metadata": "checkpoint.metadata"})
        fields = {k: v for k, v in header_params(state).items() if k in _HEADER_FIELDS}
        check_packet(limit, header=fields, header_fields=_CHECKPOINT_FIELDS,
                     together="checkpoint.state")
        check_packet(limit, turn_rows(state.session_id, state.turns), "checkpoint.state.turns")
        check_packet(limit, header=whole, header_fields=_CHECKPOINT_COLUMNS,
                     together="checkpoint")

    async def load_checkpoint(self, checkpoint_id: str) -> SessionCheckpoint | None:
        cp = checked_id(checkpoint_id, "checkpoint_id")
        return await self._read(cps.load_checkpoint, cp, snapshot=True)

    async def list_checkpoints(self, session_id: str) -> list[SessionCheckpoint]:
        sid = checked_id(session_id, "session_id")
        return await self._read(cps.list_checkpoints, sid, True, snapshot=True)

    async def list_checkpoint_headers(self, session_id: str) -> list[SessionCheckpoint]:
        sid = checked_id(session_id, "session_id")
        return await self._read(cps.list_checkpoints, sid, False)

    async def delete_checkpoint(self, checkpoint_id: str) -> bool:
        cp = checked_id(checkpoint_id, "checkpoint_id")
        return await self._write(cps.delete_checkpoint, cp)

    # ----------------------------------------------------------------- create
    async def create_session(
        self,
        state: SessionState,
        *,
        max_live_per_user: int | None = None,
        fork_seq: int | None = None,
    ) -> SessionRecord:
        check_caps(max_live_per_user=max_live_per_user)
        state = checked_state(state)
        fork_seq = check_fork_seq(fork_seq, state)
        rows = turn_rows(state.session_id, state.turns)
        self._text_ok(state, state.turns)
        header = header_params(state)
        check_packet(self._max_packet, rows, "state.turns", header, _HEADER_FIELDS)
        live = SessionStatus(state.status) in LIVE_STATUSES
        args = (header, rows, first_repeat(state.turns), max_live_per_user, live, fork_seq)
        try:
            try:
                return await self._write(ses.create_session, *args)
            except WriteOutcomeUnknownError as lost:
                # The reply to its COMMIT was lost: settled by reading the id back, as a
                # lost append is (the id may be random: the caller could not look).
                found = await self._created(state, lost)
                if found is not None:
                    return found
                try:
                    return await self._write(ses.create_session, *args)  # not applied
                except WriteOutcomeUnknownError as again:
                    raise _naming(again, state.session_id) from again
        except Conflict:
            raise SessionValidationError(
                "session_id", f"session {state.session_id!r} already exists"
            ) from None

    async def _created(
        self, state: SessionState, lost: WriteOutcomeUnknownError
    ) -> SessionRecord | None:
        """The session a create whose reply was lost stored, or None when it stored none.

        Its row is the one with its id, user and creation time. Another session under
        the id, or no answer from the database, leaves the outcome unknown: the error
        then names ``session_id`` (``details`` and an attribute), so the caller can read
        the session before creating it again.
        """
        try:
            found = await self._read(ses.load_record, state.session_id)
        except StoreUnavailableError:
            raise _naming(lost, state.session_id) from lost
        if found is None:
            return None
        if found.state.user_id == state.user_id and to_us(found.state.created_at) == to_us(
            state.created_at
        ):
            return found
        raise _naming(lost, state.session_id) from lost

    # ------------------------------------------------------------------ reads
    async def load_record(self, session_id: str) -> SessionRecord | None:
        return await self._read(ses.load_record, checked_id(session_id, "session_id"))

    async def get_turns(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after_seq: int | None = None,
        limit: int | None = None,
    ) -> list[SessionTurn]:
        sid = checked_id(session_id, "session_id")
        check_turn_range(last, after_seq, limit)
        # Decoded here, on the event loop, not in SQLite's worker thread (see the script).
        rows = await self._read(trn.get_turn_rows, sid, last, after_seq, limit)
        return turns_from_rows(rows, sid)

    async def get_turn_seqs(
        self, session_id: str, *, after_seq: int | None = None, limit: int | None = None
    ) -> list[tuple[int, SessionTurn]]:
        sid = checked_id(session_id, "session_id")
        check_turn_range(None, after_seq, limit)
        return await self._read(trn.get_turn_seqs, sid, after_seq, limit)

    async def list_user_sessions(
        self,
        user_id: str,
        *,
        status: SessionStatus | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> SessionPage:
        uid = checked_id(user_id, "user_id")
        wanted = check_status_filter(status)
        check_count(limit, "limit", minimum=1)
        below = parse_cursor(cursor)
        items, damaged, last = await self._read(ses.list_page, uid, wanted, limit, below)
        return SessionPage(
            items=items, next_cursor=None if last is None else str(last), damaged=damaged
        )

    async def count_live_sessions(self, user_id: str) -> int:
        return await self._read(ses.count_live, checked_id(user_id, "user_id"))

    async def id_taken(self, session_id: str) -> bool:
        return await self._read(ses.id_taken, checked_id(session_id, "session_id"))

    # ----------------------------------------------------------------- writes
    async def append_turns(
        self,
        session_id: str,
        turns: Sequence[SessionTurn],
        *,
        max_turns: int | None = None,
        patch: SessionPatch | None = None,
        key_guard: str | None = None,
        owner: str | None = None,
    ) -> AppendResult:
        checked_id(session_id, "session_id")
        check_optional_count(max_turns, "max_turns", minimum=1)
        check_optional_guard(key_guard)
        if owner is not None:
            checked_id(owner, "owner")
        batch = check_turns(turns, "turns")
        rows = turn_rows(session_id, batch)
        self._text_ok(None, batch)
        changes = None if patch is None else patch_params(patch)
        check_packet(self._max_packet, rows, "turns", changes, _PATCH_FIELDS)
        tokens, cost = batch_totals(batch)
        repeat = first_repeat(batch)
        mark_resent(False)
        try:
            if (
                self.dialect in trn.ONE_STATEMENT_DIALECTS
                and repeat is None
                and owner is None
                and 0 < len(rows) <= trn.ONE_STATEMENT_TURNS
            ):
                # One statement, its own transaction. A lost reply is retried: the
                # retry finds the turns stored and returns the first outcome.
                done = await self._runner.write_statement(
                    trn.append_one, self._ctx(), session_id, rows, tokens, cost,
                    max_turns, changes, key_guard, retry_safe=True,
                )
                if done is not None:
                    return done
            return await self._write(
                trn.append, session_id, rows, batch, max_turns, changes, repeat, key_guard,
                owner, retry_safe=True,
            )
        except StoreUnavailableError as exc:
            if was_resent() and not isinstance(exc, WriteOutcomeUnknownError):
                # The one statement's reply was lost and its re-send found the row busy:
                # the locked path could not reach the server, but the first attempt may
                # have been applied.
                raise self._runner.outcome_unknown(exc, "send") from exc
            raise
        except Conflict as exc:
            if was_resent():  # our own lost-reply re-send found its first commit
                try:
                    replayed = await self._read(
                        trn.find_replay, session_id, rows, max_turns, snapshot=True
                    )
                except StoreUnavailableError as lost:
                    # The turns are stored (the re-send ran into them): never "cannot
                    # connect", which says nothing was applied.
                    raise self._runner.outcome_unknown(lost, "read") from lost
                if replayed is not None:
                    return replayed
            ids = [t.turn_id for t in batch]
            dup = await self._read(trn.find_live_duplicate, session_id, ids)
            if dup is not None:
                raise DuplicateTurnError(session_id, dup) from None
            raise SessionStoreError(
                f"append to session {session_id!r} refused by the database: {exc}"
            ) from exc

    async def update_session(
        self,
        session_id: str,
        patch: SessionPatch,
        *,
        key_guard: str | None = None,
        owner: str | None = None,
    ) -> SessionRecord:
        sid = checked_id(session_id, "session_id")
        check_optional_guard(key_guard)
        if owner is not None:
            checked_id(owner, "owner")
        params = patch_params(patch)
        check_packet(self._max_packet, header=params, header_fields=_PATCH_FIELDS)
        return await self._write(
            ses.update_session, sid, params, key_guard, owner, self._max_packet
        )

    async def transition(
        self,
        session_id: str,
        to_status: SessionStatus,
        *,
        allowed_from: frozenset[SessionStatus],
    ) -> SessionRecord:
        return await self._write(
            ses.transition, checked_id(session_id, "session_id"),
            check_status(to_status, "to_status"), check_statuses(allowed_from, "allowed_from"),
        )

    async def pop_turn(self, session_id: str) -> SessionTurn | None:
        return await self._write(trn.pop_turn, checked_id(session_id, "session_id"))

    async def clear_turns(self, session_id: str) -> int:
        return await self._write(trn.clear_turns, checked_id(session_id, "session_id"))

    # ------------------------------------------------------------ checkpoints
    async def create_checkpoint(
        self,
        session_id: str,
        *,
        checkpoint_id: str,
        metadata: dict[str, Any] | None = None,
        max_checkpoints: int | None = None,
        include_turns: bool = True,
        key_guard: str | None = None,
    ) -> tuple[SessionCheckpoint, list[str]]:
        checked_id(session_id, "session_id")
        checked_id(checkpoint_id, "checkpoint_id")
        check_optional_count(max_checkpoints, "max_checkpoints", minimum=1)
        metadata = None if metadata is None else check_mapping(metadata, "metadata")
        check_optional_guard(key_guard)
        meta = dumps(metadata or {}, field="metadata").decode()
        check_packet(self._max_packet, header={"metadata": meta},
                     header_fields={"metadata": "metadata"})
        if self.dialect == "postgresql":
            refuse_nul([("checkpoint_id", checkpoint_id)])
        try:
            return await self._write(
                cps.create_checkpoint, session_id, checkpoint_id, meta, max_checkpoints,
                include_turns, key_guard, self._max_packet,
            )
        except Conflict:
            raise SessionValidationError(
                "checkpoint_id", f"checkpoint {checkpoint_id!r} already exists"
            ) from None

    async def restore_checkpoint(self, checkpoint_id: str) -> SessionState:
        checked_id(checkpoint_id, "checkpoint_id")
        try:
            return await self._write(cps.restore_checkpoint, checkpoint_id)
        except Conflict as exc:
            raise SessionStoreError(
                f"checkpoint {checkpoint_id!r} cannot be restored: {exc}"
            ) from exc

    # --------------------------------------------------------------- branches
    async def fork_session(
        self,
        source_id: str,
        branch: SessionState,
        *,
        from_checkpoint: str | None = None,
        max_branches: int | None = None,
        max_live_per_user: int | None = None,
        owner: str | None = None,
    ) -> SessionRecord:
        checked_id(source_id, "source_id")
        if from_checkpoint is not None:
            checked_id(from_checkpoint, "from_checkpoint")
        if owner is not None:
            checked_id(owner, "owner")
        check_caps(max_branches=max_branches, max_live_per_user=max_live_per_user)
        branch = checked_state(branch, "branch")
        header_params(branch)  # refuse a header that cannot be stored before any I/O
        self._text_ok(branch)
        try:
            return await self._write(
                cps.fork_session, source_id, branch, from_checkpoint, max_branches,
                max_live_per_user, owner,
            )
        except Conflict:
            raise SessionValidationError(
                "session_id", f"session {branch.session_id!r} already exists"
            ) from None

    async def list_branches(self, session_id: str) -> list[SessionRecord]:
        return await self._read(ses.list_branches, checked_id(session_id, "session_id"))

    # --------------------------------------------------------------- sweeping
    async def find_expired(self, *, limit: int = 1000) -> list[str]:
        return await self._read(ses.find_expired, check_count(limit, "limit"))

    async def mark_expired(self, session_id: str) -> SessionRecord | None:
        """Store EXPIRED; ``CorruptRecordError`` (nothing changed) for an undecodable record."""
        return await self._write(ses.mark_expired, checked_id(session_id, "session_id"))

    async def mark_expired_batch(
        self, session_ids: Sequence[str], *, concurrency: int = BATCH_CONCURRENCY
    ) -> BatchOutcome[SessionRecord]:
        """One UPDATE … RETURNING for the whole batch (``SKIP LOCKED`` on PostgreSQL)."""
        if self.dialect not in _BATCH_DIALECTS:
            return await super().mark_expired_batch(session_ids, concurrency=concurrency)
        ids = [checked_id(sid, "session_ids") for sid in session_ids]
        if not ids:
            return BatchOutcome()
        return await self._write(ses.mark_expired_batch, ids)

    async def quarantine(self, session_id: str) -> None:
        """Take a damaged record out of the sweeper's indexes without decoding it.

        Its ``status`` gets the prefix ``quarantined:`` (``quarantined:active``) and its
        deadline is cleared, so neither ``find_expired`` nor ``find_purgeable`` nor
        the per-user count meets it again; reads keep raising ``CorruptRecordError``
        and listings report it in ``damaged``. ``delete`` removes it. Idempotent.
        """
        # Re-sent after a lost reply (not on SQLite), it takes only the row its first
        # attempt found (see ses.quarantine).
        target: list[int | None] | None = None if self.dialect == "sqlite" else []
        await self._write(
            ses.quarantine, checked_id(session_id, "session_id"), target, retry_safe=True
        )

    async def find_purgeable(self, *, older_than: datetime, limit: int = 1000) -> list[str]:
        return await self._read(
            ses.find_purgeable, to_us(check_instant(older_than, "older_than")),
            check_count(limit, "limit"),
        )

    async def purge_batch(
        self,
        session_ids: Sequence[str],
        *,
        tombstone_until: datetime,
        concurrency: int = BATCH_CONCURRENCY,
    ) -> BatchOutcome[str]:
        """One DELETE per table and one tombstone INSERT for the whole batch, one transaction."""
        if self.dialect not in _BATCH_DIALECTS:
            return await super().purge_batch(
                session_ids, tombstone_until=tombstone_until, concurrency=concurrency
            )
        ids = [checked_id(sid, "session_ids") for sid in session_ids]
        until = check_instant(tombstone_until, "tombstone_until")
        if not ids:
            return BatchOutcome()
        purged = await self._write(ses.purge_batch, ids, to_us(until))
        self._forget_headers(ids)
        return BatchOutcome(done=purged)

    async def purge(self, session_id: str, *, tombstone_until: datetime) -> bool:
        sid = checked_id(session_id, "session_id")
        until = check_instant(tombstone_until, "tombstone_until")
        purged = await self._write(ses.purge, sid, to_us(until))
        self._forget_headers([sid])
        return purged

    def _forget_headers(self, session_ids: Sequence[str]) -> None:
        """Drop this process's copies of these sessions' headers (MariaDB appends).

        Not needed for correctness (the server compares before it trusts a copy), but a
        deleted or erased session's metadata should not outlive it in memory.
        """
        if self._replies is not None:
            for sid in session_ids:
                self._replies.forget(sid)

    async def forget_user(self, user_id: str, session_ids: Sequence[str]) -> None:
        """Drop the erased sessions' header copies and the tombstones naming the user;
        SQLite: rewrite the file so that freed pages keep no copy of the erased rows.

        On SQLite also when this run erased nothing: a run stopped (killed) before its
        rewrite had erased the rows, and running it again must still rewrite the file.
        """
        from lexigram.ai.session.stores.erasure import names_user

        uid = checked_id(user_id, "user_id")
        self._forget_headers(session_ids)
        found = await self._read(ses.tombstones_containing, uid)
        named = [sid for sid in found if names_user(sid, uid)]
        if named:  # before the rewrite below, which then drops their bytes too
            await self._write(ses.drop_tombstones, named, retry_safe=True)
        if self.dialect == "sqlite":
            from lexigram.ai.session.stores.erasure import compact_sqlite

            await compact_sqlite(self)


def _naming(error: WriteOutcomeUnknownError, session_id: str) -> WriteOutcomeUnknownError:
    """``error`` naming the session whose write it is (``details`` and ``session_id``)."""
    named = WriteOutcomeUnknownError(
        f"{error.message} (session {session_id!r})", details={"session_id": session_id}
    )
    named.session_id = session_id  # type: ignore[attr-defined]
    return named


async def _ping(tx: Any, ctx: Ctx[Statements]) -> None:
    await tx.one(ctx.q.ping)
