"""Scripts for the turn log: append, read, pop, clear and garbage collection.

An append never reads or rewrites earlier turns: one conditional ``UPDATE … RETURNING``
of the header (the checks, the totals guard included, are its ``WHERE`` clause, so the
happy path is a single statement) and one ``INSERT`` per turn. When the update matches
nothing, the header is locked and read (the clock read again once the lock is held) to
raise the error the contract names, in the contract's order. A turn id that is already
live is refused by the partial unique index; the runner rolls the whole transaction
back and the store names the duplicate, unless the runner is re-sending this very
append after its commit reply was lost and finds its first attempt stored
(:func:`replay_outcome`). A caller's own second append of the same turn is a
``DuplicateTurnError``, as on every backend.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from itertools import islice
from operator import lt
from typing import Any, Protocol, TypeAlias

import orjson
from lexigram.contracts.ai.session import SessionStatus, SessionTurn

from lexigram.ai.session.exceptions import (
    CorruptRecordError,
    DataKeyChangedError,
    DuplicateTurnError,
    SessionError,
    SessionNotFoundError,
    SessionStoreError,
    SessionTransitionError,
    SessionValidationError,
)
from lexigram.ai.session.stores._common import check_append, require_writable
from lexigram.ai.session.stores.base import (
    AppendResult,
    SessionRecord,
    StoredTurns,
    compress_seqs,
    holds_key,
)
from lexigram.ai.session.stores.codec import turns_from_array
from lexigram.ai.session.stores.sql.context import NO_LIMIT
from lexigram.ai.session.stores.sql.context import Ctx as Context
from lexigram.ai.session.stores.sql.fragments import NOT_DUE, SqlParts, quoted_guard
from lexigram.ai.session.stores.sql.mysql_replies import HeaderReplies, expectation, moved
from lexigram.ai.session.stores.sql.mysql_routines import (
    APPEND_SLOTS,
    EXPECT_PARAMS,
    Call,
    append_call,
)
from lexigram.ai.session.stores.sql.rows import (
    HEADER_COLUMNS,
    TURN_COLUMNS,
    ranges_from_json,
    turn_from_row,
    turns_from_rows,
    user_of_row,
)
from lexigram.ai.session.stores.sql.runner import Row, Tx, was_resent
from lexigram.ai.session.validation import MAX_SAFE_INT, new_totals


class SessionReads(Protocol):
    """The session statements the turn scripts read (:class:`~.ops_sessions.SessionStatements`
    has them; named here because the session scripts import these)."""

    header: str
    exists: str


class TurnScripts(Protocol):
    """The statements the turn scripts read through ``ctx.q``."""

    @property
    def dialect(self) -> str:
        """The SQL dialect."""
        ...

    @property
    def turns(self) -> TurnStatements:
        """This area's statements."""
        ...

    @property
    def sessions(self) -> SessionReads:
        """The two session statements a turn script reads."""
        ...


#: The context of a turn script (and of every script that calls one).
Ctx: TypeAlias = Context[TurnScripts]

#: The largest finite double: ``total_cost`` must stay at or below it.
_MAX_FLOAT = sys.float_info.max
_HALF_MAX_FLOAT = _MAX_FLOAT / 2
#: The dialects whose store sends a whole append as one statement (:func:`append_one`).
ONE_STATEMENT_DIALECTS = frozenset({"postgresql", "mysql"})
#: The most turns an append sends as one statement (one text per batch size;
#: larger batches take the locked path).
ONE_STATEMENT_TURNS = 32

__all__ = [
    "ONE_STATEMENT_DIALECTS",
    "ONE_STATEMENT_TURNS",
    "SessionReads",
    "TurnScripts",
    "TurnStatements",
    "append",
    "append_one",
    "find_live_duplicate",
    "find_replay",
    "gc",
    "get_turn_rows",
    "get_turn_seqs",
    "insert_turns",
    "live_totals",
    "read_live_turns",
    "lock_header",
    "pop_turn",
    "clear_turns",
    "replay_outcome",
    "require_live_for_write",
]


async def insert_turns(tx: Tx, ctx: Ctx, rows: Sequence[dict[str, Any]]) -> None:
    """Insert prepared turn rows (``session_id`` and ``seq`` already set)."""
    if len(rows) == 1:
        await tx.run(ctx.q.turns.insert_turn, rows[0])
    elif rows:
        await tx.many(ctx.q.turns.insert_turn, rows)


def _append_params(
    ctx: Ctx, session_id: str, n: int, tokens: int, cost: float, max_turns: int | None
) -> dict[str, Any]:
    """The bound parameters of the header update every append makes.

    ``tok_room``/``cost_room`` are how large the stored totals may be for the batch to
    fit (the totals guard of the statement); the batch alone was checked before.
    """
    now = ctx.now
    return {
        "sid": session_id,
        "n": n,
        "tokens": tokens,
        "cost": cost,
        "now": now,
        "max": NO_LIMIT if max_turns is None else max_turns,
        "expires": ctx.deadline(now),
        "tok_room": MAX_SAFE_INT - tokens,
        "cost_room": _MAX_FLOAT - cost,
    }


async def _quick_append(
    tx: Tx,
    ctx: Ctx,
    session_id: str,
    rows: Sequence[dict[str, Any]],
    tokens: int,
    cost: float,
    max_turns: int | None,
    patch: dict[str, Any] | None,
    guard: str | None = None,
) -> Row | None:
    """SQLite: the header update of an append that changes nothing else.

    One conditional ``UPDATE … RETURNING`` (:meth:`TurnStatements.quick_append`) that
    applies while the session stays ACTIVE below its cap and, without a TTL, has no
    deadline: then it writes neither ``status`` nor ``expires_at``, and SQLite leaves
    the pages of the partial indexes on them untouched (fewer pages per commit). The
    costs are added one turn at a time (``total_cost + :c1 + :c2``, left to right), so
    the total is the float sum :func:`new_totals` computes. None when it did not apply
    (the caller locks the header and names the reason, or applies the rest).
    """
    n = len(rows)
    params = _append_params(ctx, session_id, n, tokens, cost, max_turns)
    if n > 1:
        # Added turn by turn, the total may round a little above ``total + cost``: the
        # statement applies only far below the largest float; the locked path judges
        # the rest exactly.
        params["cost_room"] = _HALF_MAX_FLOAT - cost
    for i, item in enumerate(rows, 1):
        params[f"c{i}"] = item["cost"]
    if patch is not None:
        params.update(patch)
    if guard is not None:
        params["kguard"] = quoted_guard(guard)
    expiring = params["expires"] is not None
    sql = ctx.q.turns.quick_append(n, expiring, patch is not None, guard is not None)
    return await tx.one(sql, params)



async def lock_header(tx: Tx, ctx: Ctx, session_id: str) -> Row | None:
    """The session's header row, locked for this transaction; the clock read after."""
    row = await tx.one(ctx.q.turns.header_lock, {"sid": session_id})
    ctx.locked()
    return row


async def append(
    tx: Tx,
    ctx: Ctx,
    session_id: str,
    rows: list[dict[str, Any]],
    batch: Sequence[SessionTurn],
    max_turns: int | None,
    patch: dict[str, Any] | None,
    batch_dup: str | None,
    guard: str | None = None,
    owner: str | None = None,
) -> AppendResult:
    """Append prepared turn rows and bump the counters, checks first (see module doc).

    ``owner``: only while the session belongs to that user (the header is locked and
    read first; ``SessionNotFoundError`` otherwise).

    SQLite, up to :data:`ONE_STATEMENT_TURNS` turns: the conditional update of
    :func:`_quick_append` (the slow path of PostgreSQL and MariaDB starts below it: on
    MariaDB that update would wait for a row lock and judge the deadline with the clock
    read before the wait). It matched nothing, or the batch is larger: the header is
    locked and read (the clock read again once the lock is held), the checks
    raise the contract's error in its order, a retried batch already stored as the
    newest turns returns its first outcome, and the totals are computed turn by turn
    (:func:`new_totals`), exact.
    """
    q = ctx.q
    n = len(rows)
    tokens = sum(t.tokens_used for t in batch)
    cost = float(sum(t.cost for t in batch))
    row = None
    if (
        0 < n <= ONE_STATEMENT_TURNS
        and batch_dup is None
        and owner is None
        and q.dialect == "sqlite"
    ):
        row = await _quick_append(
            tx, ctx, session_id, rows, tokens, cost, max_turns, patch, guard
        )
    if row is None:
        header = await lock_header(tx, ctx, session_id)
        if header is None or (owner is not None and user_of_row(header) != owner):
            raise SessionNotFoundError(session_id)
        locked = ctx.record(header)
        current = locked.state
        if not holds_key(current.metadata, guard):
            raise DataKeyChangedError(session_id)
        try:
            check_append(session_id, current.status, current.turn_count, n, max_turns)
        except SessionError:
            if was_resent():
                replayed = await replay_outcome(tx, ctx, locked, rows, max_turns)
                if replayed is not None:
                    return replayed
            raise
        if batch_dup is not None:
            raise DuplicateTurnError(session_id, batch_dup)
        try:
            abs_tokens, abs_cost = new_totals(current.total_tokens, current.total_cost, batch)
        except SessionValidationError:
            # A live duplicate is named first, as when the totals fit.
            dup = await find_live_duplicate(tx, ctx, session_id, [r["turn_id"] for r in rows])
            if dup is not None:
                raise DuplicateTurnError(session_id, dup) from None
            raise
        if ctx.pg and n == 1:
            # The row is ours: the one-statement append (update and insert in one round
            # trip) keeps the lock held for as short a time as possible.
            done = await append_one(tx, ctx, session_id, rows, tokens, cost, max_turns, patch)
            if done is None:
                raise SessionStoreError(f"append to session {session_id!r} could not be applied")
            return done
        params = _append_params(ctx, session_id, n, tokens, cost, max_turns)
        params.update(abs_tokens=abs_tokens, abs_cost=abs_cost)
        sql = q.turns.append_abs
        if patch is not None:
            params.update(patch)
            sql = q.turns.append_abs_patch
        row = await tx.one(sql, params)
        if row is None:
            raise SessionStoreError(f"append to session {session_id!r} could not be applied")
    record = ctx.record(row)
    first = record.last_seq - n + 1
    for offset, item in enumerate(rows):
        item["session_id"] = session_id
        item["seq"] = first + offset
    await insert_turns(tx, ctx, rows)
    closed = max_turns is not None and record.state.turn_count >= max_turns
    return AppendResult(record=record, closed_by_cap=closed, first_seq=first)


#: How many turns other writers may append between a batch's lost commit reply and its
#: re-send for the re-send still to find the batch stored (and not call it a duplicate).
REPLAY_WINDOW = 256


async def replay_outcome(
    tx: Tx,
    ctx: Ctx,
    record: SessionRecord,
    rows: Sequence[dict[str, Any]],
    max_turns: int | None,
) -> AppendResult | None:
    """The first outcome of a batch already stored among the session's newest live turns.

    The runner re-sends an append whose commit reply was lost (only then is this
    called, see :func:`runner.was_resent`): when consecutive live turns among the
    newest have the batch's ids, in order, with exactly the same stored JSON, the
    append already happened and its result is returned instead of a
    ``DuplicateTurnError``. Other writers may have appended after it meanwhile (up to
    :data:`REPLAY_WINDOW` turns); the record returned is the session as it is now.
    None otherwise.
    """
    n = len(rows)
    if n == 0 or record.state.turn_count < n:
        return None
    session_id = record.state.session_id
    newest = await tx.all(
        ctx.q.turns.last_turn_ids, {"sid": session_id, "lim": n + REPLAY_WINDOW}
    )
    newest.reverse()
    wanted = [(item["turn_id"], item["data"]) for item in rows]
    found = [(stored[1], stored[2]) for stored in newest]
    start = next(
        (i for i in range(len(found) - n, -1, -1) if found[i : i + n] == wanted), None
    )
    if start is None:
        return None
    first = int(newest[start][0])
    for offset, item in enumerate(rows):
        item["session_id"] = session_id
        item["seq"] = first + offset
    closed = (
        max_turns is not None
        and record.state.turn_count >= max_turns
        and record.last_seq == first + n - 1
    )
    return AppendResult(record=record, closed_by_cap=closed, first_seq=first)


async def append_one(
    tx: Tx,
    ctx: Ctx,
    session_id: str,
    rows: list[dict[str, Any]],
    tokens: int,
    cost: float,
    max_turns: int | None,
    patch: dict[str, Any] | None,
    guard: str | None = None,
) -> AppendResult | None:
    """PostgreSQL, MariaDB: an append of up to :data:`ONE_STATEMENT_TURNS` turns as one
    statement (:meth:`TurnStatements.append_rows`), its own transaction.

    None when a check refused it or another transaction held the header (the
    statement skips a locked row rather than judge the deadline with a clock read
    before the wait). The caller then runs :func:`append`, which locks, reads the
    clock and names the error (or applies the append).
    """
    n = len(rows)
    params = _append_params(ctx, session_id, n, tokens, cost, max_turns)
    if n > 1:
        # Added turn by turn, the total may round a little above ``total + cost``: the
        # statement applies only far below the largest float; the locked path judges
        # the rest exactly (new_totals).
        params["cost_room"] = _HALF_MAX_FLOAT - cost
    for i, r in enumerate(rows, 1):
        params[f"c{i}"] = float(r["cost"])
    if ctx.pg:
        params["ids"] = [r["turn_id"] for r in rows]
        params["toks"] = [r["tokens_used"] for r in rows]
        params["costs"] = [r["cost"] for r in rows]
        params["datas"] = [r["data"] for r in rows]
    else:
        for i, r in enumerate(rows, 1):
            params[f"id{i}"] = r["turn_id"]
            params[f"tok{i}"] = r["tokens_used"]
            params[f"data{i}"] = r["data"]
    if patch is not None:
        params.update(patch)
    if guard is not None:
        params["kguard"] = quoted_guard(guard)
    sql = ctx.q.turns.append_rows(n, patch is not None, guard is not None)
    replies = ctx.replies
    if replies is None:
        row: Sequence[Any] | None = await tx.one(sql, params)
    else:
        row = await _mysql_append(tx, replies, sql, session_id, params)
    if row is None:
        return None
    try:
        record = ctx.record(row)
    except CorruptRecordError as exc:
        raise _applied_to_damaged(exc, session_id, [r["turn_id"] for r in rows]) from exc
    closed = max_turns is not None and record.state.turn_count >= max_turns
    return AppendResult(record=record, closed_by_cap=closed, first_seq=record.last_seq - n + 1)


def _applied_to_damaged(
    exc: CorruptRecordError, session_id: str, turn_ids: list[str]
) -> CorruptRecordError:
    """The error of a one-statement append that committed, then found the header damaged.

    The statement is its own transaction and the header it returns is decoded once it
    has committed: the turns are stored. Refusing first would cost every append a
    round trip (a transaction around the statement) or a server-side parse of every
    JSON column of the header; a damaged header is rare, so the error says instead
    that the append was applied (``details["applied"]``, ``details["turn_ids"]``), and
    a caller does not send the turns again.
    """
    error = CorruptRecordError(
        exc.record,
        f"{exc.problem}; the append was applied before the header was read back: "
        f"turns {turn_ids!r} are stored (do not append them again)",
    )
    return error.with_details(session_id=session_id, applied=True, turn_ids=turn_ids)


#: The ``e_*`` parameters of an append whose caller holds no header.
_NO_EXPECTATION: dict[str, Any] = dict.fromkeys(EXPECT_PARAMS)


async def _mysql_append(
    tx: Tx, replies: HeaderReplies, sql: str, session_id: str, params: dict[str, Any]
) -> Sequence[Any] | None:
    """MariaDB: run the one-statement append; the new header row, or None when refused.

    The procedure is told which header this store holds (:mod:`.mysql_replies`) and
    answers with no result set when that is the header it locked: the new one is then
    computed from it. A one-column answer is a refusal; a header with its fingerprint
    is kept for the next append; a header alone (the compound statement) is not.
    """
    held = replies.get(session_id) if isinstance(sql, Call) else None
    params.update(_NO_EXPECTATION if held is None else expectation(*held))
    row = await tx.one(sql, params)
    if row is None:
        if held is None:  # no expectation sent: an answer always comes
            return None
        new = moved(held[0], params)
        replies.keep(session_id, new, held[1])
        return new
    width = len(row)
    if width == 1:
        return None
    if width > len(HEADER_COLUMNS):
        replies.keep(session_id, list(row[: len(HEADER_COLUMNS)]), row[len(HEADER_COLUMNS)])
    return row


async def find_replay(
    tx: Tx, ctx: Ctx, session_id: str, rows: Sequence[dict[str, Any]], max_turns: int | None
) -> AppendResult | None:
    """:func:`replay_outcome` as a read of its own (after a refused insert)."""
    header = await tx.one(ctx.q.sessions.header, {"sid": session_id})
    if header is None:
        return None
    return await replay_outcome(tx, ctx, ctx.record(header), rows, max_turns)


async def find_live_duplicate(
    tx: Tx, ctx: Ctx, session_id: str, turn_ids: Sequence[str]
) -> str | None:
    """The first of ``turn_ids`` that is a live turn of the session, or None."""
    for turn_id in turn_ids:
        if await tx.one(ctx.q.turns.live_has_id, {"sid": session_id, "tid": turn_id}) is not None:
            return turn_id
    return None


async def read_live_turns(
    tx: Tx,
    ctx: Ctx,
    session_id: str,
    offer: Callable[[StoredTurns], list[SessionTurn] | None] | None = None,
) -> list[SessionTurn]:
    """Every live turn in ``seq`` order (SQLite: read as one JSON array text).

    Used by ``get_state`` and listings (``ops_sessions``), checkpoints and restores.
    SQLite joins the turn texts with ``group_concat`` over an ordered subquery (one
    value instead of a row per turn: a restore of 5,000 turns reads and decodes
    them ~15% faster, 1,000 turns are fetched in 0.28 ms instead of 0.46 ms) and
    returns the seqs in the same order beside them, so the order is checked, not
    assumed. Elsewhere, or whenever that read cannot be used (an order that is not
    ascending, a damaged text), the turns are read and decoded row by
    row, which names a damaged row. (PostgreSQL's ``string_agg`` and ``ARRAY()`` cost
    the server more than sending the rows: 8.8 / 4.2 ms against 1.6 ms for 5,000.)

    ``offer`` (a whole read, see ``SessionStore.load_reusing``) is shown the texts
    first, as read; turns it returns are used instead of decoding them.
    """
    sql = ctx.q.turns.live_array
    if sql is not None:
        row = await tx.one(sql, {"sid": session_id})
        if row is not None:
            array, count, seqs = row[0], int(row[1]), row[2]
            if count == 0:
                return []
            if array is not None and seqs is not None and _ascending(seqs):
                turns = None if offer is None else offer(StoredTurns(count, array=array))
                if turns is None:
                    turns = turns_from_array(array, count)
                if turns is not None:
                    return turns
    rows = await tx.all(ctx.q.turns.live_turns, {"sid": session_id})
    if offer is not None and rows:
        turns = offer(StoredTurns(len(rows), texts=[row[-1] for row in rows]))
        if turns is not None:
            return turns
    return turns_from_rows(rows, session_id)


def _ascending(seqs: str | bytes) -> bool:
    """Whether the comma-separated ``seqs`` strictly ascend."""
    try:
        values = orjson.loads(b"[" + seqs + b"]" if isinstance(seqs, bytes) else f"[{seqs}]")
    except orjson.JSONDecodeError:
        return False
    return type(values) is list and all(map(lt, values, islice(values, 1, None)))


async def _require_session(tx: Tx, ctx: Ctx, session_id: str) -> None:
    if await tx.one(ctx.q.sessions.exists, {"sid": session_id}) is None:
        raise SessionNotFoundError(session_id)


async def get_turn_rows(
    tx: Tx,
    ctx: Ctx,
    session_id: str,
    last: int | None,
    after_seq: int | None,
    limit: int | None,
) -> list[Row]:
    """Live turn rows ``(seq, data)``, oldest first, not decoded: the newest ``last``, or
    those after ``after_seq`` (at most ``limit``); ``SessionNotFoundError`` when none
    and no such session.

    On SQLite a script runs in the connection's worker thread, which every operation
    of the process waits for: the store decodes these rows on the event loop instead
    (:func:`rows.turns_from_rows`), beside the worker's next statements.
    """
    if last is None:
        rows = await _rows_after(tx, ctx, session_id, after_seq, limit)
    elif last > 0:
        rows = await tx.all(ctx.q.turns.last_turns, {"sid": session_id, "lim": last})
        rows.reverse()
    else:
        rows = []
    if not rows:
        await _require_session(tx, ctx, session_id)
    return rows


async def _rows_after(
    tx: Tx, ctx: Ctx, session_id: str, after_seq: int | None, limit: int | None
) -> list[Row]:
    if after_seq is None and limit is None:
        return await tx.all(ctx.q.turns.live_turns, {"sid": session_id})
    lim = NO_LIMIT if limit is None else max(limit, 0)
    if lim == 0:
        return []
    return await tx.all(
        ctx.q.turns.turns_after,
        {"sid": session_id, "after": -1 if after_seq is None else after_seq, "lim": lim},
    )


async def get_turn_seqs(
    tx: Tx, ctx: Ctx, session_id: str, after_seq: int | None, limit: int | None
) -> list[tuple[int, SessionTurn]]:
    """Live turns after ``after_seq`` with their ``seq``, oldest first, at most ``limit``."""
    rows = await _rows_after(tx, ctx, session_id, after_seq, limit)
    if not rows:
        await _require_session(tx, ctx, session_id)
    return [(int(r[0]), turn_from_row(r, session_id)) for r in rows]


async def require_live_for_write(tx: Tx, ctx: Ctx, session_id: str) -> SessionRecord:
    """The locked header of a session that accepts turn changes (ACTIVE)."""
    header = await lock_header(tx, ctx, session_id)
    if header is None:
        raise SessionNotFoundError(session_id)
    record = ctx.record(header)
    status = record.state.status
    require_writable(session_id, status)
    if status == SessionStatus.SUSPENDED:
        raise SessionTransitionError(session_id, status, SessionStatus.ACTIVE)
    return record


async def live_totals(tx: Tx, ctx: Ctx, session_id: str) -> tuple[int, int, float]:
    """``(turn_count, total_tokens, total_cost)`` summed over the live turns, oldest first."""
    count, tokens, cost = 0, 0, 0.0
    for used, spent in await tx.all(ctx.q.turns.live_costs, {"sid": session_id}):
        count += 1
        tokens += int(used)
        cost += float(spent)
    return count, tokens, cost


async def _set_counters(tx: Tx, ctx: Ctx, session_id: str) -> None:
    """Set ``turn_count`` and the totals to the sums over the live turns."""
    await _write_counters(tx, ctx, session_id, *await live_totals(tx, ctx, session_id))


async def _write_counters(
    tx: Tx, ctx: Ctx, session_id: str, count: int, tokens: int, cost: float
) -> None:
    """Set ``turn_count`` and the totals (and the write time and deadline)."""
    now = ctx.now
    await tx.run(
        ctx.q.turns.set_counters,
        {
            "sid": session_id,
            "count": count,
            "tokens": tokens,
            "cost": cost,
            "now": now,
            "expires": ctx.deadline(now),
        },
    )


async def pop_turn(tx: Tx, ctx: Ctx, session_id: str) -> SessionTurn | None:
    """End the newest live turn's liveness; the turn or None.

    As the in-memory store does: ``turn_count`` one less, ``total_tokens`` less the
    turn's (at least 0), ``total_cost`` the sum over the turns still live, oldest
    first (as appends built it). Counters a whole-state ``save`` stored as given stay
    off by what they were off.
    """
    header = (await require_live_for_write(tx, ctx, session_id)).state
    rows = await tx.all(ctx.q.turns.last_turns, {"sid": session_id, "lim": 1})
    if not rows:
        return None
    seq = int(rows[0][0])
    turn = turn_from_row(rows[0], session_id)
    await tx.run(ctx.q.turns.unlive_one, {"sid": session_id, "seq": seq})
    _, _, cost = await live_totals(tx, ctx, session_id)
    tokens = max(header.total_tokens - turn.tokens_used, 0)
    await _write_counters(tx, ctx, session_id, header.turn_count - 1, tokens, cost)
    await gc(tx, ctx, session_id)
    return turn


async def clear_turns(tx: Tx, ctx: Ctx, session_id: str) -> int:
    """End every live turn's liveness; totals to zero; how many there were."""
    await require_live_for_write(tx, ctx, session_id)
    count = await tx.run(ctx.q.turns.unlive_all, {"sid": session_id})
    await _set_counters(tx, ctx, session_id)
    await gc(tx, ctx, session_id)
    return count


async def gc(tx: Tx, ctx: Ctx, session_id: str) -> int:
    """Delete log entries that are neither live nor named by a checkpoint; how many."""
    dead = [int(r[0]) for r in await tx.all(ctx.q.turns.dead_seqs, {"sid": session_id})]
    if not dead:
        return 0
    kept: list[tuple[int, int]] = []
    for (raw,) in await tx.all(ctx.q.turns.cp_ranges, {"sid": session_id}):
        kept.extend(ranges_from_json(raw, f"checkpoints of session {session_id!r}"))
    doomed = [s for s in dead if not any(a <= s <= b for a, b in kept)]
    if doomed:
        await tx.many(
            ctx.q.turns.delete_dead,
            [{"sid": session_id, "first": a, "last": b} for a, b in compress_seqs(doomed)],
        )
    return len(doomed)


# ----------------------------------------------------------- the statements run here
class TurnStatements:
    """The statements of the turn scripts: appends, reads, pops and garbage collection."""

    def __init__(self, p: SqlParts) -> None:
        s = p.sessions
        t = p.turns
        c = p.checkpoints
        h = p.header
        tc = p.tc
        cols = p.cols
        lock = p.lock
        patch_set = p.patch_set
        later_now = p.later_now
        later_expiry = p.later_expiry

        def appended(totals: str) -> str:
            return (
                f"last_seq = last_seq + :n, turn_count = turn_count + :n, {totals}, "
                f"updated_at = {later_now}, "
                "status = CASE WHEN turn_count + :n >= :max THEN 'closed' ELSE status END, "
                "expires_at = CASE WHEN turn_count + :n >= :max THEN NULL "
                f"ELSE {later_expiry} END"
            )

        absolute = "total_tokens = :abs_tokens, total_cost = :abs_cost"
        # The totals guard keeps both sums exact and finite (see validation).
        guard = "total_tokens <= :tok_room AND total_cost <= :cost_room"
        append_where = (
            f"WHERE {p.target} AND status = 'active' AND {NOT_DUE} "
            f"AND turn_count < :max AND turn_count + :n <= :max AND {guard}"
        )
        self.header_lock = f"SELECT {h} FROM {s} WHERE session_id = :sid{lock}"
        # SQLite and MariaDB: the append that leaves status and deadline as they are
        # (built per batch size by quick_append).
        self._quick_parts = (
            f"UPDATE {s} SET ",
            "last_seq = last_seq + :n, turn_count = turn_count + :n, "
            f"total_tokens = total_tokens + :tokens, updated_at = {later_now}, "
            "total_cost = total_cost + ",
            f", expires_at = {later_expiry}",
            f" WHERE session_id = :sid AND status = 'active' AND turn_count + :n < :max "
            f"AND {guard} AND ",
            f" RETURNING {h}",
        )
        self._guard = p.key_guard
        self._quick: dict[tuple[int, bool, bool, bool], str] = {}
        self.append_abs = f"UPDATE {s} SET {appended(absolute)} {append_where} RETURNING {h}"
        self.append_abs_patch = (
            f"UPDATE {s} SET {patch_set}, {appended(absolute)} {append_where} RETURNING {h}"
        )
        # PostgreSQL: the whole append as one statement (one round trip, its own
        # transaction): the conditional header update, then the rows it numbers
        # (built per batch size by append_rows).
        rows_from = (
            "FROM h, unnest(CAST(:ids AS TEXT[]), CAST(:toks AS BIGINT[]), "
            "CAST(:costs AS DOUBLE PRECISION[]), CAST(:datas AS TEXT[])) "
            "WITH ORDINALITY AS b(turn_id, tokens_used, cost, data, ord)"
        )
        insert_rows = (
            f"INSERT INTO {t} (session_id, seq, live, turn_id, tokens_used, cost, data) "
            f"SELECT h.session_id, h.last_seq - :n + b.ord, 1, b.turn_id, b.tokens_used, "
            f"b.cost, b.data {rows_from}"
        )
        self._appended = appended
        self._append_where = append_where
        self._patch_set = patch_set
        self._rows_head = f"WITH h AS (UPDATE {s} SET "
        self._rows_tail = (
            f" {append_where} RETURNING {h}), ins AS ({insert_rows}) SELECT * FROM h"
        )
        if p.dialect == "mysql":
            # MariaDB has no UPDATE … RETURNING and no data-modifying CTE: the append is
            # one compound statement running its own transaction. It skips a header
            # another transaction holds (the caller locks, reads the clock and judges),
            # rolls back and re-raises on any error (a duplicate turn id), and returns
            # the header when it applied, one NULL column when a check refused it.
            self._rows_head = (
                "BEGIN NOT ATOMIC DECLARE base BIGINT DEFAULT NULL; "
                "DECLARE CONTINUE HANDLER FOR NOT FOUND SET base = NULL; "
                "DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END; "
                "START TRANSACTION; "
                f"SELECT last_seq INTO base FROM {s} WHERE session_id = :sid "
                "FOR UPDATE SKIP LOCKED; "
                f"IF base IS NOT NULL THEN UPDATE {s} SET "
            )
            self._rows_tail = (
                f" {append_where}; IF ROW_COUNT() = 1 THEN "
                f"INSERT INTO {t} (session_id, seq, live, {cols}) VALUES {{rows}}; "
                f"SELECT {h} FROM {s} WHERE session_id = :sid; ELSE SELECT NULL; END IF; "
                "ELSE SELECT NULL; END IF; COMMIT; END"
            )
        # MariaDB: up to APPEND_SLOTS turns without a patch go through the stored
        # procedure (the compound statement is its fallback, see mysql_routines).
        self._procedure = p.prefix if p.dialect == "mysql" else None
        if p.dialect == "mysql":
            # The header is locked for writing at once: under SERIALIZABLE a plain
            # SELECT takes a shared lock, and writers of one session that all hold it
            # deadlock when each then updates the row.
            self.header_lock += " FOR UPDATE"
        self._append_rows: dict[tuple[int, bool, bool], str] = {}
        self.set_counters = (
            f"UPDATE {s} SET turn_count = :count, total_tokens = :tokens, "
            f"total_cost = :cost, updated_at = {later_now}, expires_at = {later_expiry} "
            "WHERE session_id = :sid"
        )
        self.insert_turn = (
            f"INSERT INTO {t} (session_id, seq, live, {cols}) VALUES "
            f"(:session_id, :seq, 1, {', '.join(':' + c_ for c_ in TURN_COLUMNS)})"
        )
        self.live_turns = f"SELECT {tc} FROM {t} WHERE session_id = :sid AND live = 1 ORDER BY seq"
        # SQLite: the live turns as one JSON array text, their count and their seqs in
        # the order joined; None: read them row by row (see ``read_live_turns``).
        self.live_array: str | None = None
        if p.dialect == "sqlite":
            self.live_array = (
                "SELECT '[' || group_concat(data, ',') || ']', COUNT(*), "
                "group_concat(seq, ',') FROM (SELECT seq, data FROM "
                f"{t} WHERE session_id = :sid AND live = 1 ORDER BY seq)"
            )
        self.last_turns = (
            f"SELECT {tc} FROM {t} WHERE session_id = :sid AND live = 1 "
            "ORDER BY seq DESC LIMIT :lim"
        )
        self.last_turn_ids = (
            f"SELECT seq, turn_id, data FROM {t} WHERE session_id = :sid AND live = 1 "
            "ORDER BY seq DESC LIMIT :lim"
        )
        self.turns_after = (
            f"SELECT {tc} FROM {t} WHERE session_id = :sid AND live = 1 AND seq > :after "
            "ORDER BY seq LIMIT :lim"
        )
        self.live_has_id = (
            f"SELECT 1 FROM {t} WHERE session_id = :sid AND live = 1 AND turn_id = :tid"
        )
        self.live_costs = (
            f"SELECT tokens_used, cost FROM {t} WHERE session_id = :sid AND live = 1 "
            "ORDER BY seq"
        )
        self.unlive_one = f"UPDATE {t} SET live = 0 WHERE session_id = :sid AND seq = :seq"
        self.unlive_all = f"UPDATE {t} SET live = 0 WHERE session_id = :sid AND live = 1"
        self.dead_seqs = f"SELECT seq FROM {t} WHERE session_id = :sid AND live = 0 ORDER BY seq"
        self.delete_dead = (
            f"DELETE FROM {t} WHERE session_id = :sid AND live = 0 "
            "AND seq BETWEEN :first AND :last"
        )
        self.cp_ranges = (
            f"SELECT ranges FROM {c} WHERE session_id = :sid AND ranges IS NOT NULL"
        )

    def quick_append(self, n: int, expiring: bool, patched: bool, guarded: bool = False) -> str:
        """SQLite and MariaDB: the append of ``n`` turns that keeps the session ACTIVE.

        Applies below the cap (``turn_count + n < max``) and, when appends set no
        deadline (``expiring`` false), only to a session without one; it sets
        neither ``status`` nor (without ``expiring``) ``expires_at``. The costs are
        added one turn at a time, ``total_cost + :c1 + :c2`` (left to right).
        ``guarded``: only under the data key of ``:kguard`` (see ``SqlParts.key_guard``).
        """
        key = (n, expiring, patched, guarded)
        sql = self._quick.get(key)
        if sql is None:
            head, sets, expire, where, tail = self._quick_parts
            sets += " + ".join(f":c{i}" for i in range(1, n + 1))
            if expiring:
                sets += expire
            if patched:
                sets = f"{self._patch_set}, {sets}"
            if guarded:
                where += f"{self._guard} AND "
            due = NOT_DUE if expiring else "expires_at IS NULL"
            sql = self._quick[key] = f"{head}{sets}{where}{due}{tail}"
        return sql

    def append_rows(self, n: int, patched: bool, guarded: bool = False) -> str:
        """PostgreSQL, MariaDB: the one-statement append of ``n`` turns (once per ``n``).

        The costs are added one turn at a time, ``total_cost + :c1 + :c2`` (left to
        right), so the stored total is the float sum :func:`new_totals` computes.
        ``guarded``: only under the data key of ``:kguard``.
        """
        key = (n, patched, guarded)
        sql = self._append_rows.get(key)
        if sql is None:
            costs = " + ".join(f":c{i}" for i in range(1, n + 1))
            sets = self._appended(
                f"total_tokens = total_tokens + :tokens, total_cost = total_cost + {costs}"
            )
            if patched:
                sets = f"{self._patch_set}, {sets}"
            tail = self._rows_tail
            if guarded:
                where = self._append_where
                tail = tail.replace(where, f"{where} AND {self._guard}", 1)
            tail = tail.replace(
                "{rows}",
                ", ".join(
                    f"(:sid, base + {i}, 1, :id{i}, :tok{i}, :c{i}, :data{i})"
                    for i in range(1, n + 1)
                ),
            )
            sql = f"{self._rows_head}{sets}{tail}"
            if self._procedure is not None and not patched and n <= APPEND_SLOTS:
                sql = Call(append_call(self._procedure, n, guarded), sql)
            self._append_rows[key] = sql
        return sql
