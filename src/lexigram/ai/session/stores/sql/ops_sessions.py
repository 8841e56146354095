"""Scripts for session headers: create, save, read, list, update, status, sweep, purge.

The per-user cap is counted inside the transaction that inserts: SQLite holds the
database write lock from ``BEGIN IMMEDIATE``; PostgreSQL takes a transaction-scoped
advisory lock on the user (``pg_advisory_xact_lock(hashtext(prefix || user))``), so
concurrent creates from many processes see each other's rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import Any, Protocol, TypeAlias

from lexigram.contracts.ai.session import SessionState, SessionStatus
from lexigram.logging import get_logger

from lexigram.ai.session.exceptions import (
    CorruptRecordError,
    DataKeyChangedError,
    DuplicateTurnError,
    SessionCapacityError,
    SessionNotFoundError,
    SessionStoreError,
    SessionTransitionError,
    SessionValidationError,
)
from lexigram.ai.session.stores._common import require_writable
from lexigram.ai.session.stores.base import (
    LIVE_STATUSES,
    BatchOutcome,
    SessionRecord,
    StoredTurns,
    TurnReuse,
    holds_key,
)
from lexigram.ai.session.stores.codec import state_with, turns_from_texts
from lexigram.ai.session.stores.gc_pause import paused_gc
from lexigram.ai.session.stores.sql.context import NO_LIMIT
from lexigram.ai.session.stores.sql.context import Ctx as Context
from lexigram.ai.session.stores.sql.fragments import (
    ENDED_SQL,
    EXPIRY_BUCKET_US,
    LIVE_SQL,
    NOT_DUE,
    SqlParts,
    quoted_guard,
)
from lexigram.ai.session.stores.sql.mysql_routines import load_call
from lexigram.ai.session.stores.sql.ops_turns import (
    TurnStatements,
    gc,
    insert_turns,
    lock_header,
    read_live_turns,
)
from lexigram.ai.session.stores.sql.packet import check_packet
from lexigram.ai.session.stores.sql.rows import (
    HEADER_COLUMNS,
    status_of_row,
    turns_from_rows,
    user_of_row,
)
from lexigram.ai.session.stores.sql.runner import Tx


class SessionScripts(Protocol):
    """The statements the session scripts read through ``ctx.q``: theirs and the turns'."""

    @property
    def dialect(self) -> str:
        """The SQL dialect."""
        ...

    @property
    def sessions(self) -> SessionStatements:
        """This area's statements."""
        ...

    @property
    def turns(self) -> TurnStatements:
        """The turn statements (the session scripts call the turn scripts)."""
        ...


#: The context of a session script (and of every script that calls one).
Ctx: TypeAlias = Context[SessionScripts]

__all__ = [
    "SessionScripts",
    "SessionStatements",
    "count_live",
    "create_session",
    "delete_session",
    "find_expired",
    "find_purgeable",
    "id_taken",
    "list_all",
    "list_branches",
    "list_page",
    "load",
    "load_by_call",
    "load_one_statement",
    "load_record",
    "lock_user",
    "mark_expired",
    "mark_expired_batch",
    "purge",
    "purge_batch",
    "quarantine",
    "require_new_id",
    "save",
    "transition",
    "update_session",
]

_log = get_logger(__name__)
#: Where a header row (``HEADER_COLUMNS``) holds ``ordinal``, the row's incarnation.
_ORDINAL_AT = HEADER_COLUMNS.index("ordinal")

_PAGE_SQL = {
    None: "page",
    SessionStatus.ACTIVE: "page_active",
    SessionStatus.SUSPENDED: "page_suspended",
    SessionStatus.CLOSED: "page_closed",
    SessionStatus.EXPIRED: "page_expired",
}


def _exists_error(session_id: str) -> SessionValidationError:
    return SessionValidationError("session_id", f"session {session_id!r} already exists")


async def lock_user(tx: Tx, ctx: Ctx, user_id: str) -> None:
    """Serialise the per-user cap: an advisory lock on PostgreSQL, a named lock on
    MariaDB (``Tx.lock_user``); SQLite's writers are serialised already. Taken first,
    before the operation reads anything."""
    key = f"{ctx.lock_ns}{user_id}"
    if ctx.pg:
        await tx.run(ctx.q.sessions.user_lock, {"key": key})
    else:
        await tx.lock_user(key)


async def count_live(tx: Tx, ctx: Ctx, user_id: str) -> int:
    """Live (ACTIVE/SUSPENDED, deadline not passed) sessions of ``user_id``."""
    row = await tx.one(ctx.q.sessions.count_live, {"uid": user_id, "now": ctx.now})
    return 0 if row is None else int(row[0])


async def _check_cap(tx: Tx, ctx: Ctx, user_id: str, max_live: int | None) -> None:
    if max_live is None:
        return
    row = await tx.one(ctx.q.sessions.count_live_locked, {"uid": user_id, "now": ctx.now})
    if row is not None and int(row[0]) >= max_live:
        raise SessionCapacityError(
            f"user {user_id!r} already has {max_live} live sessions "
            f"(max_sessions_per_user={max_live})"
        )


async def tombstoned(tx: Tx, ctx: Ctx, session_id: str) -> bool:
    """Whether ``session_id`` was purged and may not be reused yet (stale ones dropped)."""
    row = await tx.one(ctx.q.sessions.tombstone, {"sid": session_id})
    if row is None:
        return False
    if int(row[0]) > ctx.now:
        return True
    await tx.run(ctx.q.sessions.drop_tombstone, {"sid": session_id})
    return False


async def id_taken(tx: Tx, ctx: Ctx, session_id: str) -> bool:
    """Whether ``session_id`` is stored or purged recently; reads only (see ``tombstoned``)."""
    if await tx.one(ctx.q.sessions.exists, {"sid": session_id}) is not None:
        return True
    row = await tx.one(ctx.q.sessions.tombstone, {"sid": session_id})
    return row is not None and int(row[0]) > ctx.now


async def require_new_id(tx: Tx, ctx: Ctx, session_id: str) -> None:
    """Refuse an id that exists or was purged recently (``SessionValidationError``)."""
    if await tx.one(ctx.q.sessions.exists, {"sid": session_id}) is not None:
        raise _exists_error(session_id)
    if await tombstoned(tx, ctx, session_id):
        raise _exists_error(session_id)


async def insert_session(
    tx: Tx,
    ctx: Ctx,
    header: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    *,
    expires_at: int | None,
    fork_seq: int | None = None,
) -> SessionRecord:
    """Insert a header and its first turns (``seq`` 1..n); the stored record."""
    session_id = header["session_id"]
    params = dict(header, expires_at=expires_at, fork_seq=fork_seq, last_seq=len(rows))
    row = await tx.one(ctx.q.sessions.insert_session, params)
    assert row is not None
    for seq, item in enumerate(rows, start=1):
        item["session_id"] = session_id
        item["seq"] = seq
    await insert_turns(tx, ctx, rows)
    return ctx.record(row)


async def create_session(
    tx: Tx,
    ctx: Ctx,
    header: dict[str, Any],
    rows: list[dict[str, Any]],
    batch_dup: str | None,
    max_live: int | None,
    live: bool,
    fork_seq: int | None = None,
) -> SessionRecord:
    """Insert a new session; refuse a used id, a repeated turn id, or the user's cap.

    ``fork_seq``: a branch's fork point, checked by the caller (``check_fork_seq``).
    """
    session_id, user_id = header["session_id"], header["user_id"]
    if max_live is not None:
        await lock_user(tx, ctx, user_id)
    await require_new_id(tx, ctx, session_id)
    if batch_dup is not None:
        raise DuplicateTurnError(session_id, batch_dup)
    await _check_cap(tx, ctx, user_id, max_live)
    expires = ctx.deadline(header["updated_at"]) if live else None
    return await insert_session(tx, ctx, header, rows, expires_at=expires, fork_seq=fork_seq)


async def save(
    tx: Tx,
    ctx: Ctx,
    header: dict[str, Any],
    rows: list[dict[str, Any]],
    batch_dup: str | None,
    live: bool,
) -> None:
    """Create or replace a whole session (header and live turns)."""
    session_id = header["session_id"]
    # A re-send does the whole save again. Telling "my first attempt committed" from
    # the row as it is cannot be done from the saved values: a save that changes only
    # the status or the totals of a session without turns finds the row "as written"
    # when its COMMIT never arrived, and returned success with nothing stored (a
    # regression audit of such a check). Overlapping writers see the save applied last.
    if await tombstoned(tx, ctx, session_id):
        raise SessionNotFoundError(session_id)
    if batch_dup is not None:
        raise DuplicateTurnError(session_id, batch_dup)
    if live:
        # A live copy saved over a session that ended meanwhile would make it live again.
        stored = await lock_header(tx, ctx, session_id)
        status = None if stored is None else status_of_row(stored, ctx.now)
        if status is not None:
            require_writable(session_id, status)
    expires = ctx.deadline(header["updated_at"]) if live else None
    found = await tx.one(ctx.q.sessions.replace_header, dict(header, expires_at=expires))
    if found is None:
        # The update may have waited on a purge that held the row: it is gone now, and
        # its tombstone committed with it (read again: a new statement sees it).
        if await tombstoned(tx, ctx, session_id):
            raise SessionNotFoundError(session_id)
        await insert_session(tx, ctx, header, rows, expires_at=expires)
        return
    last = int(found[0])
    await tx.run(ctx.q.turns.unlive_all, {"sid": session_id})
    for offset, item in enumerate(rows, start=1):
        item["session_id"] = session_id
        item["seq"] = last + offset
    await insert_turns(tx, ctx, rows)
    if rows:
        await tx.run(ctx.q.sessions.bump_seq, {"sid": session_id, "n": len(rows)})
    await gc(tx, ctx, session_id)


async def load_record(tx: Tx, ctx: Ctx, session_id: str) -> SessionRecord | None:
    """The header of a session, or None."""
    row = await tx.one(ctx.q.sessions.header, {"sid": session_id})
    return None if row is None else ctx.record(row)


async def load(
    tx: Tx, ctx: Ctx, session_id: str, reuse: TurnReuse | None = None
) -> SessionState | None:
    """Header and live turns (run as a snapshot read); ``reuse``: see ``load_reusing``."""
    record = await load_record(tx, ctx, session_id)
    if record is None:
        return None
    offer = None if reuse is None else partial(reuse, record.state)
    return state_with(record.state, turns=await read_live_turns(tx, ctx, session_id, offer))


async def load_one_statement(
    tx: Tx, ctx: Ctx, session_id: str, reuse: TurnReuse | None = None
) -> SessionState | None:
    """:func:`load` as one statement (PostgreSQL: needs no snapshot transaction)."""
    row = await tx.one(ctx.q.sessions.load_one, {"sid": session_id})
    if row is None:
        return None
    values = list(row)
    record = ctx.record(values[:-1])
    texts = values[-1]
    turns = None
    if reuse is not None and texts:
        turns = reuse(record.state, StoredTurns(len(texts), texts=texts))
    if turns is None:
        turns = turns_from_texts(texts)
    if turns is None:  # a damaged text: decode one by one to name it
        turns = turns_from_rows([(data,) for data in texts], session_id)
    return state_with(record.state, turns=turns)


async def load_by_call(
    tx: Tx, ctx: Ctx, session_id: str, reuse: TurnReuse | None = None
) -> tuple[bool, SessionState | None]:
    """:func:`load` by the MariaDB load procedure: ``(True, state or None)``.

    ``(False, None)`` when the procedure cannot run here (not created, not ours to
    execute, another dialect): the caller then runs :func:`load` as a snapshot read
    (and, told by ``Runner.may_call``, skips this script from then on).
    """
    sql = ctx.q.sessions.load_call
    sets = None if sql is None else await tx.call_sets(sql, {"sid": session_id})
    if sets is None or len(sets) != 2:
        return False, None
    header, rows = sets
    if not header:
        return True, None
    record = ctx.record(header[0])
    turns = None
    if reuse is not None and rows:
        turns = reuse(record.state, StoredTurns(len(rows), texts=[row[-1] for row in rows]))
    if turns is None:
        turns = turns_from_rows(rows, session_id)
    return True, state_with(record.state, turns=turns)


async def list_all(tx: Tx, ctx: Ctx, user_id: str) -> list[SessionState]:
    """Every session of a user with its turns, oldest first (snapshot read).

    A session whose header or turns cannot be decoded is left out and logged with
    its id, so one damaged record does not hide the others.
    """
    states = []
    for row in await tx.all(ctx.q.sessions.user_all, {"uid": user_id}):
        try:
            record = ctx.record(row)
            turns = await read_live_turns(tx, ctx, record.state.session_id)
        except CorruptRecordError as exc:
            _log.warning("ai_session.sql.damaged_record", session_id=row[0], error=str(exc))
            continue
        states.append(replace(record.state, turns=turns))
    return states


async def list_page(
    tx: Tx,
    ctx: Ctx,
    user_id: str,
    status: SessionStatus | None,
    limit: int,
    below: int | None,
) -> tuple[list[SessionState], list[str], int | None]:
    """A page of headers, newest first, the damaged ids on it, and the ordinal to
    continue below (or None). A header that cannot be decoded is reported by id."""
    sql = getattr(ctx.q.sessions, _PAGE_SQL[status])
    rows = await tx.all(
        sql,
        {
            "uid": user_id,
            "below": NO_LIMIT if below is None else below,
            "lim": max(limit, 0) + 1,
            "now": ctx.now,
        },
    )
    items: list[SessionState] = []
    damaged: list[str] = []
    for row in rows[:limit]:
        try:
            items.append(ctx.record(row).state)
        except CorruptRecordError as exc:
            _log.warning("ai_session.sql.damaged_record", session_id=row[0], error=str(exc))
            damaged.append(str(row[0]))
    more = len(rows) > limit and limit > 0
    return items, damaged, (int(rows[limit - 1][-1]) if more else None)


async def list_branches(tx: Tx, ctx: Ctx, session_id: str) -> list[SessionRecord]:
    """Sessions forked from ``session_id``, oldest first (damaged ones logged, left out)."""
    records = []
    for row in await tx.all(ctx.q.sessions.branches, {"sid": session_id}):
        try:
            records.append(ctx.record(row))
        except CorruptRecordError as exc:
            _log.warning("ai_session.sql.damaged_record", session_id=row[0], error=str(exc))
    return records


async def update_session(
    tx: Tx,
    ctx: Ctx,
    session_id: str,
    patch: dict[str, Any],
    guard: str | None = None,
    owner: str | None = None,
    max_packet: int | None = None,
) -> SessionRecord:
    """Replace the patched header fields of a live session.

    ``max_packet`` (MariaDB's ``max_allowed_packet``): the header the patch leaves must
    fit in one statement with its other fields (an append hashes them together, a
    checkpoint copies them): refused naming the patched field, nothing written.

    The first attempt is one conditional update (on PostgreSQL it skips a row another
    transaction holds); when it matches nothing the header is locked, the clock read
    again and the error named, or the update applied. MariaDB always locks first.
    ``guard``: only while the session is under that data key (``DataKeyChangedError``
    otherwise). ``owner``: only while the session belongs to that user (locked first;
    ``SessionNotFoundError`` otherwise).
    """
    def params() -> dict[str, Any]:
        values = dict(patch, sid=session_id, now=ctx.now, expires=ctx.deadline(ctx.now))
        if guard is not None:
            values["kguard"] = quoted_guard(guard)
        return values

    update = ctx.q.sessions.update if guard is None else ctx.q.sessions.update_guarded
    row = None
    if ctx.q.dialect != "mysql" and owner is None:
        # MariaDB's UPDATE would wait for a row another transaction holds and then judge
        # the deadline with the clock read before the wait: it locks first, below.
        row = await tx.one(update, params())
    if row is None:
        header = await lock_header(tx, ctx, session_id)
        if header is None or (owner is not None and user_of_row(header) != owner):
            raise SessionNotFoundError(session_id)
        state = ctx.record(header).state
        if not holds_key(state.metadata, guard):
            raise DataKeyChangedError(session_id)
        require_writable(session_id, state.status)
        if max_packet is not None:
            _patched_header_fits(header, patch, max_packet)
        row = await tx.one(update, params())
        if row is None:
            raise SessionStoreError(f"update of session {session_id!r} could not be applied")
    return ctx.record(row)


#: The header columns a patch may set: (column, patch parameter, field named).
_PATCHABLE = (
    ("metadata", "p_metadata", "metadata"),
    ("active_tools", "p_active_tools", "active_tools"),
    ("active_skills", "p_active_skills", "active_skills"),
    ("system_prompt", "p_prompt", "system_prompt"),
    ("variables", "p_variables", "variables"),
)


def _patched_header_fits(header: Sequence[Any], patch: dict[str, Any], limit: int) -> None:
    """Refuse a patch whose header, with the fields it leaves, cannot travel in one packet.

    Each patched value was measured alone before anything was sent; here the header's
    other values join them (two updates of 9 MB each fitted alone, and left a session
    whose every append failed: "Result of concat_ws() was larger than
    max_allowed_packet"). Named after the largest value the patch sets.
    """
    values: dict[str, str] = {}
    changed: list[tuple[int, str]] = []
    for column, param, field in _PATCHABLE:
        if param == "p_prompt":
            is_set = patch.get("p_prompt_set") == 1
        else:
            is_set = patch.get(param) is not None
        value = patch.get(param) if is_set else header[HEADER_COLUMNS.index(column)]
        values[field] = value if isinstance(value, str) else ""
        if is_set:
            changed.append((len(values[field]), field))
    if changed:
        check_packet(limit, header=values, together=max(changed)[1])


async def transition(
    tx: Tx,
    ctx: Ctx,
    session_id: str,
    to_status: SessionStatus,
    allowed_from: frozenset[SessionStatus],
) -> SessionRecord:
    """Compare-and-set the status (effective status checked under the row lock)."""
    header = await lock_header(tx, ctx, session_id)
    if header is None:
        raise SessionNotFoundError(session_id)
    current = ctx.record(header).state.status
    if current == SessionStatus.EXPIRED and to_status != SessionStatus.EXPIRED:
        require_writable(session_id, current)
    if current not in allowed_from:
        raise SessionTransitionError(session_id, current, to_status)
    expires = ctx.deadline(ctx.now) if to_status in LIVE_STATUSES else None
    row = await tx.one(
        ctx.q.sessions.set_status,
        {"sid": session_id, "status": to_status.value, "now": ctx.now, "expires": expires},
    )
    assert row is not None
    return ctx.record(row)


async def find_expired(tx: Tx, ctx: Ctx, limit: int) -> list[str]:
    """Ids stored as live whose deadline has passed (index on status, expires_at)."""
    rows = await tx.all(ctx.q.sessions.find_expired, {"now": ctx.now, "lim": max(limit, 0)})
    return [str(r[0]) for r in rows]


async def mark_expired(tx: Tx, ctx: Ctx, session_id: str) -> SessionRecord | None:
    """Store EXPIRED if still live and due; the record only for the caller that did it."""
    row = await tx.one(ctx.q.sessions.mark_expired, {"sid": session_id, "now": ctx.now})
    return None if row is None else ctx.record(row)


async def mark_expired_batch(
    tx: Tx, ctx: Ctx, session_ids: Sequence[str]
) -> BatchOutcome[SessionRecord]:
    """Store EXPIRED for every id still live and due, in one statement.

    The records go to this caller only (a row another transaction holds is skipped
    on PostgreSQL). A header that cannot be decoded is reported as damaged.
    """
    rows = await tx.all(
        ctx.q.sessions.mark_expired_batch, {"ids": ctx.id_list(session_ids), "now": ctx.now}
    )
    if len(rows) > 1:  # in the order asked, as every backend answers
        place = {sid: i for i, sid in enumerate(session_ids)}
        rows.sort(key=lambda row: place.get(str(row[0]), len(place)))
    outcome: BatchOutcome[SessionRecord] = BatchOutcome()
    # A batch's records are new objects that all stay reachable (no garbage): with
    # the collector running, their allocation set off collections that walked the
    # heap again and again (half of the sweeper's client CPU on PostgreSQL).
    with paused_gc(len(rows)):
        for row in rows:
            try:
                outcome.done.append(ctx.record(row))
            except CorruptRecordError as exc:
                outcome.damaged.append((str(row[0]), exc))
    return outcome


async def quarantine(
    tx: Tx, ctx: Ctx, session_id: str, target: list[int | None] | None = None
) -> None:
    """Move an undecodable record out of the sweeper's indexes (no decoding).

    ``target`` (PostgreSQL, MariaDB, where a lost reply is re-sent): as for
    :func:`delete_session`, the first attempt records the ``ordinal`` of the row it
    locked, and a re-send quarantines that row only, never a session created again
    under the id meanwhile.
    """
    if target is not None:
        row = await tx.one(ctx.q.sessions.ordinal_lock, {"sid": session_id})
        ordinal = None if row is None else row[0]
        if not target:
            target.append(ordinal)
        elif target[0] != ordinal:
            return
        if ordinal is None:
            return
    await tx.run(ctx.q.sessions.quarantine, {"sid": session_id})


async def find_purgeable(tx: Tx, ctx: Ctx, older_than: int, limit: int) -> list[str]:
    """Ids of CLOSED/EXPIRED sessions last updated before ``older_than``."""
    rows = await tx.all(ctx.q.sessions.find_purgeable, {"older": older_than, "lim": max(limit, 0)})
    return [str(r[0]) for r in rows]


async def delete_session(
    tx: Tx, ctx: Ctx, session_id: str, target: list[int | None] | None = None
) -> None:
    """Remove a session with its turns and checkpoints (unknown ids ignored).

    The header is locked first, as every write to the session does: on PostgreSQL
    (READ COMMITTED) a ``DELETE`` does not see rows that a transaction holding the
    header inserts and commits while it runs, so an append or a checkpoint committing
    meanwhile left its rows behind the deleted header, and a session created again
    under the id found them (turns and a checkpoint of the old one).

    ``target``: empty on the first attempt, which records there the ``ordinal`` of the
    row it locked (None: no row). A later attempt of the same call (the runner's re-send
    after a lost reply, or after a rollback) deletes that row only: when the first
    attempt committed and the id was created again before the re-send, the new session
    (another ``ordinal``) is left alone.
    """
    params = {"sid": session_id}
    row = await lock_header(tx, ctx, session_id)
    ordinal = None if row is None else row[_ORDINAL_AT]
    if target is not None:
        if not target:
            target.append(ordinal)
        elif target[0] != ordinal:
            return  # the row the first attempt saw is gone: it did, or someone did
    if row is None:
        # No such session when the lock was taken (a delete that waited for another
        # one finds the row gone): rows stored under the id since belong to a session
        # created again meanwhile, which this delete must not take apart.
        return
    await tx.run(ctx.q.sessions.delete_turns, params)
    await tx.run(ctx.q.sessions.cp_delete_session, params)
    await tx.run(ctx.q.sessions.delete_session, params)


async def purge_batch(tx: Tx, ctx: Ctx, session_ids: Sequence[str], until: int) -> list[str]:
    """Delete every CLOSED/EXPIRED session of ``session_ids`` and tombstone it until ``until``.

    One statement per table for the whole batch; the ids removed (on PostgreSQL a
    row another transaction holds is skipped).
    """
    rows = await tx.all(ctx.q.sessions.purge_pick, {"ids": ctx.id_list(session_ids)})
    chosen = {str(r[0]) for r in rows}
    picked = [sid for sid in dict.fromkeys(session_ids) if sid in chosen]  # in the order asked
    if picked:
        params = {"ids": ctx.id_list(picked)}
        await tx.run(ctx.q.sessions.delete_turns_batch, params)
        await tx.run(ctx.q.sessions.cp_delete_batch, params)
        await tx.run(ctx.q.sessions.delete_sessions_batch, params)
        await tx.run(ctx.q.sessions.put_tombstones, {**params, "until": until})
        await drop_lapsed_tombstones(tx, ctx)
    return picked


#: The most lapsed tombstones one purge deletes (a backlog goes over several purges).
TOMBSTONES_PER_PURGE = 1000


async def drop_lapsed_tombstones(tx: Tx, ctx: Ctx) -> None:
    """Delete tombstones whose time is over (a look-up of the id dropped them, nothing else:
    one row per purged session, kept forever)."""
    await tx.run(
        ctx.q.sessions.drop_lapsed_tombstones, {"now": ctx.now, "n": TOMBSTONES_PER_PURGE}
    )


async def purge(tx: Tx, ctx: Ctx, session_id: str, until: int) -> bool:
    """Delete a CLOSED/EXPIRED session and leave a tombstone until ``until``."""
    header = await lock_header(tx, ctx, session_id)
    if header is None or header[2] not in (SessionStatus.CLOSED.value, SessionStatus.EXPIRED.value):
        return False
    await delete_session(tx, ctx, session_id)
    await tx.run(ctx.q.sessions.put_tombstone, {"sid": session_id, "until": until})
    await drop_lapsed_tombstones(tx, ctx)
    return True


async def tombstones_containing(tx: Tx, ctx: Ctx, text: str) -> list[str]:
    """The ids of the tombstones holding ``text``."""
    rows = await tx.all(ctx.q.sessions.tombstones_containing, {"text": text})
    return [str(row[0]) for row in rows]


async def drop_tombstones(tx: Tx, ctx: Ctx, session_ids: list[str]) -> int:
    """Delete the tombstones of ``session_ids``; how many there were."""
    dropped = 0
    for session_id in session_ids:
        dropped += await tx.run(ctx.q.sessions.drop_tombstone, {"sid": session_id})
    return dropped


# ----------------------------------------------------------- the statements run here
class SessionStatements:
    """The statements of the session scripts: headers, users, branches, sweeping."""

    def __init__(self, p: SqlParts) -> None:
        s = p.sessions
        t = p.turns
        c = p.checkpoints
        tb = p.tombstones
        h = p.header
        ins_cols = p.ins_cols
        patch_set = p.patch_set
        later_now = p.later_now
        later_expiry = p.later_expiry
        target = p.target
        prefix = p.prefix
        dialect = p.dialect
        self.header = f"SELECT {h} FROM {s} WHERE session_id = :sid"
        # PostgreSQL: header and live turns in one statement (its own snapshot, one
        # round trip instead of BEGIN, two SELECTs and COMMIT).
        self.load_one = (
            f"SELECT {h}, ARRAY(SELECT data FROM {t} WHERE session_id = :sid AND live = 1 "
            f"ORDER BY seq) FROM {s} WHERE session_id = :sid"
        )
        # MariaDB: the same read by the load procedure (one round trip instead of five).
        self.load_call = load_call(prefix) if dialect == "mysql" else None
        self.exists = f"SELECT 1 FROM {s} WHERE session_id = :sid"
        self.insert_session = (
            f"INSERT INTO {s} ({', '.join(ins_cols)}) VALUES "
            f"({', '.join(':' + c_ for c_ in ins_cols)}) RETURNING {h}"
        )
        self.replace_header = (
            f"UPDATE {s} SET user_id = :user_id, status = :status, metadata = :metadata, "
            "active_tools = :active_tools, active_skills = :active_skills, "
            "system_prompt = :system_prompt, variables = :variables, "
            "created_at = :created_at, updated_at = :updated_at, "
            "checkpoint_id = :checkpoint_id, total_tokens = :total_tokens, "
            "total_cost = :total_cost, turn_count = :turn_count, "
            "parent_session_id = :parent_session_id, branch_name = :branch_name, "
            "expires_at = CAST(:expires_at AS BIGINT) "
            "WHERE session_id = :session_id RETURNING last_seq"
        )
        self.bump_seq = f"UPDATE {s} SET last_seq = last_seq + :n WHERE session_id = :sid"
        update = (
            f"UPDATE {s} SET {patch_set}, updated_at = {later_now}, "
            f"expires_at = {later_expiry} WHERE {target} AND status IN {LIVE_SQL} AND {NOT_DUE}"
        )
        self.update = f"{update} RETURNING {h}"
        self.update_guarded = f"{update} AND {p.key_guard} RETURNING {h}"
        self.set_status = (
            f"UPDATE {s} SET status = :status, updated_at = {later_now}, "
            f"expires_at = {later_expiry} WHERE session_id = :sid RETURNING {h}"
        )
        self.delete_session = f"DELETE FROM {s} WHERE session_id = :sid"
        # SQLite has no statistics on a new file: name the (partial) index it should use.
        live_ix = f" INDEXED BY {prefix}sessions_user_live_ix" if dialect == "sqlite" else ""
        self.count_live = (
            f"SELECT COUNT(*) FROM {s}{live_ix} WHERE user_id = :uid AND status IN {LIVE_SQL} "
            f"AND {NOT_DUE}"
        )
        self.user_lock = "SELECT pg_advisory_xact_lock(hashtext(:key))"
        # MariaDB: the cap's count takes the user's live rows for writing, so creates of
        # one user wait for each other (a shared count, then inserts, deadlocks them).
        self.count_live_locked = (
            self.count_live + " FOR UPDATE" if dialect == "mysql" else self.count_live
        )
        self.user_all = f"SELECT {h} FROM {s} WHERE user_id = :uid ORDER BY ordinal"
        self.page = (
            f"SELECT {h} FROM {s} WHERE user_id = :uid AND ordinal < :below "
            "ORDER BY ordinal DESC LIMIT :lim"
        )
        self.page_active = (
            f"SELECT {h} FROM {s} WHERE user_id = :uid AND ordinal < :below "
            f"AND status = 'active' AND {NOT_DUE} ORDER BY ordinal DESC LIMIT :lim"
        )
        self.page_suspended = (
            f"SELECT {h} FROM {s} WHERE user_id = :uid AND ordinal < :below "
            f"AND status = 'suspended' AND {NOT_DUE} ORDER BY ordinal DESC LIMIT :lim"
        )
        self.page_closed = (
            f"SELECT {h} FROM {s} WHERE user_id = :uid AND ordinal < :below "
            "AND status = 'closed' ORDER BY ordinal DESC LIMIT :lim"
        )
        self.page_expired = (
            f"SELECT {h} FROM {s} WHERE user_id = :uid AND ordinal < :below "
            f"AND (status = 'expired' OR (status IN {LIVE_SQL} AND expires_at <= :now)) "
            "ORDER BY ordinal DESC LIMIT :lim"
        )
        # Rows stored after the session's own row: a session deleted and created again
        # under the same id starts with no branches (its predecessor's keep their
        # ``parent_session_id`` but are no branches of the new one), as on Redis.
        self.branches = (
            f"SELECT {h} FROM {s} WHERE parent_session_id = :sid "
            f"AND ordinal > (SELECT ordinal FROM {s} WHERE session_id = :sid) ORDER BY ordinal"
        )
        # PostgreSQL indexes a live session's deadline in 5-minute buckets
        # (schema._ended_at): every session due by now is in a bucket up to now's.
        # Earliest bucket first, in index order within it (sorting a bucket of many due
        # sessions on expires_at cost each batch a sort of all of them).
        self.find_expired = (
            f"SELECT session_id FROM {s} WHERE expiry_bucket <= "
            f"CAST(:now AS BIGINT) / {EXPIRY_BUCKET_US} AND expires_at <= :now "
            "ORDER BY expiry_bucket LIMIT :lim"
            if dialect == "postgresql"
            else f"SELECT session_id FROM {s} WHERE status IN {LIVE_SQL} "
            "AND expires_at <= :now ORDER BY expires_at LIMIT :lim"
        )
        self.mark_expired = (
            f"UPDATE {s} SET status = 'expired', expires_at = NULL WHERE session_id = :sid "
            f"AND status IN {LIVE_SQL} AND expires_at <= :now RETURNING {h}"
        )
        # A record that cannot be decoded leaves every index of the sweeper (and the
        # per-user count): its status gets a ``quarantined:`` prefix, kept for an operator.
        self.ordinal_lock = (
            f"SELECT ordinal FROM {s} WHERE session_id = :sid"
            + ("" if dialect == "sqlite" else " FOR UPDATE")
        )
        self.quarantine = (
            f"UPDATE {s} SET status = 'quarantined:' || status, expires_at = NULL "
            f"WHERE session_id = :sid AND status IN ('active', 'suspended', 'closed', 'expired')"
        )
        # MariaDB and PostgreSQL: ``ended_at`` is ``updated_at`` of an ended session and
        # NULL otherwise (schema._ended_at), indexed in place of ``updated_at``.
        self.find_purgeable = (
            f"SELECT session_id FROM {s} WHERE ended_at < :older ORDER BY ended_at LIMIT :lim"
            if dialect in ("mysql", "postgresql")
            else f"SELECT session_id FROM {s} WHERE status IN {ENDED_SQL} "
            "AND updated_at < :older ORDER BY updated_at LIMIT :lim"
        )
        # Batches (one statement each): the ids come as one parameter, a JSON array
        # on SQLite and a text[] on PostgreSQL, where rows another transaction holds
        # are skipped (a second sweeper or a writer has them; a later batch retries).
        in_ids = (
            "= ANY(CAST(:ids AS TEXT[]))"
            if dialect == "postgresql"
            else "IN (SELECT value FROM json_each(:ids))"
        )
        skip = " FOR UPDATE SKIP LOCKED" if dialect == "postgresql" else ""
        due = f"status IN {LIVE_SQL} AND expires_at <= :now"
        self.mark_expired_batch = (
            f"UPDATE {s} SET status = 'expired', expires_at = NULL WHERE session_id IN "
            f"(SELECT session_id FROM {s} WHERE session_id {in_ids} AND {due}{skip}) "
            f"AND {due} RETURNING {h}"
        )
        self.purge_pick = (
            f"SELECT session_id FROM {s} WHERE session_id {in_ids} AND status IN {ENDED_SQL}"
            f"{skip}"
        )
        self.delete_turns_batch = f"DELETE FROM {t} WHERE session_id {in_ids}"
        self.cp_delete_batch = f"DELETE FROM {c} WHERE session_id {in_ids}"
        self.delete_sessions_batch = f"DELETE FROM {s} WHERE session_id {in_ids}"
        ids_rows = (
            "SELECT unnest(CAST(:ids AS TEXT[])), CAST(:until AS BIGINT)"
            if dialect == "postgresql"
            else "SELECT value, :until FROM json_each(:ids) WHERE true"
        )
        self.put_tombstones = (
            f"INSERT INTO {tb} (session_id, until_at) {ids_rows} "
            "ON CONFLICT (session_id) DO UPDATE SET until_at = excluded.until_at"
        )
        # At most TOMBSTONES_PER_PURGE lapsed tombstones, oldest first, through the
        # until_at index (MariaDB takes no LIMIT in an IN subquery; SQLite no LIMIT on
        # DELETE by default).
        self.drop_lapsed_tombstones = (
            f"DELETE FROM {tb} WHERE until_at <= :now ORDER BY until_at LIMIT :n"
            if dialect == "mysql"
            else f"DELETE FROM {tb} WHERE session_id IN (SELECT session_id FROM {tb} "
            "WHERE until_at <= :now ORDER BY until_at LIMIT :n)"
        )
        self.tombstone = f"SELECT until_at FROM {tb} WHERE session_id = :sid"
        self.drop_tombstone = f"DELETE FROM {tb} WHERE session_id = :sid"
        position = "strpos" if dialect == "postgresql" else "instr"
        self.tombstones_containing = (
            f"SELECT session_id FROM {tb} WHERE {position}(session_id, :text) > 0"
        )
        self.put_tombstone = (
            f"INSERT INTO {tb} (session_id, until_at) VALUES (:sid, :until) "
            "ON CONFLICT (session_id) DO UPDATE SET until_at = excluded.until_at"
        )
        self.delete_turns = f"DELETE FROM {t} WHERE session_id = :sid"
        self.cp_delete_session = f"DELETE FROM {c} WHERE session_id = :sid"
