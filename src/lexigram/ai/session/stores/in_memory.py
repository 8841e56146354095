"""``InMemorySessionStore``: the store for tests, development and ``SessionModule.stub()``.

Every operation runs to completion without awaiting, so under asyncio each one is
atomic with respect to every other task; a lock held for the call makes it atomic
with respect to event loops in other threads too. Nothing survives the process.

It is the reference the durable stores match: every input is checked by
:mod:`lexigram.ai.session.validation` before anything is written, and the totals
are always the sums over the live turns (a write that would take ``total_tokens``
past 2**53 - 1 or make ``total_cost`` non-finite is refused).
"""

from __future__ import annotations

import bisect
import functools
import inspect
import itertools
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from lexigram.contracts.ai.session import (
    SessionCheckpoint,
    SessionState,
    SessionStatus,
    SessionTurn,
)

from lexigram.ai.session.exceptions import (
    CheckpointNotFoundError,
    DataKeyChangedError,
    DuplicateTurnError,
    SessionCapacityError,
    SessionNotFoundError,
    SessionTransitionError,
    SessionValidationError,
)
from lexigram.ai.session.stores._common import (
    apply_patch,
    branch_header,
    check_append,
    check_batch_ids,
    copy_state,
    copy_turn,
    effective_status,
    json_copy,
    parse_cursor,
    refuse_taken_checkpoint,
    require_writable,
)
from lexigram.ai.session.stores.base import (
    LIVE_STATUSES,
    AppendResult,
    Clock,
    SessionPage,
    SessionPatch,
    SessionRecord,
    SessionStore,
    TurnRange,
    check_fork_seq,
    compress_seqs,
    holds_key,
)
from lexigram.ai.session.stores.codec import state_with
from lexigram.ai.session.stores.gc_pause import paused_gc
from lexigram.ai.session.stores.loops import CLOSED_FLAG, one_at_a_time
from lexigram.ai.session.validation import (
    check_caps,
    check_checkpoint,
    check_count,
    check_id,
    check_instant,
    check_mapping,
    check_optional_count,
    check_optional_guard,
    check_patch,
    check_state,
    check_status,
    check_status_filter,
    check_statuses,
    check_turn_range,
    check_turns,
    new_totals,
)

__all__ = ["InMemorySessionStore"]


@dataclass
class _Session:
    header: SessionState  # turns == []
    ordinal: int
    log: dict[int, SessionTurn] = field(default_factory=dict)
    live: list[int] = field(default_factory=list)
    live_ids: dict[str, int] = field(default_factory=dict)
    next_seq: int = 1
    expires_at: datetime | None = None
    fork_seq: int | None = None


class _UserIndex:
    """A user's sessions by creation ordinal: ordered iteration, O(page) paging."""

    def __init__(self) -> None:
        self.ordinals: list[int] = []
        self.ids: dict[int, str] = {}

    def add(self, ordinal: int, session_id: str) -> None:
        bisect.insort(self.ordinals, ordinal)
        self.ids[ordinal] = session_id

    def remove(self, ordinal: int) -> None:
        if self.ids.pop(ordinal, None) is not None:
            del self.ordinals[bisect.bisect_left(self.ordinals, ordinal)]

    def __iter__(self) -> Iterator[str]:
        return (self.ids[o] for o in self.ordinals)

    def newest_first(self, below: int | None) -> Iterator[str]:
        """Session ids newest first, starting below the ordinal ``below``."""
        end = len(self.ordinals) if below is None else bisect.bisect_left(self.ordinals, below)
        return (self.ids[self.ordinals[i]] for i in range(end - 1, -1, -1))


_NO_SESSIONS = _UserIndex()


@dataclass
class _Checkpoint:
    checkpoint_id: str
    session_id: str
    header: SessionState
    created_at: datetime
    parent_checkpoint_id: str | None
    metadata: dict[str, Any]
    ranges: list[TurnRange] | None = None
    inline_turns: list[SessionTurn] | None = None
    #: Order of first storage: breaks ties of ``created_at`` (kept when saved again).
    ordinal: int = 0


def _copies(sess: _Session, seqs: Sequence[int]) -> list[SessionTurn]:
    """Copies of the session's turns at ``seqs``.

    The collector is paused while a long list is copied, as the durable stores do
    when they decode one (see :mod:`.gc_pause`).
    """
    log = sess.log
    with paused_gc(len(seqs)):
        return [copy_turn(log[s]) for s in seqs]


@one_at_a_time
class InMemorySessionStore(SessionStore):
    """A dict-backed store; safe under concurrent tasks of any number of event loops."""

    backend_name: ClassVar[str] = "memory"
    supports_key_guard: ClassVar[bool] = True

    def __init__(self, *, session_ttl: int = 0, clock: Clock | None = None) -> None:
        super().__init__(session_ttl=session_ttl, clock=clock)
        # A plugin built on this store may override a write without ``owner``.
        self.supports_owner_guard = _honours_owner(type(self))
        self._sessions: dict[str, _Session] = {}
        self._by_user: dict[str, _UserIndex] = {}
        self._branches: dict[str, dict[str, None]] = {}
        self._checkpoints: dict[str, _Checkpoint] = {}
        self._session_checkpoints: dict[str, list[str]] = {}
        self._cp_ordinals = itertools.count(1)
        # Oldest first: a purge drops the lapsed ones from the front (see _drop_lapsed).
        self._tombstones: OrderedDict[str, datetime] = OrderedDict()
        self._ordinals = itertools.count(1)

    async def close(self) -> None:
        """Refuse every later operation (``StoreUnavailableError``), as the durable stores do.

        What is stored stays in memory until the store is dropped. Idempotent.
        """
        self.__dict__[CLOSED_FLAG] = True

    # ----------------------------------------------------------------- helpers
    def _get(self, session_id: str) -> _Session:
        sess = self._sessions.get(session_id)
        if sess is None:
            raise SessionNotFoundError(session_id)
        return sess

    def _status(self, sess: _Session, now: datetime) -> SessionStatus:
        return effective_status(sess.header.status, sess.expires_at, now)

    def _record(self, sess: _Session, now: datetime) -> SessionRecord:
        state = copy_state(sess.header, turns=[])
        status = self._status(sess, now)
        if status != state.status:
            state = state_with(state, status=status)
        return SessionRecord(
            state=state,
            expires_at=sess.expires_at,
            fork_seq=sess.fork_seq,
            last_seq=sess.next_seq - 1,
        )

    def _full(self, sess: _Session, now: datetime) -> SessionState:
        turns = _copies(sess, sess.live)
        return state_with(self._record(sess, now).state, turns=turns)

    def _touch(self, sess: _Session, now: datetime, **changes: Any) -> None:
        sess.header = state_with(sess.header, updated_at=self._later(sess, now), **changes)
        self._extend(sess, now)

    @staticmethod
    def _later(sess: _Session, now: datetime) -> datetime:
        """The ``updated_at`` of a write at ``now``: never before the stored one.

        Another writer's clock may run ahead; as the durable backends do, the later
        of the two is kept.
        """
        stored = sess.header.updated_at
        return stored if stored > now else now

    def _extend(self, sess: _Session, now: datetime) -> None:
        """The deadline of a write at ``now``: never before the stored one (None: none)."""
        deadline = self.deadline_for(now)
        stored = sess.expires_at
        if deadline is not None and stored is not None and stored > deadline:
            deadline = stored
        sess.expires_at = deadline

    def _expire_if_due(self, sess: _Session, now: datetime) -> SessionStatus:
        """The effective status; persisting EXPIRED is the sweeper's job (``mark_expired``)."""
        return self._status(sess, now)

    def _tombstoned(self, session_id: str, now: datetime) -> bool:
        until = self._tombstones.get(session_id)
        if until is None:
            return False
        if until <= now:
            del self._tombstones[session_id]
            return False
        return True

    def _live_count(self, user_id: str, now: datetime) -> int:
        return sum(
            1
            for sid in self._by_user.get(user_id, _NO_SESSIONS)
            if self._status(self._sessions[sid], now) in LIVE_STATUSES
        )

    def _insert(self, state: SessionState, now: datetime, fork_seq: int | None = None) -> _Session:
        sess = _Session(header=copy_state(state, turns=[]), ordinal=next(self._ordinals))
        for turn in state.turns:
            self._append_one(sess, copy_turn(turn))
        sess.fork_seq = fork_seq
        sess.expires_at = (
            self.deadline_for(state.updated_at) if state.status in LIVE_STATUSES else None
        )
        self._sessions[state.session_id] = sess
        # A new session has no branches, whatever named its id as parent before.
        self._branches.pop(state.session_id, None)
        self._by_user.setdefault(state.user_id, _UserIndex()).add(sess.ordinal, state.session_id)
        if state.parent_session_id:
            self._branches.setdefault(state.parent_session_id, {})[state.session_id] = None
        return sess

    @staticmethod
    def _append_one(sess: _Session, turn: SessionTurn) -> int:
        seq = sess.next_seq
        sess.next_seq += 1
        sess.log[seq] = turn
        sess.live.append(seq)
        sess.live_ids[turn.turn_id] = seq
        return seq

    def _set_live(self, sess: _Session, seqs: list[int]) -> None:
        sess.live = seqs
        sess.live_ids = {sess.log[s].turn_id: s for s in seqs}

    def _gc(self, session_id: str) -> None:
        """Drop log entries neither live nor named by a checkpoint."""
        sess = self._sessions.get(session_id)
        if sess is None:
            return
        keep = set(sess.live)
        for cp_id in self._session_checkpoints.get(session_id, []):
            for first, last in self._checkpoints[cp_id].ranges or []:
                keep.update(range(first, last + 1))
        for seq in [s for s in sess.log if s not in keep]:
            del sess.log[seq]

    # ------------------------------------------------------------ contract API
    async def save(self, state: SessionState) -> None:
        state = check_state(state)
        now = self.now()
        if self._tombstoned(state.session_id, now):
            raise SessionNotFoundError(state.session_id)
        check_batch_ids(state.session_id, state.turns)
        old = self._sessions.get(state.session_id)
        if old is None:
            self._insert(state, now)
            return
        if state.status in LIVE_STATUSES:
            # A live copy saved over a session that ended meanwhile would make it live again.
            require_writable(state.session_id, self._status(old, now))
        self._reindex(state.session_id, old.header, state)
        old.header = copy_state(state, turns=[])
        self._set_live(old, [])
        for turn in state.turns:
            self._append_one(old, copy_turn(turn))
        old.expires_at = (
            self.deadline_for(state.updated_at) if state.status in LIVE_STATUSES else None
        )
        self._gc(state.session_id)

    async def load(self, session_id: str) -> SessionState | None:
        session_id = check_id(session_id, "session_id")
        sess = self._sessions.get(session_id)
        return None if sess is None else self._full(sess, self.now())

    async def delete(self, session_id: str) -> None:
        session_id = check_id(session_id, "session_id")
        sess = self._sessions.pop(session_id, None)
        if sess is None:
            return
        self._drop_from_user(sess.header.user_id, sess.ordinal)
        if sess.header.parent_session_id:
            self._branches.get(sess.header.parent_session_id, {}).pop(session_id, None)
        # Its branches stay (naming it as parent) but are nobody's branches any more.
        self._branches.pop(session_id, None)
        for cp_id in self._session_checkpoints.pop(session_id, []):
            self._checkpoints.pop(cp_id, None)

    def _drop_from_user(self, user_id: str, ordinal: int) -> None:
        """Take a session out of its user's index; a user left with none is forgotten
        (an index per user ever seen grew without end: one per anonymous visitor)."""
        index = self._by_user.get(user_id)
        if index is None:
            return
        index.remove(ordinal)
        if not index.ids:
            del self._by_user[user_id]

    async def list_sessions(self, user_id: str) -> list[SessionState]:
        user_id = check_id(user_id, "user_id")
        now = self.now()
        index = self._by_user.get(user_id, _NO_SESSIONS)
        return [self._full(self._sessions[sid], now) for sid in index]

    def _reindex(self, session_id: str, old: SessionState, new: SessionState) -> None:
        """Keep the user and branch indexes right when ``save`` changes the owner or parent."""
        if old.user_id != new.user_id:
            ordinal = self._sessions[session_id].ordinal
            self._drop_from_user(old.user_id, ordinal)
            self._by_user.setdefault(new.user_id, _UserIndex()).add(ordinal, session_id)
        if old.parent_session_id != new.parent_session_id:
            if old.parent_session_id:
                self._branches.get(old.parent_session_id, {}).pop(session_id, None)
            if new.parent_session_id:
                self._branches.setdefault(new.parent_session_id, {})[session_id] = None

    async def save_checkpoint(self, checkpoint: SessionCheckpoint) -> None:
        checkpoint = check_checkpoint(checkpoint)
        if self._tombstoned(checkpoint.session_id, self.now()):
            raise SessionNotFoundError(checkpoint.session_id)  # a purged session stays gone
        state = checkpoint.state
        old = self._checkpoints.get(checkpoint.checkpoint_id)
        refuse_taken_checkpoint(
            checkpoint.checkpoint_id, None if old is None else old.session_id,
            checkpoint.session_id,
        )
        self._checkpoints[checkpoint.checkpoint_id] = _Checkpoint(
            checkpoint_id=checkpoint.checkpoint_id,
            session_id=checkpoint.session_id,
            header=copy_state(state, turns=[]),
            created_at=checkpoint.created_at,
            parent_checkpoint_id=checkpoint.parent_checkpoint_id,
            metadata=json_copy(checkpoint.metadata),
            inline_turns=[copy_turn(t) for t in state.turns],
            ordinal=old.ordinal if old is not None else next(self._cp_ordinals),
        )
        self._file_checkpoint(checkpoint.session_id, checkpoint.checkpoint_id)

    def _file_checkpoint(self, session_id: str, checkpoint_id: str) -> list[str]:
        """Put ``checkpoint_id`` in its session's list, kept in ``created_at`` order.

        Checkpoints with the same ``created_at`` keep the order they were stored in.
        """
        ids = self._session_checkpoints.setdefault(session_id, [])
        if checkpoint_id in ids:
            ids.remove(checkpoint_id)
        cp = self._checkpoints[checkpoint_id]
        keys = [(self._checkpoints[c].created_at, self._checkpoints[c].ordinal) for c in ids]
        ids.insert(bisect.bisect_right(keys, (cp.created_at, cp.ordinal)), checkpoint_id)
        return ids

    def _checkpoint_turns(self, cp: _Checkpoint) -> list[SessionTurn]:
        if cp.inline_turns is not None:
            return [copy_turn(t) for t in cp.inline_turns]
        sess = self._get(cp.session_id)
        return [
            copy_turn(sess.log[s])
            for first, last in cp.ranges or []
            for s in range(first, last + 1)
        ]

    def _to_checkpoint(self, cp: _Checkpoint, *, include_turns: bool) -> SessionCheckpoint:
        turns = self._checkpoint_turns(cp) if include_turns else []
        return SessionCheckpoint(
            checkpoint_id=cp.checkpoint_id,
            session_id=cp.session_id,
            state=copy_state(cp.header, turns=turns),
            created_at=cp.created_at,
            parent_checkpoint_id=cp.parent_checkpoint_id,
            metadata=json_copy(cp.metadata),
        )

    async def load_checkpoint(self, checkpoint_id: str) -> SessionCheckpoint | None:
        checkpoint_id = check_id(checkpoint_id, "checkpoint_id")
        cp = self._checkpoints.get(checkpoint_id)
        return None if cp is None else self._to_checkpoint(cp, include_turns=True)

    async def list_checkpoints(self, session_id: str) -> list[SessionCheckpoint]:
        session_id = check_id(session_id, "session_id")
        return [
            self._to_checkpoint(self._checkpoints[c], include_turns=True)
            for c in self._session_checkpoints.get(session_id, [])
        ]

    async def list_checkpoint_headers(self, session_id: str) -> list[SessionCheckpoint]:
        session_id = check_id(session_id, "session_id")
        return [
            self._to_checkpoint(self._checkpoints[c], include_turns=False)
            for c in self._session_checkpoints.get(session_id, [])
        ]

    async def delete_checkpoint(self, checkpoint_id: str) -> bool:
        checkpoint_id = check_id(checkpoint_id, "checkpoint_id")
        cp = self._checkpoints.pop(checkpoint_id, None)
        if cp is None:
            return False
        ids = self._session_checkpoints.get(cp.session_id, [])
        if checkpoint_id in ids:
            ids.remove(checkpoint_id)
        sess = self._sessions.get(cp.session_id)
        if sess is not None and sess.header.checkpoint_id == checkpoint_id:
            sess.header = state_with(sess.header, checkpoint_id=cp.parent_checkpoint_id)
        self._gc(cp.session_id)
        return True

    # ------------------------------------------------------------------ create
    async def create_session(
        self,
        state: SessionState,
        *,
        max_live_per_user: int | None = None,
        fork_seq: int | None = None,
    ) -> SessionRecord:
        check_caps(max_live_per_user=max_live_per_user)
        state = check_state(state)
        fork_seq = check_fork_seq(fork_seq, state)
        now = self.now()
        if state.session_id in self._sessions or self._tombstoned(state.session_id, now):
            raise SessionValidationError(
                "session_id", f"session {state.session_id!r} already exists"
            )
        check_batch_ids(state.session_id, state.turns)
        if (
            max_live_per_user is not None
            and self._live_count(state.user_id, now) >= max_live_per_user
        ):
            raise SessionCapacityError(
                f"user {state.user_id!r} already has {max_live_per_user} live sessions "
                f"(max_sessions_per_user={max_live_per_user})"
            )
        return self._record(self._insert(state, now, fork_seq=fork_seq), now)

    # ------------------------------------------------------------------- reads
    async def load_record(self, session_id: str) -> SessionRecord | None:
        session_id = check_id(session_id, "session_id")
        sess = self._sessions.get(session_id)
        return None if sess is None else self._record(sess, self.now())

    async def get_turns(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after_seq: int | None = None,
        limit: int | None = None,
    ) -> list[SessionTurn]:
        session_id = check_id(session_id, "session_id")
        check_turn_range(last, after_seq, limit)
        if last is not None:
            sess = self._get(session_id)
            return _copies(sess, sess.live[-last:] if last > 0 else [])
        return [
            t for _, t in await self.get_turn_seqs(session_id, after_seq=after_seq, limit=limit)
        ]

    async def get_turn_seqs(
        self, session_id: str, *, after_seq: int | None = None, limit: int | None = None
    ) -> list[tuple[int, SessionTurn]]:
        session_id = check_id(session_id, "session_id")
        check_turn_range(None, after_seq, limit)
        sess = self._get(session_id)
        seqs = sess.live
        if after_seq is not None:
            seqs = seqs[bisect.bisect_right(seqs, after_seq) :]
        if limit is not None:
            seqs = seqs[: max(limit, 0)]
        return list(zip(seqs, _copies(sess, seqs), strict=True))

    async def list_user_sessions(
        self,
        user_id: str,
        *,
        status: SessionStatus | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> SessionPage:
        user_id = check_id(user_id, "user_id")
        status = check_status_filter(status)
        check_count(limit, "limit", minimum=1)
        now = self.now()
        below = parse_cursor(cursor)
        index = self._by_user.get(user_id, _NO_SESSIONS)
        items: list[SessionState] = []
        last_ordinal: int | None = None
        for sid in index.newest_first(below):
            sess = self._sessions[sid]
            if status is not None and self._status(sess, now) != status:
                continue
            if len(items) == limit:
                return SessionPage(items=items, next_cursor=str(last_ordinal))
            items.append(self._record(sess, now).state)
            last_ordinal = sess.ordinal
        return SessionPage(items=items, next_cursor=None)

    async def count_live_sessions(self, user_id: str) -> int:
        user_id = check_id(user_id, "user_id")
        return self._live_count(user_id, self.now())

    async def id_taken(self, session_id: str) -> bool:
        session_id = check_id(session_id, "session_id")
        return session_id in self._sessions or self._tombstoned(session_id, self.now())

    # ------------------------------------------------------------------ writes
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
        session_id = check_id(session_id, "session_id")
        check_optional_count(max_turns, "max_turns", minimum=1)
        batch = check_turns(turns, "turns")
        new_totals(0, 0.0, batch)  # the batch alone must fit, whatever the session holds
        if patch is not None:
            check_patch(patch)
        now = self.now()
        sess = self._guarded(session_id, key_guard, owner)
        status = self._expire_if_due(sess, now)
        check_append(session_id, status, sess.header.turn_count, len(batch), max_turns)
        check_batch_ids(session_id, batch)
        for turn in batch:
            if turn.turn_id in sess.live_ids:
                raise DuplicateTurnError(session_id, turn.turn_id)
        tokens, cost = new_totals(sess.header.total_tokens, sess.header.total_cost, batch)
        first_seq = sess.next_seq
        if patch is not None:
            sess.header = apply_patch(sess.header, patch, self._later(sess, now))
        for turn in batch:
            self._append_one(sess, copy_turn(turn))
        count = sess.header.turn_count + len(batch)
        closed = max_turns is not None and count >= max_turns
        self._touch(
            sess,
            now,
            turn_count=count,
            total_tokens=tokens,
            total_cost=cost,
            status=SessionStatus.CLOSED if closed else sess.header.status,
        )
        if closed:
            sess.expires_at = None
        return AppendResult(
            record=self._record(sess, now), closed_by_cap=closed, first_seq=first_seq
        )

    async def update_session(
        self,
        session_id: str,
        patch: SessionPatch,
        *,
        key_guard: str | None = None,
        owner: str | None = None,
    ) -> SessionRecord:
        session_id = check_id(session_id, "session_id")
        check_patch(patch)
        now = self.now()
        sess = self._guarded(session_id, key_guard, owner)
        require_writable(session_id, self._expire_if_due(sess, now))
        sess.header = apply_patch(sess.header, patch, self._later(sess, now))
        self._extend(sess, now)
        return self._record(sess, now)

    async def transition(
        self,
        session_id: str,
        to_status: SessionStatus,
        *,
        allowed_from: frozenset[SessionStatus],
    ) -> SessionRecord:
        session_id = check_id(session_id, "session_id")
        to_status = check_status(to_status, "to_status")
        allowed_from = check_statuses(allowed_from, "allowed_from")
        now = self.now()
        sess = self._get(session_id)
        current = self._expire_if_due(sess, now)
        if current == SessionStatus.EXPIRED and to_status != SessionStatus.EXPIRED:
            require_writable(session_id, current)
        if current not in allowed_from:
            raise SessionTransitionError(session_id, current, to_status)
        self._touch(sess, now, status=to_status)
        if to_status not in LIVE_STATUSES:
            sess.expires_at = None
        return self._record(sess, now)

    def _guarded(
        self, session_id: str, key_guard: str | None, owner: str | None = None
    ) -> _Session:
        """The stored session, refused when it is not under ``key_guard``'s data key
        (or, with ``owner``, not that user's: ``SessionNotFoundError``)."""
        check_optional_guard(key_guard)
        if owner is not None:
            check_id(owner, "owner")
        sess = self._get(session_id)
        if owner is not None and sess.header.user_id != owner:
            raise SessionNotFoundError(session_id)
        if not holds_key(sess.header.metadata, key_guard):
            raise DataKeyChangedError(session_id)
        return sess

    def _live_for_write(self, session_id: str, now: datetime) -> _Session:
        sess = self._get(session_id)
        status = self._expire_if_due(sess, now)
        require_writable(session_id, status)
        if status == SessionStatus.SUSPENDED:
            raise SessionTransitionError(session_id, status, SessionStatus.ACTIVE)
        return sess

    async def pop_turn(self, session_id: str) -> SessionTurn | None:
        session_id = check_id(session_id, "session_id")
        now = self.now()
        sess = self._live_for_write(session_id, now)
        if not sess.live:
            return None
        seq = sess.live.pop()
        turn = sess.log[seq]
        sess.live_ids.pop(turn.turn_id, None)
        self._touch(
            sess,
            now,
            turn_count=sess.header.turn_count - 1,
            total_tokens=max(sess.header.total_tokens - turn.tokens_used, 0),
            # The sum over the turns still live, oldest first, as appends built it.
            total_cost=_cost_of(sess.log[s] for s in sess.live),
        )
        self._gc(session_id)
        return copy_turn(turn)

    async def clear_turns(self, session_id: str) -> int:
        session_id = check_id(session_id, "session_id")
        now = self.now()
        sess = self._live_for_write(session_id, now)
        count = len(sess.live)
        self._set_live(sess, [])
        self._touch(sess, now, turn_count=0, total_tokens=0, total_cost=0.0)
        self._gc(session_id)
        return count

    # ------------------------------------------------------------- checkpoints
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
        session_id = check_id(session_id, "session_id")
        check_id(checkpoint_id, "checkpoint_id")
        check_optional_count(max_checkpoints, "max_checkpoints", minimum=1)
        if metadata is not None:
            metadata = check_mapping(metadata, "metadata")
        now = self.now()
        sess = self._guarded(session_id, key_guard)
        if checkpoint_id in self._checkpoints:
            raise SessionValidationError(
                "checkpoint_id", f"checkpoint {checkpoint_id!r} already exists"
            )
        header = self._record(sess, now).state
        cp = _Checkpoint(
            checkpoint_id=checkpoint_id,
            session_id=session_id,
            header=state_with(header, checkpoint_id=checkpoint_id),
            created_at=now,
            parent_checkpoint_id=sess.header.checkpoint_id,
            metadata=json_copy(metadata or {}),
            ranges=compress_seqs(sess.live),
            ordinal=next(self._cp_ordinals),
        )
        self._checkpoints[checkpoint_id] = cp
        ids = self._file_checkpoint(session_id, checkpoint_id)
        sess.header = state_with(sess.header, checkpoint_id=checkpoint_id)
        pruned: list[str] = []
        if max_checkpoints is not None:
            while len(ids) > max_checkpoints:
                old = ids.pop(0)
                self._checkpoints.pop(old, None)
                pruned.append(old)
            if pruned:
                self._gc(session_id)
        return self._to_checkpoint(cp, include_turns=include_turns), pruned

    async def restore_checkpoint(self, checkpoint_id: str) -> SessionState:
        checkpoint_id = check_id(checkpoint_id, "checkpoint_id")
        now = self.now()
        cp = self._checkpoints.get(checkpoint_id)
        if cp is None:
            raise CheckpointNotFoundError(checkpoint_id)
        sess = self._get(cp.session_id)
        require_writable(cp.session_id, self._expire_if_due(sess, now))
        if cp.inline_turns is not None:
            self._set_live(sess, [])
            for turn in cp.inline_turns:
                self._append_one(sess, copy_turn(turn))
        else:
            self._set_live(
                sess, [s for first, last in cp.ranges or [] for s in range(first, last + 1)]
            )
        h = cp.header
        sess.header = state_with(
            copy_state(h, turns=[]),
            session_id=sess.header.session_id,
            user_id=sess.header.user_id,
            created_at=sess.header.created_at,
            parent_session_id=sess.header.parent_session_id,
            branch_name=sess.header.branch_name,
            status=SessionStatus.ACTIVE,
            checkpoint_id=checkpoint_id,
            turn_count=len(sess.live),
            updated_at=self._later(sess, now),
        )
        self._extend(sess, now)
        return self._full(sess, now)

    # ---------------------------------------------------------------- branches
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
        source_id = check_id(source_id, "source_id")
        if from_checkpoint is not None:
            check_id(from_checkpoint, "from_checkpoint")
        check_caps(max_branches=max_branches, max_live_per_user=max_live_per_user)
        branch = check_state(branch, "branch")
        now = self.now()
        source = self._get(source_id)
        if owner is not None and source.header.user_id != owner:
            raise SessionNotFoundError(source_id)
        if branch.session_id in self._sessions or self._tombstoned(branch.session_id, now):
            raise SessionValidationError(
                "session_id", f"session {branch.session_id!r} already exists"
            )
        if max_branches is not None and len(self._branches.get(source_id, {})) >= max_branches:
            raise SessionCapacityError(
                f"session {source_id!r} has reached max_branches_per_session={max_branches}"
            )
        if (
            max_live_per_user is not None
            and self._live_count(branch.user_id, now) >= max_live_per_user
        ):
            raise SessionCapacityError(
                f"user {branch.user_id!r} already has {max_live_per_user} live sessions "
                f"(max_sessions_per_user={max_live_per_user})"
            )
        if from_checkpoint is not None:
            cp = self._checkpoints.get(from_checkpoint)
            if cp is None or cp.session_id != source_id:
                raise CheckpointNotFoundError(from_checkpoint)
            point, turns = cp.header, self._checkpoint_turns(cp)
        else:
            point = source.header
            turns = [copy_turn(source.log[s]) for s in source.live]
        state = branch_header(
            copy_state(point, turns=[]),
            branch,
            source_id,
            turns=turns,
            turn_count=len(turns),
            total_tokens=sum(t.tokens_used for t in turns),
            total_cost=sum((t.cost for t in turns), 0.0),
        )
        sess = self._insert(state, now, fork_seq=len(turns))
        return self._record(sess, now)

    async def list_branches(self, session_id: str) -> list[SessionRecord]:
        session_id = check_id(session_id, "session_id")
        now = self.now()
        if session_id not in self._sessions:
            return []  # a missing session has no branches, whatever names it as parent
        return [
            self._record(self._sessions[sid], now) for sid in self._branches.get(session_id, {})
        ]

    # ---------------------------------------------------------------- sweeping
    async def find_expired(self, *, limit: int = 1000) -> list[str]:
        check_count(limit, "limit")
        now = self.now()
        found = [
            (sess.expires_at, sid)
            for sid, sess in self._sessions.items()
            if sess.header.status in LIVE_STATUSES and self.is_past(sess.expires_at, now)
        ]
        found.sort()  # earliest deadline first, as SQL (is_past: every deadline is set)
        return [sid for _, sid in found[:limit]]

    async def mark_expired(self, session_id: str) -> SessionRecord | None:
        session_id = check_id(session_id, "session_id")
        now = self.now()
        sess = self._sessions.get(session_id)
        if sess is None or sess.header.status not in LIVE_STATUSES:
            return None
        if not self.is_past(sess.expires_at, now):
            return None
        sess.header = state_with(sess.header, status=SessionStatus.EXPIRED)
        sess.expires_at = None
        return self._record(sess, now)

    async def find_purgeable(self, *, older_than: datetime, limit: int = 1000) -> list[str]:
        check_count(limit, "limit")
        older_than = check_instant(older_than, "older_than")
        found = [
            sid
            for sid, sess in self._sessions.items()
            if sess.header.status in (SessionStatus.CLOSED, SessionStatus.EXPIRED)
            and sess.header.updated_at < older_than
        ]
        return found[:limit]

    async def forget_user(self, user_id: str, session_ids: Sequence[str]) -> None:
        """Drop the user's index once it holds no session, and the tombstones naming it."""
        from lexigram.ai.session.stores.erasure import names_user

        user_id = check_id(user_id, "user_id")
        index = self._by_user.get(user_id)
        if index is not None and not index.ids:
            del self._by_user[user_id]
        for session_id in [sid for sid in self._tombstones if names_user(sid, user_id)]:
            del self._tombstones[session_id]

    async def purge(self, session_id: str, *, tombstone_until: datetime) -> bool:
        session_id = check_id(session_id, "session_id")
        tombstone_until = check_instant(tombstone_until, "tombstone_until")
        sess = self._sessions.get(session_id)
        if sess is None or sess.header.status not in (SessionStatus.CLOSED, SessionStatus.EXPIRED):
            return False
        await self.delete(session_id)
        self._tombstones[session_id] = tombstone_until
        self._tombstones.move_to_end(session_id)
        self._drop_lapsed(self.now())
        return True

    def _drop_lapsed(self, now: datetime) -> None:
        """Drop lapsed tombstones from the oldest on (each purge; they were kept forever).

        Tombstones go in nearly in the order they lapse (one sweeper's ``tombstone_s``);
        one that lapses before an older neighbour waits for it, or for a look-up.
        """
        tombstones = self._tombstones
        while tombstones:
            session_id, until = next(iter(tombstones.items()))
            if until > now:
                return
            del tombstones[session_id]


def _cost_of(turns: Iterable[SessionTurn]) -> float:
    total = 0.0
    for turn in turns:
        total += turn.cost
    return total


_OWNER_WRITES = ("fork_session", "append_turns", "update_session")


@functools.cache
def _honours_owner(cls: type) -> bool:
    """Whether every write of ``cls`` still takes ``owner`` (a subclass that overrides
    one without it is not handed one: ``supports_owner_guard`` is then false)."""
    return all(
        "owner" in inspect.signature(getattr(cls, name)).parameters for name in _OWNER_WRITES
    )
