"""Scripts for checkpoints and forks.

A checkpoint row holds the header snapshot as JSON and the ``seq`` ranges of the turns
that were live (computed in SQL with a gaps-and-islands query), so it costs O(1)
storage. Restore flips the ``live`` flags back to those ranges. A fork copies the
inherited turn rows inside the database (``INSERT … SELECT``) without decoding them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol, TypeAlias

from lexigram.contracts.ai.session import (
    SessionCheckpoint,
    SessionState,
    SessionTurn,
)

from lexigram.ai.session.exceptions import (
    CheckpointNotFoundError,
    CorruptRecordError,
    DataKeyChangedError,
    SessionCapacityError,
    SessionNotFoundError,
    SessionValidationError,
)
from lexigram.ai.session.stores._common import (
    branch_header,
    refuse_taken_checkpoint,
    require_writable,
)
from lexigram.ai.session.stores.base import SessionRecord, TurnRange, holds_key
from lexigram.ai.session.stores.codec import loads, state_with
from lexigram.ai.session.stores.sql.context import Ctx as Context
from lexigram.ai.session.stores.sql.fragments import SqlParts
from lexigram.ai.session.stores.sql.ops_sessions import (
    SessionStatements,
    _check_cap,
    load_record,
    lock_user,
    require_new_id,
    tombstoned,
)
from lexigram.ai.session.stores.sql.ops_turns import (
    TurnStatements,
    gc,
    insert_turns,
    lock_header,
    read_live_turns,
)
from lexigram.ai.session.stores.sql.packet import check_packet
from lexigram.ai.session.stores.sql.rows import (
    from_us,
    header_from_json,
    header_params,
    header_to_json,
    ranges_from_json,
    ranges_to_json,
    turn_params,
    turns_from_json,
    turns_from_rows,
    user_of_row,
)
from lexigram.ai.session.stores.sql.runner import Row, Tx


class CheckpointScripts(Protocol):
    """The statements the checkpoint scripts read through ``ctx.q``: every area's."""

    @property
    def dialect(self) -> str:
        """The SQL dialect."""
        ...

    @property
    def checkpoints(self) -> CheckpointStatements:
        """This area's statements."""
        ...

    @property
    def sessions(self) -> SessionStatements:
        """The session statements (the checkpoint scripts call the session scripts)."""
        ...

    @property
    def turns(self) -> TurnStatements:
        """The turn statements (the checkpoint scripts call the turn scripts)."""
        ...


#: The context of a checkpoint script.
Ctx: TypeAlias = Context[CheckpointScripts]

__all__ = [
    "CheckpointScripts",
    "CheckpointStatements",
    "create_checkpoint",
    "delete_checkpoint",
    "fork_session",
    "list_checkpoints",
    "load_checkpoint",
    "restore_checkpoint",
    "save_checkpoint",
]


async def _range_turns(
    tx: Tx, ctx: Ctx, session_id: str, ranges: Sequence[TurnRange]
) -> list[SessionTurn]:
    turns: list[SessionTurn] = []
    for first, last in ranges:
        rows = await tx.all(
            ctx.q.checkpoints.turns_range, {"sid": session_id, "first": first, "last": last}
        )
        turns.extend(turns_from_rows(rows, session_id))
    return turns


async def _from_row(tx: Tx, ctx: Ctx, row: Row, include_turns: bool) -> SessionCheckpoint:
    checkpoint_id, session_id, created, parent, metadata, header, ranges, inline = row[:8]
    record = f"checkpoint {checkpoint_id!r}"
    state = header_from_json(header, record)
    meta = loads(metadata, record=f"{record} field metadata")
    if not isinstance(meta, dict):
        raise CorruptRecordError(record, "field metadata: expected a JSON object")
    turns: list[SessionTurn] = []
    if include_turns:
        if inline is not None:
            turns = turns_from_json(inline, record)
        elif ranges is not None:
            turns = await _range_turns(tx, ctx, session_id, ranges_from_json(ranges, record))
    try:
        created_at = from_us(int(created))
    except (OverflowError, ValueError, TypeError):  # past year 9999, or no number
        raise CorruptRecordError(record, "field created_at: out of range") from None
    return SessionCheckpoint(
        checkpoint_id=checkpoint_id,
        session_id=session_id,
        state=replace(state, turns=turns),
        created_at=created_at,
        parent_checkpoint_id=parent,
        metadata=meta,
    )


async def load_checkpoint(tx: Tx, ctx: Ctx, checkpoint_id: str) -> SessionCheckpoint | None:
    """A checkpoint with its turns, or None (snapshot read)."""
    row = await tx.one(ctx.q.checkpoints.cp_get, {"cp": checkpoint_id})
    return None if row is None else await _from_row(tx, ctx, row, True)


async def list_checkpoints(
    tx: Tx, ctx: Ctx, session_id: str, include_turns: bool
) -> list[SessionCheckpoint]:
    """A session's checkpoints, oldest first (snapshot read)."""
    rows = await tx.all(ctx.q.checkpoints.cp_list, {"sid": session_id})
    return [await _from_row(tx, ctx, r, include_turns) for r in rows]


#: A transaction lock on a checkpoint id (PostgreSQL), see :func:`save_checkpoint`.
_PG_ID_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(CAST(:cp AS TEXT), 7301))"


async def save_checkpoint(tx: Tx, ctx: Ctx, params: dict[str, Any]) -> None:
    """Insert or replace a checkpoint given whole (turns inline).

    Refused with ``SessionNotFoundError`` for a session purged within its tombstone:
    a late copy of one of its checkpoints would bring its turns back. The session's
    header is locked first, so a purge of it runs wholly before or after this write
    (after: its delete of the session's checkpoints removes this one too).
    """
    session_id = params["sid"]
    await lock_header(tx, ctx, session_id)
    if await tombstoned(tx, ctx, session_id):
        raise SessionNotFoundError(session_id)
    if ctx.pg:
        # Two writes of one new id for two sessions (save or create) lock two different
        # headers: the id is locked too, so the second reads the first's row once it
        # committed (both succeeded before, and one session lost the checkpoint it was
        # told was saved or created).
        await tx.one(_PG_ID_LOCK, {"cp": params["cp"]})
    held = await tx.one(ctx.q.checkpoints.cp_get, {"cp": params["cp"]})
    refuse_taken_checkpoint(params["cp"], None if held is None else held[1], session_id)
    await tx.run(ctx.q.checkpoints.cp_upsert, params)


async def live_ranges(tx: Tx, ctx: Ctx, session_id: str, live_count: int) -> list[TurnRange]:
    """The seq ranges of the live turns, in order.

    ``live_count`` is the header's ``turn_count``. When the first and last live seq
    (two index probes) span exactly that many turns, the live turns are one range
    and nothing else is read; otherwise (after a pop or a restore) the ranges are
    computed in SQL.
    """
    if live_count <= 0:
        return []
    bounds = await tx.one(ctx.q.checkpoints.live_bounds, {"sid": session_id})
    if bounds is not None and bounds[0] is not None and bounds[1] is not None:
        first, last = int(bounds[0]), int(bounds[1])
        if last - first + 1 == live_count:
            return [(first, last)]
    rows = await tx.all(ctx.q.checkpoints.live_ranges, {"sid": session_id})
    return [(int(a), int(b)) for a, b in rows]


def subtract_ranges(ranges: Sequence[TurnRange], minus: Sequence[TurnRange]) -> list[TurnRange]:
    """The parts of sorted, disjoint ``ranges`` outside sorted, disjoint ``minus``."""
    out: list[TurnRange] = []
    for start, end in ranges:
        cur = start
        for m_start, m_end in minus:
            if m_end < cur or m_start > end:
                continue
            if m_start > cur:
                out.append((cur, m_start - 1))
            cur = max(cur, m_end + 1)
            if cur > end:
                break
        if cur <= end:
            out.append((cur, end))
    return out


async def create_checkpoint(
    tx: Tx,
    ctx: Ctx,
    session_id: str,
    checkpoint_id: str,
    metadata_json: str,
    max_checkpoints: int | None,
    include_turns: bool,
    guard: str | None = None,
    max_packet: int | None = None,
) -> tuple[SessionCheckpoint, list[str]]:
    """Snapshot header + live ranges, chain it, prune the oldest beyond the retention.

    ``max_packet`` (MariaDB's ``max_allowed_packet``): the checkpoint's row carries the
    stored header beside the metadata, so a header that updates made large may not fit
    with it; refused naming ``metadata`` (the header alone too large: ``state``) before
    the row is sent, nothing written.
    """
    q = ctx.q
    header = await lock_header(tx, ctx, session_id)
    if header is None:
        raise SessionNotFoundError(session_id)
    if not holds_key(ctx.record(header).state.metadata, guard):
        raise DataKeyChangedError(session_id)
    if ctx.pg:  # the id's lock, as save_checkpoint takes it (see there)
        await tx.one(_PG_ID_LOCK, {"cp": checkpoint_id})
    if await tx.one(q.checkpoints.cp_exists, {"cp": checkpoint_id}) is not None:
        raise SessionValidationError(
            "checkpoint_id", f"checkpoint {checkpoint_id!r} already exists"
        )
    current = ctx.record(header).state
    snapshot = replace(current, checkpoint_id=checkpoint_id)
    ranges = await live_ranges(tx, ctx, session_id, current.turn_count)
    header_json = header_to_json(snapshot)
    if max_packet is not None:
        check_packet(max_packet, header={"header": header_json}, header_fields=_STORED)
        check_packet(
            max_packet,
            header={"header": header_json, "metadata": metadata_json},
            together="metadata",
        )
    await tx.run(
        q.checkpoints.cp_insert,
        {
            "cp": checkpoint_id,
            "sid": session_id,
            "created": ctx.now,
            "parent": current.checkpoint_id,
            "metadata": metadata_json,
            "header": header_json,
            "ranges": ranges_to_json(ranges),
            "inline": None,
        },
    )
    await tx.run(q.checkpoints.set_checkpoint, {"sid": session_id, "cp": checkpoint_id})
    pruned: list[str] = []
    if max_checkpoints is not None:
        ids = [str(r[0]) for r in await tx.all(q.checkpoints.cp_ids, {"sid": session_id})]
        for old in ids[: max(len(ids) - max_checkpoints, 0)]:
            await tx.run(q.checkpoints.cp_delete, {"cp": old})
            pruned.append(old)
        if pruned:
            await gc(tx, ctx, session_id)
    turns = await read_live_turns(tx, ctx, session_id) if include_turns else []
    checkpoint = SessionCheckpoint(
        checkpoint_id=checkpoint_id,
        session_id=session_id,
        state=replace(snapshot, turns=turns),
        created_at=from_us(ctx.now),
        parent_checkpoint_id=current.checkpoint_id,
        metadata=loads(metadata_json, record=f"checkpoint {checkpoint_id!r}"),
    )
    return checkpoint, pruned


#: The stored header a checkpoint copies, named as the session's state.
_STORED = {"header": "state"}


async def restore_checkpoint(tx: Tx, ctx: Ctx, checkpoint_id: str) -> SessionState:
    """Make the checkpoint's turns live again and its header current (ACTIVE)."""
    q = ctx.q
    row = await tx.one(q.checkpoints.cp_get, {"cp": checkpoint_id})
    if row is None:
        raise CheckpointNotFoundError(checkpoint_id)
    session_id = row[1]
    header = await lock_header(tx, ctx, session_id)
    if header is None:
        # Deleted (with its checkpoints) since the first read: the checkpoint is gone too.
        if await tx.one(q.checkpoints.cp_get, {"cp": checkpoint_id}) is None:
            raise CheckpointNotFoundError(checkpoint_id)
        raise SessionNotFoundError(session_id)
    # Read again under the lock: on PostgreSQL (READ COMMITTED) the session may have
    # been deleted with its checkpoints, and created again under its id, between the
    # first read and the lock; that checkpoint is gone, not one of the new session's.
    row = await tx.one(q.checkpoints.cp_get, {"cp": checkpoint_id})
    if row is None or row[1] != session_id:
        raise CheckpointNotFoundError(checkpoint_id)
    current = ctx.record(header)
    require_writable(session_id, current.state.status)
    record = f"checkpoint {checkpoint_id!r}"
    point = header_from_json(row[5], record)
    if row[7] is not None:
        await tx.run(q.turns.unlive_all, {"sid": session_id})
        turns = turns_from_json(row[7], record)
        rows = [turn_params(session_id, current.last_seq + i, t) for i, t in enumerate(turns, 1)]
        await insert_turns(tx, ctx, rows)
        if rows:
            await tx.run(q.sessions.bump_seq, {"sid": session_id, "n": len(rows)})
    else:
        # Only the rows whose liveness changes are written (appending k turns after
        # the checkpoint and restoring it touches k rows, not the whole session).
        target = sorted(ranges_from_json(row[6] or "[]", record))
        now_live = await live_ranges(tx, ctx, session_id, current.state.turn_count)
        for first, last in subtract_ranges(now_live, target):
            await tx.run(
                q.checkpoints.unlive_range, {"sid": session_id, "first": first, "last": last}
            )
        for first, last in subtract_ranges(target, now_live):
            await tx.run(
                q.checkpoints.live_range, {"sid": session_id, "first": first, "last": last}
            )
    # The restored turns are read once and returned. The totals are the checkpoint's,
    # as the in-memory store restores them (they are the sums over these turns unless
    # a whole-state save stored other values).
    turns = await read_live_turns(tx, ctx, session_id)
    count, tokens, cost = len(turns), point.total_tokens, point.total_cost
    fields = header_params(point)
    await tx.run(
        q.checkpoints.restore_header,
        {
            "sid": session_id,
            "metadata": fields["metadata"],
            "active_tools": fields["active_tools"],
            "active_skills": fields["active_skills"],
            "system_prompt": fields["system_prompt"],
            "variables": fields["variables"],
            "checkpoint_id": checkpoint_id,
            "total_tokens": tokens,
            "total_cost": cost,
            "turn_count": count,
            "now": ctx.now,
            "expires": ctx.deadline(ctx.now),
        },
    )
    restored = await load_record(tx, ctx, session_id)
    assert restored is not None
    return state_with(restored.state, turns=turns)


async def delete_checkpoint(tx: Tx, ctx: Ctx, checkpoint_id: str) -> bool:
    """Delete one checkpoint; the session's ``checkpoint_id`` moves to its parent.

    On PostgreSQL the session's header is locked first, as every other write to the
    session (restore, fork, create and its pruning, purge) locks it before touching
    its checkpoints or turns. Under READ COMMITTED a restore or fork holding the header
    read the checkpoint's row while this delete, not yet committed, had removed it and
    was collecting the turns only it named: the restore then made live only what was
    left of them (10 of 60 turns, the session's newer turns gone from the history, the
    totals and ``checkpoint_id`` of the deleted checkpoint), and a fork copied as few.
    Now one waits for the other: a restore or fork after the delete finds no checkpoint
    (``CheckpointNotFoundError``), a delete after them collects nothing they made live.
    (SQLite runs one writer at a time; on MariaDB the restore's or fork's read of the
    row, SERIALIZABLE, waits for the delete's row lock, and the delete keeps its order.)
    """
    if ctx.pg:
        owner = await tx.one(ctx.q.checkpoints.cp_session, {"cp": checkpoint_id})
        if owner is None:
            return False
        # A session deleted meanwhile took its checkpoints with it: the DELETE below
        # then finds nothing, whether or not a session holds the id again.
        await lock_header(tx, ctx, str(owner[0]))
    row = await tx.one(ctx.q.checkpoints.cp_delete, {"cp": checkpoint_id})
    if row is None:
        return False
    session_id, parent = row[0], row[1]
    await tx.run(
        ctx.q.checkpoints.move_checkpoint,
        {"sid": session_id, "cp": checkpoint_id, "parent": parent},
    )
    await gc(tx, ctx, session_id)
    return True


async def fork_session(
    tx: Tx,
    ctx: Ctx,
    source_id: str,
    branch: SessionState,
    from_checkpoint: str | None,
    max_branches: int | None,
    max_live: int | None,
    owner: str | None = None,
) -> SessionRecord:
    """Create ``branch`` from the source's live turns (or a checkpoint's) in one step.

    ``owner``: the source must belong to that user (else it is not the session the
    caller read: ``SessionNotFoundError``).
    """
    q = ctx.q
    if max_live is not None:
        await lock_user(tx, ctx, branch.user_id)
    source = await lock_header(tx, ctx, source_id)
    if source is None or (owner is not None and user_of_row(source) != owner):
        raise SessionNotFoundError(source_id)
    await require_new_id(tx, ctx, branch.session_id)
    if max_branches is not None:
        found = await tx.one(q.checkpoints.count_branches, {"sid": source_id})
        if found is not None and int(found[0]) >= max_branches:
            raise SessionCapacityError(  # the count may exceed a lowered limit
                f"session {source_id!r} has reached max_branches_per_session={max_branches}"
            )
    await _check_cap(tx, ctx, branch.user_id, max_live)
    new_id = branch.session_id
    if from_checkpoint is not None:
        row = await tx.one(q.checkpoints.cp_get, {"cp": from_checkpoint})
        if row is None or row[1] != source_id:
            raise CheckpointNotFoundError(from_checkpoint)
        record = f"checkpoint {from_checkpoint!r}"
        point = header_from_json(row[5], record)
        if row[7] is not None:
            inline = turns_from_json(row[7], record)
            rows = [turn_params(new_id, i, t) for i, t in enumerate(inline, 1)]
            await insert_turns(tx, ctx, rows)
            count = len(rows)
        else:
            count = 0
            for first, last in ranges_from_json(row[6] or "[]", record):
                where = {"new": new_id, "offset": count, "src": source_id}
                count += await tx.run(q.checkpoints.copy_range, dict(where, first=first, last=last))
    else:
        point = ctx.record(source).state
        count = await tx.run(
            q.checkpoints.copy_live, {"new": new_id, "offset": 0, "src": source_id}
        )
    costs = await tx.all(q.turns.live_costs, {"sid": new_id}) if count else []
    state = branch_header(
        point,
        branch,
        source_id,
        turns=[],
        turn_count=count,
        total_tokens=sum(int(r[0]) for r in costs),
        total_cost=sum(float(r[1]) for r in costs),
    )
    params = header_params(state)
    row = await tx.one(
        q.sessions.insert_session,
        dict(
            params,
            expires_at=ctx.deadline(params["updated_at"]),
            fork_seq=count,
            last_seq=count,
        ),
    )
    assert row is not None
    return ctx.record(row)


# ----------------------------------------------------------- the statements run here
class CheckpointStatements:
    """The statements of the checkpoint scripts: snapshots, restores and forks."""

    def __init__(self, p: SqlParts) -> None:
        s = p.sessions
        t = p.turns
        c = p.checkpoints
        tc = p.tc
        cols = p.cols
        later_now = p.later_now
        later_expiry = p.later_expiry
        self.restore_header = (
            f"UPDATE {s} SET status = 'active', metadata = :metadata, "
            "active_tools = :active_tools, active_skills = :active_skills, "
            "system_prompt = :system_prompt, variables = :variables, "
            "checkpoint_id = :checkpoint_id, total_tokens = :total_tokens, "
            "total_cost = :total_cost, turn_count = :turn_count, "
            f"updated_at = {later_now}, expires_at = {later_expiry} WHERE session_id = :sid"
        )
        self.set_checkpoint = f"UPDATE {s} SET checkpoint_id = :cp WHERE session_id = :sid"
        self.move_checkpoint = (
            f"UPDATE {s} SET checkpoint_id = :parent "
            "WHERE session_id = :sid AND checkpoint_id = :cp"
        )
        # A branch of this session, not of an earlier one under the same id: stored
        # after it (ordinals only grow), as ``sessions.branches`` lists them.
        self.count_branches = (
            f"SELECT COUNT(*) FROM {s} WHERE parent_session_id = :sid "
            f"AND ordinal > (SELECT ordinal FROM {s} WHERE session_id = :sid)"
        )
        self.turns_range = (
            f"SELECT {tc} FROM {t} WHERE session_id = :sid AND seq BETWEEN :first AND :last "
            "ORDER BY seq"
        )
        self.live_ranges = (
            "SELECT MIN(seq), MAX(seq) FROM (SELECT seq, seq - ROW_NUMBER() OVER "
            f"(ORDER BY seq) AS grp FROM {t} WHERE session_id = :sid AND live = 1) AS g "
            "GROUP BY grp ORDER BY 1"
        )
        # Restore touches only the rows whose liveness changes.
        self.live_range = (
            f"UPDATE {t} SET live = 1 WHERE session_id = :sid AND seq BETWEEN :first AND :last "
            "AND live = 0"
        )
        self.unlive_range = (
            f"UPDATE {t} SET live = 0 WHERE session_id = :sid AND seq BETWEEN :first AND :last "
            "AND live = 1"
        )
        # The first and last live seq, each one probe of the partial live index.
        self.live_bounds = (
            f"SELECT (SELECT seq FROM {t} WHERE session_id = :sid AND live = 1 "
            "ORDER BY seq LIMIT 1), "
            f"(SELECT seq FROM {t} WHERE session_id = :sid AND live = 1 "
            "ORDER BY seq DESC LIMIT 1)"
        )
        self.copy_live = (
            f"INSERT INTO {t} (session_id, seq, live, {cols}) "
            f"SELECT :new, :offset + ROW_NUMBER() OVER (ORDER BY seq), 1, "
            f"{cols} FROM {t} WHERE session_id = :src AND live = 1"
        )
        self.copy_range = (
            f"INSERT INTO {t} (session_id, seq, live, {cols}) "
            f"SELECT :new, :offset + ROW_NUMBER() OVER (ORDER BY seq), 1, "
            f"{cols} FROM {t} WHERE session_id = :src "
            "AND seq BETWEEN :first AND :last"
        )
        self.cp_get = (
            "SELECT checkpoint_id, session_id, created_at, parent_checkpoint_id, metadata, "
            f"header, ranges, inline_turns FROM {c} WHERE checkpoint_id = :cp"
        )
        self.cp_list = (
            "SELECT checkpoint_id, session_id, created_at, parent_checkpoint_id, metadata, "
            f"header, ranges, inline_turns FROM {c} WHERE session_id = :sid "
            "ORDER BY created_at, ordinal"
        )
        self.cp_exists = f"SELECT 1 FROM {c} WHERE checkpoint_id = :cp"
        self.cp_session = f"SELECT session_id FROM {c} WHERE checkpoint_id = :cp"
        self.cp_ids = (
            f"SELECT checkpoint_id FROM {c} WHERE session_id = :sid ORDER BY created_at, ordinal"
        )
        self.cp_insert = (
            f"INSERT INTO {c} (checkpoint_id, session_id, created_at, parent_checkpoint_id, "
            "metadata, header, ranges, inline_turns) VALUES (:cp, :sid, :created, :parent, "
            "CAST(:metadata AS TEXT), CAST(:header AS TEXT), CAST(:ranges AS TEXT), "
            "CAST(:inline AS TEXT))"
        )
        self.cp_upsert = (
            f"INSERT INTO {c} (checkpoint_id, session_id, created_at, parent_checkpoint_id, "
            "metadata, header, ranges, inline_turns) VALUES (:cp, :sid, :created, :parent, "
            "CAST(:metadata AS TEXT), CAST(:header AS TEXT), CAST(:ranges AS TEXT), "
            "CAST(:inline AS TEXT)) "
            "ON CONFLICT (checkpoint_id) DO UPDATE SET session_id = excluded.session_id, "
            "created_at = excluded.created_at, "
            "parent_checkpoint_id = excluded.parent_checkpoint_id, "
            "metadata = excluded.metadata, header = excluded.header, "
            "ranges = excluded.ranges, inline_turns = excluded.inline_turns"
        )
        self.cp_delete = (
            f"DELETE FROM {c} WHERE checkpoint_id = :cp "
            "RETURNING session_id, parent_checkpoint_id"
        )
