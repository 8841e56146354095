"""The store contract: the lexigram ``SessionStoreProtocol`` plus atomic operations.

Every backend subclasses :class:`SessionStore`. The contract's whole-state methods
(``save``/``load``/``list_sessions``/checkpoints) keep working for code written
against ``SessionStoreProtocol``, but the manager never uses load → modify → save:
it calls the atomic operations below, each of which a backend carries out as one
indivisible step (a lock held without awaiting in memory, one SQL transaction, one
Redis Lua script), so that concurrent writers in many tasks or processes never lose
an update.

Storage model every backend follows
-----------------------------------
* A session has a **header** (the ``SessionState`` fields without ``turns``) and a
  **turn log**. Each appended turn gets a per-session sequence number ``seq``
  (1, 2, 3, ... never reused). A turn is *live* while it is part of the session's
  current history; ``SessionState.turns`` is the live turns in ``seq`` order.
* Appending never rewrites earlier turns: it adds one log entry and updates the
  header's counters.
* A **checkpoint** stores the header fields plus the ``seq`` ranges of the turns that
  were live (``[(first, last), ...]``, one range unless the session was restored
  before), so it costs O(1) storage whatever the session's length.
* **Restore** makes exactly the checkpoint's turns live again and the rest not
  live; turns are never deleted by a restore, so every other checkpoint stays
  restorable. ``pop_turn``/``clear_turns`` only end a turn's liveness too.
* Log entries that are neither live nor named by a checkpoint may be garbage
  collected by a backend at any time.
* Turn ids are unique among the *live* turns of a session.
* ``expires_at`` = ``updated_at + session_ttl`` (none when the TTL is 0) is kept with
  the header; a live (ACTIVE/SUSPENDED) session whose ``expires_at`` has passed is
  *reported* EXPIRED by every read, and a write to it raises
  :class:`SessionExpiredError`. Only ``mark_expired`` (the sweeper) stores the
  EXPIRED status, so exactly one caller observes and reports each expiry.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Generic, TypeVar

from lexigram.contracts.ai.session import (
    SessionCheckpoint,
    SessionState,
    SessionStatus,
    SessionTurn,
)

from lexigram.ai.session.exceptions import (
    CorruptRecordError,
    SessionNotFoundError,
    SessionValidationError,
)
from lexigram.ai.session.validation import (
    MAX_DURATION_S,
    check_id,
    check_instant,
    utc_instant,
)

__all__ = [
    "KEY_ENVELOPE_FIELD",
    "LIVE_STATUSES",
    "AppendResult",
    "BatchOutcome",
    "Clock",
    "SessionPage",
    "SessionPatch",
    "SessionRecord",
    "SessionStore",
    "StoredTurns",
    "TurnRange",
    "TurnReuse",
    "UserErasure",
    "check_fork_seq",
    "compress_seqs",
    "envelope_of",
    "holds_key",
    "refuse_key_field",
    "utcnow",
]

Clock = Callable[[], datetime]
TurnRange = tuple[int, int]
#: Page size of the derived :meth:`SessionStore.list_sessions`.
_LIST_PAGE = 100

T = TypeVar("T")

#: How many single-id calls the default batch methods run at once.
BATCH_CONCURRENCY = 16

#: Statuses of a session that still accepts work (subject to its deadline).
LIVE_STATUSES = frozenset({SessionStatus.ACTIVE, SessionStatus.SUSPENDED})


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def compress_seqs(seqs: Sequence[int]) -> list[TurnRange]:
    """Compress ascending sequence numbers into inclusive ``(first, last)`` ranges."""
    ranges: list[TurnRange] = []
    for seq in seqs:
        if ranges and ranges[-1][1] + 1 == seq:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return ranges


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A stored session's header with the store's bookkeeping.

    ``state`` has ``turns == []``; its ``status`` is already the *effective* one
    (EXPIRED when the deadline has passed). ``fork_seq`` is the last ``seq`` a
    branch inherited from its source (None for a session that is not a branch).
    """

    state: SessionState
    expires_at: datetime | None = None
    fork_seq: int | None = None
    last_seq: int = 0


def check_fork_seq(fork_seq: Any, state: SessionState) -> int | None:
    """``fork_seq`` of :meth:`SessionStore.create_session` when valid for ``state``.

    None, or an int (not a bool) in ``0..len(state.turns)`` for a state with a
    ``parent_session_id``; else ``SessionValidationError`` naming ``fork_seq``.
    """
    if fork_seq is None:
        return None
    if isinstance(fork_seq, bool) or not isinstance(fork_seq, int):
        raise SessionValidationError(
            "fork_seq", f"expected an integer or None, got {type(fork_seq).__name__}"
        )
    if not state.parent_session_id:
        raise SessionValidationError(
            "fork_seq", "only a branch (a state with parent_session_id) has a fork point"
        )
    if not 0 <= fork_seq <= len(state.turns):
        raise SessionValidationError(
            "fork_seq",
            f"must be in 0..{len(state.turns)} (the number of state.turns), got {fork_seq}",
        )
    return int(fork_seq)


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Outcome of :meth:`SessionStore.append_turns`."""

    record: SessionRecord
    closed_by_cap: bool = False
    first_seq: int = 0


@dataclass(frozen=True, slots=True)
class BatchOutcome(Generic[T]):
    """Outcome of a batched sweep call (:meth:`SessionStore.mark_expired_batch`, ``purge_batch``).

    ``done`` holds what this call changed (records it expired, ids it purged), each
    session at most once and only for the one caller that changed it, in the order of
    the ids given. ``damaged``
    names sessions whose stored record could not be decoded (with the error);
    ``failed`` those whose call failed otherwise. Ids in none of the three were
    left as they were (not due, not ended, gone, or taken by another sweeper).
    """

    done: list[T] = field(default_factory=list)
    damaged: list[tuple[str, CorruptRecordError]] = field(default_factory=list)
    failed: list[tuple[str, Exception]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SessionPage:
    """One page of a user's sessions (headers, newest first) and the cursor to the next.

    It also behaves as the sequence of its items (``len``, iteration, indexing).
    ``damaged`` lists the ids of sessions on this page whose stored record could not
    be decoded: they are left out of ``items`` instead of failing the whole listing.
    """

    items: list[SessionState]
    next_cursor: str | None = None
    damaged: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[SessionState]:
        return iter(self.items)

    def __getitem__(self, index: int) -> SessionState:
        return self.items[index]


#: Metadata key under which an encrypted session keeps its key envelope (in clear).
KEY_ENVELOPE_FIELD = "__lexigram_key__"


def envelope_of(state: SessionState) -> str | None:
    """The key envelope a stored header carries, or None for a plaintext session."""
    meta = state.metadata
    if type(meta) is dict:
        envelope = meta.get(KEY_ENVELOPE_FIELD)
        if isinstance(envelope, str):
            return envelope
    return None


def refuse_key_field(metadata: dict[str, Any] | None) -> None:
    """Refuse metadata that a plaintext write would store with the key-envelope field."""
    # Only a mapping can hold the field; anything else is refused by the metadata checks,
    # naming ``metadata`` (``5`` raised TypeError here, ``"x__lexigram_key__"`` "reserved").
    if isinstance(metadata, dict) and KEY_ENVELOPE_FIELD in metadata:
        raise SessionValidationError(
            f"metadata.{KEY_ENVELOPE_FIELD}", "is reserved for encryption at rest"
        )


def holds_key(metadata: Any, key_guard: str | None) -> bool:
    """Whether a header's ``metadata`` passes ``key_guard`` (None: no guard)."""
    if key_guard is None:
        return True
    return type(metadata) is dict and metadata.get(KEY_ENVELOPE_FIELD) == key_guard


@dataclass(frozen=True, slots=True)
class StoredTurns:
    """A session's live turns as a backend read them, in order, before decoding.

    Either each turn's stored text (``texts``: ``str`` or ``bytes``, as the backend
    holds them) or all of them joined into one JSON array (``array``); ``count``
    turns either way. See :meth:`SessionStore.load_reusing`.
    """

    count: int
    texts: Sequence[str | bytes] | None = None
    array: str | bytes | None = None


#: Offered to a backend's whole read by a store wrapping it: the turns standing for
#: ``StoredTurns`` under the header read with them (its ``turns`` empty), or None to
#: have the backend decode them as usual (see :meth:`SessionStore.load_reusing`).
TurnReuse = Callable[[SessionState, StoredTurns], "list[SessionTurn] | None"]


@dataclass(frozen=True, slots=True)
class SessionPatch:
    """Replacement values for a session's mutable header fields; None = unchanged."""

    variables: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    active_tools: list[str] | None = None
    active_skills: list[str] | None = None
    system_prompt: str | None = None
    clear_system_prompt: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def is_empty(self) -> bool:
        """True when the patch changes nothing."""
        return (
            self.variables is None
            and self.metadata is None
            and self.active_tools is None
            and self.active_skills is None
            and self.system_prompt is None
            and not self.clear_system_prompt
        )


@dataclass(frozen=True, slots=True)
class UserErasure:
    """What :meth:`SessionStore.erase_user` removed for one user.

    ``sessions`` are the erased ids (the user's sessions and their branches), with
    how many ``checkpoints`` and live ``turns`` they held; ``damaged`` the erased
    sessions whose record could not be decoded (counted without their contents).
    ``complete`` is False when a session of the user was still listed afterwards
    (a concurrent create, or a failure): run the erasure again to finish it.
    """

    user_id: str
    sessions: list[str] = field(default_factory=list)
    checkpoints: int = 0
    turns: int = 0
    damaged: list[str] = field(default_factory=list)
    complete: bool = True


class SessionStore(abc.ABC):
    """Base class of every session store (see the module docstring for the model).

    Errors: operations on a missing session raise ``SessionNotFoundError``; writes
    that need a live session raise ``SessionClosedError`` (CLOSED) or
    ``SessionExpiredError`` (EXPIRED, or deadline passed). Every check happens
    inside the same atomic step as the write it guards.
    """

    #: Name under which the backend is registered (``SessionConfig.backend``).
    backend_name: ClassVar[str] = ""
    #: Whether ``append_turns``, ``update_session`` and ``create_checkpoint`` honour
    #: ``key_guard`` (see :func:`holds_key`). The encrypted store guards its writes
    #: only on a backend that does; on others a write racing a re-creation of the
    #: session elsewhere can be sealed under the old data key (docs/privacy.md).
    supports_key_guard: ClassVar[bool] = False
    #: Whether ``fork_session``, ``append_turns`` and ``update_session`` honour
    #: ``owner``: the step applies only while the session belongs to that user.
    #: Without it, a fork or merge racing the deletion of its session and a
    #: re-creation of that id by another user can mix two users' data.
    supports_owner_guard: bool = False

    def __init__(self, *, session_ttl: int = 0, clock: Clock | None = None) -> None:
        self.session_ttl = session_ttl
        self.clock: Clock = clock or utcnow

    @property
    def session_ttl(self) -> int:
        """Seconds a session may stay idle before it expires (0: never)."""
        return self._session_ttl

    @session_ttl.setter
    def session_ttl(self, value: int) -> None:
        # Bounded as in SessionConfig: a TTL of 10**12 s overflowed every deadline
        # (OverflowError on the first create) when a store was built directly.
        if type(value) is not int or not 0 <= value <= MAX_DURATION_S:
            raise SessionValidationError(
                "session_ttl", f"must be an integer in 0..{MAX_DURATION_S} seconds, got {value!r}"
            )
        self._session_ttl = value

    # ------------------------------------------------------------------ helpers
    def now(self) -> datetime:
        """The store's current time, in UTC (a clock's naive time is taken as UTC)."""
        return utc_instant(self.clock())

    def deadline_for(self, updated_at: datetime) -> datetime | None:
        """``updated_at + session_ttl``, or None when sessions do not expire.

        A deadline past year 9999 (a whole state saved with such an ``updated_at``) is
        refused naming ``state.updated_at`` (it raised a bare ``OverflowError``).
        """
        if self.session_ttl <= 0:
            return None
        try:
            return updated_at + timedelta(seconds=self.session_ttl)
        except OverflowError:
            raise SessionValidationError(
                "state.updated_at",
                f"{updated_at.isoformat()} with session_ttl={self.session_ttl} gives a "
                "deadline past year 9999, which no backend stores",
            ) from None

    @staticmethod
    def is_past(expires_at: datetime | None, now: datetime) -> bool:
        """Whether a deadline has passed at ``now``."""
        return expires_at is not None and expires_at <= now

    # ---------------------------------------------------------------- lifecycle
    async def initialize(self) -> None:  # noqa: B027 - optional hook
        """Prepare the backend (create tables, load scripts, check the connection)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections. The store may not be used afterwards."""

    async def ping(self) -> None:  # noqa: B027 - optional hook
        """Round-trip to the backend; raise ``StoreUnavailableError`` when unreachable."""

    # ----------------------------------------------------- contract (whole state)
    @abc.abstractmethod
    async def save(self, state: SessionState) -> None:
        """Create or replace a whole session: header and live turns (O(n); compat path).

        Refused with ``SessionNotFoundError`` for an id purged within the tombstone
        retention, so a late write cannot bring a purged session back. A live state
        (ACTIVE or SUSPENDED) saved over a stored session that is CLOSED or EXPIRED
        (stored so, or past its deadline) is refused in the same atomic step with
        ``SessionClosedError`` / ``SessionExpiredError``: a stale copy never makes an
        ended session live again. An ended state may replace anything.
        """

    async def load(self, session_id: str) -> SessionState | None:
        """The full state (header + live turns) or None.

        Derived here from :meth:`load_record` and :meth:`get_turns` (two reads; a
        backend that can read both at once, or in one snapshot, overrides it).
        """
        record = await self.load_record(session_id)
        if record is None:
            return None
        try:
            turns = await self.get_turns(session_id)
        except SessionNotFoundError:
            return None  # deleted between the two reads
        return replace(record.state, turns=turns)

    async def load_reusing(self, session_id: str, reuse: TurnReuse) -> SessionState | None:
        """:meth:`load`, offering ``reuse`` the live turns' stored texts before decoding.

        Optional: a store wrapping this one (the encrypted store) may already hold the
        turns those exact texts stand for. A backend whose whole read has its turns'
        stored texts calls ``reuse(header, StoredTurns(...))`` once, with the header
        read in the same snapshot (``turns`` empty), and when it returns turns uses
        them instead of decoding the texts. The default ignores ``reuse``.
        """
        return await self.load(session_id)

    @abc.abstractmethod
    async def delete(self, session_id: str) -> None:
        """Remove a session, its turns and its checkpoints. Unknown ids are ignored."""

    async def list_sessions(self, user_id: str) -> list[SessionState]:
        """Every session of ``user_id`` as full states, oldest first (compat; prefer
        ``list_user_sessions``).

        Derived here from :meth:`list_user_sessions` and :meth:`load`; a session
        deleted meanwhile is left out.
        """
        newest_first: list[SessionState] = []
        cursor: str | None = None
        while True:
            page = await self.list_user_sessions(user_id, limit=_LIST_PAGE, cursor=cursor)
            newest_first.extend(page.items)
            cursor = page.next_cursor
            if cursor is None or not page.items:
                break
        found = [await self.load(header.session_id) for header in reversed(newest_first)]
        return [state for state in found if state is not None]

    @abc.abstractmethod
    async def save_checkpoint(self, checkpoint: SessionCheckpoint) -> None:
        """Store a checkpoint given whole (its state's turns kept inline; compat path)."""

    @abc.abstractmethod
    async def load_checkpoint(self, checkpoint_id: str) -> SessionCheckpoint | None:
        """A checkpoint with its full state, or None."""

    async def list_checkpoints(self, session_id: str) -> list[SessionCheckpoint]:
        """A session's checkpoints with full states, oldest first.

        Derived here from :meth:`list_checkpoint_headers` and :meth:`load_checkpoint`
        (one read per checkpoint; a checkpoint deleted meanwhile is left out). A
        backend that reads them all at once overrides it.
        """
        found = [
            await self.load_checkpoint(header.checkpoint_id)
            for header in await self.list_checkpoint_headers(session_id)
        ]
        return [checkpoint for checkpoint in found if checkpoint is not None]

    @abc.abstractmethod
    async def delete_checkpoint(self, checkpoint_id: str) -> bool:
        """Delete one checkpoint; True when it existed.

        When the session's ``checkpoint_id`` names it, it moves to the deleted
        checkpoint's parent.
        """

    # ------------------------------------------------------------ atomic: create
    @abc.abstractmethod
    async def create_session(
        self,
        state: SessionState,
        *,
        max_live_per_user: int | None = None,
        fork_seq: int | None = None,
    ) -> SessionRecord:
        """Insert a new session (header and ``state.turns`` as its first live turns).

        Atomically refuses with ``SessionCapacityError`` when ``user_id`` already has
        ``max_live_per_user`` live (ACTIVE/SUSPENDED, deadline not passed) sessions,
        and with ``SessionValidationError`` (field ``session_id``) when the id exists
        or was purged recently.

        ``fork_seq`` (optional; a branch written whole, as an import does): the last
        ``seq`` the branch inherited from its parent. The turns get ``seq`` 1..n, so it
        is how many of the first ``state.turns`` were inherited; the record's
        ``fork_seq`` is then that value, and a merge of the branch takes only the turns
        after it (``get_turns(after_seq=fork_seq)``). It must be an int in
        ``0..len(state.turns)`` and given only with ``state.parent_session_id``: anything
        else is refused with ``SessionValidationError`` naming ``fork_seq`` before
        anything is written (:func:`check_fork_seq`, the same on every backend).
        Without it the record's ``fork_seq`` is None, as before. A store written for the
        earlier contract (no such keyword) still works for everything but such an
        import, which refuses the document naming the branch.
        """

    # -------------------------------------------------------------------- reads
    @abc.abstractmethod
    async def load_record(self, session_id: str) -> SessionRecord | None:
        """The header and bookkeeping without reading any turn, or None."""

    @abc.abstractmethod
    async def get_turns(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after_seq: int | None = None,
        limit: int | None = None,
    ) -> list[SessionTurn]:
        """Live turns in order, reading only what is asked for.

        ``last=K``: only the newest K. ``after_seq=S``: only turns with ``seq > S``
        (oldest first), at most ``limit`` of them. Raises ``SessionNotFoundError``.
        """

    @abc.abstractmethod
    async def get_turn_seqs(
        self, session_id: str, *, after_seq: int | None = None, limit: int | None = None
    ) -> list[tuple[int, SessionTurn]]:
        """Like ``get_turns`` (oldest first) but with each turn's ``seq``; for paging."""

    @abc.abstractmethod
    async def list_user_sessions(
        self,
        user_id: str,
        *,
        status: SessionStatus | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> SessionPage:
        """A page of ``user_id``'s session headers, newest first, filtered by effective status."""

    @abc.abstractmethod
    async def count_live_sessions(self, user_id: str) -> int:
        """How many live sessions ``user_id`` has (what the per-user cap counts)."""

    async def id_taken(self, session_id: str) -> bool:
        """Whether :meth:`create_session` would refuse ``session_id`` as taken right now.

        True when a session (readable or damaged) is stored under it, or it was purged
        and its tombstone is still in force. Read only; what lets a caller (the CLI's
        ``import``) check a whole batch of ids before it writes any. The default sees
        stored sessions only: a backend keeping tombstones overrides it.
        """
        try:
            return await self.load_record(check_id(session_id, "session_id")) is not None
        except CorruptRecordError:
            return True

    # ------------------------------------------------------------ atomic: writes
    @abc.abstractmethod
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
        """Append ``turns`` (all or none) and update the counters in one step.

        ``patch``, when given, replaces header fields in the same step (a merge
        carries the branch's variables this way; a group session its turn state).
        ``key_guard`` (stores with :attr:`supports_key_guard`), when given: the step
        applies only while the session's stored metadata holds this key envelope
        (:func:`holds_key`), else ``DataKeyChangedError`` right after the existence
        check, with nothing written. ``owner`` (stores with
        :attr:`supports_owner_guard`), when given: the step applies only while the
        session belongs to that user, else ``SessionNotFoundError`` with nothing
        written (a merge read the parent before; its id may now hold another user's
        session).

        Checks, in this order, inside the step: the session exists
        (``SessionNotFoundError``); the cap (``turn_count >= max_turns`` or the batch
        would pass it: ``TurnLimitReachedError`` / ``SessionCapacityError``); CLOSED
        (``SessionClosedError``); EXPIRED or deadline passed
        (``SessionExpiredError``); SUSPENDED (``SessionTransitionError(id,
        suspended, active)``); a turn id already live or repeated in the batch
        (``DuplicateTurnError``). Then: log entries with the next seqs, ``turn_count``,
        ``total_tokens``, ``total_cost`` incremented, ``updated_at`` = now, deadline
        pushed; when ``turn_count`` reaches ``max_turns`` the status becomes CLOSED in
        the same step (``closed_by_cap``).
        """

    async def append_turns_counted(
        self, session_id: str, turns: Sequence[SessionTurn], *, max_turns: int | None = None
    ) -> AppendResult:
        """:meth:`append_turns` for a caller that reads only the reply's ids, status and counters.

        The same append, with the same checks and errors. The reply's state always
        carries the ids, ``user_id``, status, times and counters; a store may leave its
        ``metadata``, ``variables`` and ``system_prompt`` empty when the append did not
        close the session (``closed_by_cap`` false), which saves the encrypting store
        opening them on every turn. By default this is :meth:`append_turns`.
        """
        return await self.append_turns(session_id, turns, max_turns=max_turns)

    @abc.abstractmethod
    async def update_session(
        self,
        session_id: str,
        patch: SessionPatch,
        *,
        key_guard: str | None = None,
        owner: str | None = None,
    ) -> SessionRecord:
        """Replace the mutable header fields named by ``patch`` on a live session.

        ``key_guard`` and ``owner`` as for :meth:`append_turns`.
        """

    @abc.abstractmethod
    async def transition(
        self,
        session_id: str,
        to_status: SessionStatus,
        *,
        allowed_from: frozenset[SessionStatus],
    ) -> SessionRecord:
        """Compare-and-set the status.

        Refuses with ``SessionTransitionError(id, current, to)`` when the effective
        current status is not in ``allowed_from``. A session whose deadline passed
        raises ``SessionExpiredError`` (unless ``to_status`` is EXPIRED and EXPIRED is
        allowed). ``updated_at`` becomes now.
        """

    @abc.abstractmethod
    async def pop_turn(self, session_id: str) -> SessionTurn | None:
        """End the newest live turn's liveness and return it (None when empty); totals corrected."""

    @abc.abstractmethod
    async def clear_turns(self, session_id: str) -> int:
        """End every live turn's liveness; totals to zero; returns how many there were."""

    # -------------------------------------------------------- atomic: checkpoints
    @abc.abstractmethod
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
        """Snapshot the session in one step; return it and the ids pruned for retention.

        The snapshot is the header fields plus the live turn ranges. Its parent is the
        session's current ``checkpoint_id``, which then becomes ``checkpoint_id``.
        Beyond ``max_checkpoints`` the oldest of the session's checkpoints are deleted.
        With ``include_turns=False`` the returned state has ``turns == []``.
        Works on a session of any status. ``key_guard`` as for :meth:`append_turns`
        (the checkpoint's metadata was sealed under that key).
        """

    @abc.abstractmethod
    async def restore_checkpoint(self, checkpoint_id: str) -> SessionState:
        """Put the session back to the checkpoint in one step and return the full state.

        Header fields and live turns become the checkpoint's; status ACTIVE;
        ``checkpoint_id`` = this checkpoint; ``updated_at`` = now. Refused on a
        CLOSED/EXPIRED session. Raises ``CheckpointNotFoundError``.
        """

    @abc.abstractmethod
    async def list_checkpoint_headers(self, session_id: str) -> list[SessionCheckpoint]:
        """A session's checkpoints, oldest first, with header-only states (no turns read)."""

    # ------------------------------------------------------------ atomic: branches
    @abc.abstractmethod
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
        """Create ``branch`` (a header: new id and branch name set) in one step.

        Its ``parent_session_id`` is ``source_id`` unless the header names another
        parent. Its turns are the source's live turns now, or the checkpoint's turns;
        its header fields (variables, metadata, tools, skills, prompt) come from the
        same point, its ``turn_count`` and totals are counted and summed over the turns
        it copied; ``fork_seq`` records the last inherited ``seq``.
        Refused with ``SessionCapacityError`` when the source already has
        ``max_branches`` branches (sessions whose ``parent_session_id`` is the source)
        or the user has ``max_live_per_user`` live sessions. ``owner`` (stores with
        :attr:`supports_owner_guard`), when given: the source must belong to that
        user inside the step, else ``SessionNotFoundError`` with nothing written (the
        session the caller read is gone; its id now holds someone else's).
        """

    @abc.abstractmethod
    async def list_branches(self, session_id: str) -> list[SessionRecord]:
        """Sessions whose ``parent_session_id`` is ``session_id``, oldest first."""

    # ---------------------------------------------------------------- sweeping
    @abc.abstractmethod
    async def find_expired(self, *, limit: int = 1000) -> list[str]:
        """Ids of sessions still stored as live whose deadline has passed (via an index).

        Earliest deadline first (on Redis by its index, whose score is a lower bound of
        the deadline: see docs/backend-redis.md; on PostgreSQL by the deadline's 5-minute
        bucket, see docs/backend-sql.md); the order is a courtesy, not a promise.
        """

    @abc.abstractmethod
    async def mark_expired(self, session_id: str) -> SessionRecord | None:
        """Mark one session EXPIRED if it is still live and past its deadline.

        Returns the record only to the caller that made the change, so two sweepers
        never both report the same expiry.
        """

    async def mark_expired_batch(
        self, session_ids: Sequence[str], *, concurrency: int = BATCH_CONCURRENCY
    ) -> BatchOutcome[SessionRecord]:
        """:meth:`mark_expired` for many sessions; the records this call expired.

        The default runs :meth:`mark_expired` for each id (``concurrency`` at a time), so a
        store that only implements the single-id method works unchanged; backends
        override it with one statement or one round trip per batch. A damaged record
        is reported in ``damaged`` (its stored status may have been changed to
        EXPIRED by a batched override); the sweeper then quarantines it.
        """
        return await each_id(session_ids, self.mark_expired, concurrency=concurrency)

    async def purge_batch(
        self,
        session_ids: Sequence[str],
        *,
        tombstone_until: datetime,
        concurrency: int = BATCH_CONCURRENCY,
    ) -> BatchOutcome[str]:
        """:meth:`purge` for many sessions; the ids this call removed.

        The default runs :meth:`purge` for each id (``concurrency`` at a time); backends
        override it with one statement or one round trip per batch.
        """

        tombstone_until = check_instant(tombstone_until, "tombstone_until")

        async def one(session_id: str) -> str | None:
            removed = await self.purge(session_id, tombstone_until=tombstone_until)
            return session_id if removed else None

        return await each_id(session_ids, one, concurrency=concurrency)

    @abc.abstractmethod
    async def find_purgeable(self, *, older_than: datetime, limit: int = 1000) -> list[str]:
        """Ids of CLOSED/EXPIRED sessions last updated before ``older_than``."""

    async def quarantine(self, session_id: str) -> None:  # noqa: B027 - optional hook
        """Take a session whose record cannot be decoded out of the sweeper's indexes.

        The sweeper calls this after ``mark_expired``/``purge`` raised
        ``CorruptRecordError`` so that the damaged record is not met again in every
        batch. The built-in stores mark the record (status ``quarantined:<status>`` on
        SQL and Redis) so that every write refuses it before writing, and take it out
        of the per-user count; its content is left for an operator to inspect or
        delete. Must be idempotent and must not need to decode the record.
        """

    # ----------------------------------------------------------------- erasure
    async def erase_session(self, session_id: str) -> bool:
        """Remove one session with everything stored for it, in one atomic step.

        Its header, its turns (live or not), its checkpoints and its index entries
        go; a later write to it is refused as after :meth:`delete`. True when it was
        stored (also when its record could not be decoded). The default is
        :meth:`delete`, which every backend performs as one step.
        """
        try:
            existed = await self.load_record(session_id) is not None
        except CorruptRecordError:
            existed = True
        await self.delete(session_id)
        return existed

    async def forget_user(  # noqa: B027 - optional hook
        self, user_id: str, session_ids: Sequence[str]
    ) -> None:
        """Drop what the store keeps about ``user_id`` beyond its sessions.

        Called by :meth:`erase_user` after it erased ``session_ids``: per-user
        counters, empty indexes, retry replies naming the user or those sessions, the
        tombstones of purged sessions whose id names the user
        (:func:`~lexigram.ai.session.stores.erasure.names_user`: an id chosen after the
        user, as the Agents SDK adapter's default, would keep the erased user's id in
        storage; such an id may then be created again, as after :meth:`delete`), freed
        pages still holding their bytes. The default keeps nothing more.
        """

    async def erase_user(self, user_id: str, *, batch: int = 100) -> UserErasure:
        """Erase every session of ``user_id`` with its branches, checkpoints and turns.

        Each session goes in its own atomic step (:meth:`erase_session`), branches
        before their source, then :meth:`forget_user`; a run that stopped half way
        is finished by running it again. Built from the listing and erase
        primitives, so every backend has it.
        """
        from lexigram.ai.session.stores.erasure import erase_user_sessions

        return await erase_user_sessions(self, user_id, batch=batch)

    @abc.abstractmethod
    async def purge(self, session_id: str, *, tombstone_until: datetime) -> bool:
        """Delete a CLOSED/EXPIRED session with its checkpoints, leaving a tombstone.

        Returns True when this call removed it. Until ``tombstone_until`` the id can
        be neither created nor saved again.
        """


async def each_id(
    session_ids: Sequence[str],
    call: Callable[[str], Awaitable[T | None]],
    *,
    concurrency: int = BATCH_CONCURRENCY,
) -> BatchOutcome[T]:
    """Run ``call`` for each id (at most ``concurrency`` at once) into an outcome.

    A None result means "not changed by this call"; ``CorruptRecordError`` goes to
    ``damaged`` and any other ``Exception`` to ``failed``, so one bad id never
    fails the others. Results keep the order of ``session_ids``.
    """
    for session_id in session_ids:  # a bad id refuses the batch before anything runs
        check_id(session_id, "session_ids")
    gate = asyncio.Semaphore(max(concurrency, 1))
    outcome: BatchOutcome[T] = BatchOutcome()

    async def one(session_id: str) -> T | BaseException | None:
        async with gate:
            try:
                return await call(session_id)
            except Exception as exc:
                return exc

    results = await asyncio.gather(*(one(sid) for sid in dict.fromkeys(session_ids)))
    for session_id, result in zip(dict.fromkeys(session_ids), results, strict=True):
        if isinstance(result, CorruptRecordError):
            outcome.damaged.append((session_id, result))
        elif isinstance(result, Exception):
            outcome.failed.append((session_id, result))
        elif result is not None and not isinstance(result, BaseException):
            outcome.done.append(result)
    return outcome
