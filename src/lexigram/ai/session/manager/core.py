"""``SessionManagerImpl``: the session lifecycle on top of a :class:`SessionStore`.

Every write is one atomic store operation (no load -> modify -> save), so concurrent
callers in many tasks or processes never lose a turn; the manager adds validation,
notifications (events, hooks), memory recording and automatic checkpoints around it.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any, Self

from lexigram.contracts.ai.memory import MemoryConsolidatorProtocol, WorkingMemoryProtocol
from lexigram.contracts.ai.session import (
    SessionCheckpoint,
    SessionState,
    SessionStatus,
    SessionTurn,
)
from lexigram.contracts.events.protocols.domain import EventBusProtocol
from lexigram.hooks import HookRegistry
from lexigram.logging import get_logger

from lexigram.ai.session.config import SessionConfig, coerce_config
from lexigram.ai.session.events import SessionClosedEvent, SessionCreatedEvent
from lexigram.ai.session.exceptions import (
    CorruptRecordError,
    DuplicateTurnError,
    EncryptionKeyError,
    SessionError,
    SessionExpiredError,
    SessionExpiredTransitionError,
    SessionNotFoundError,
    SessionValidationError,
)
from lexigram.ai.session.hooks import (
    HOOK_CHECKPOINT_CREATED,
    HOOK_CHECKPOINT_RESTORED,
    HOOK_SESSION_CLOSED,
    HOOK_SESSION_STARTED,
    HOOK_TURN_ADDED,
    SessionClosedHook,
    SessionStartedHook,
    SessionTurnAddedHook,
)
from lexigram.ai.session.manager import privacy
from lexigram.ai.session.manager.checkpoints import CheckpointManager
from lexigram.ai.session.manager.finishing import (
    Background,
    detach,
    drain,
    finish,
    shielded,
    track,
    write_then,
)
from lexigram.ai.session.manager.memory import MemoryBridge
from lexigram.ai.session.manager.notifier import SessionNotifier
from lexigram.ai.session.manager.ordering import SessionLocks
from lexigram.ai.session.manager.sealed_guard import SealedSessionGuard
from lexigram.ai.session.manager.state_machine import SessionStateMachine
from lexigram.ai.session.observability import instrumented, telemetry
from lexigram.ai.session.stores.base import (
    SessionPage,
    SessionPatch,
    SessionRecord,
    SessionStore,
    UserErasure,
)
from lexigram.ai.session.validation import (
    check_batch_ids,
    check_id,
    check_mapping,
    check_names,
    check_optional_text,
    check_turns,
    checked_batch,
    new_totals,
)

__all__ = ["SessionManager", "SessionManagerImpl", "new_session_id", "new_turn", "new_turn_id"]

logger = get_logger(__name__)

_A, _S, _C, _E = (
    SessionStatus.ACTIVE,
    SessionStatus.SUSPENDED,
    SessionStatus.CLOSED,
    SessionStatus.EXPIRED,
)


def new_session_id() -> str:
    """A fresh session id: 128 random bits, URL-safe, never starting with ``-``.

    (A leading dash would read as an option on command lines; the redraw costs
    nothing measurable in entropy.)
    """
    while True:
        session_id = secrets.token_urlsafe(16)
        if not session_id.startswith("-"):
            return session_id


def new_turn_id() -> str:
    """A fresh turn id."""
    return uuid.uuid4().hex


def new_turn(
    role: str,
    content: str,
    *,
    tokens_used: int = 0,
    cost: float = 0.0,
    model: str | None = None,
    provider: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    tool_calls: Sequence[Mapping[str, Any]] | None = None,
    timestamp: datetime | None = None,
) -> SessionTurn:
    """A turn with a fresh id, stamped ``timestamp`` (default: now); validated when appended.

    Containers are copied; a value of the wrong type is kept as given, for the
    validation to name it.
    """
    calls: Any = tool_calls
    if tool_calls is None:
        calls = []
    elif isinstance(tool_calls, list | tuple):
        calls = [dict(c) if isinstance(c, Mapping) else c for c in tool_calls]
    meta: Any = metadata
    if metadata is None:
        meta = {}
    elif isinstance(metadata, Mapping):
        meta = dict(metadata)
    return SessionTurn(
        turn_id=new_turn_id(),
        role=role,
        content=content,
        timestamp=datetime.now(UTC) if timestamp is None else timestamp,
        tool_calls=calls,
        metadata=meta,
        tokens_used=tokens_used,
        cost=cost,
        model=model,
        provider=provider,
    )


def _crossed(turn_count: int, appended: int, interval: int) -> bool:
    """Whether an append of ``appended`` turns that left ``turn_count`` crossed a
    multiple of ``interval`` (exactly one append crosses each)."""
    return turn_count // interval > (turn_count - appended) // interval


def _check_user_id(user_id: Any) -> str:
    return check_id(user_id, "user_id")


def _check_session_id(session_id: Any) -> str:
    return check_id(session_id, "session_id")


def _check_mapping(name: str, value: Any) -> dict[str, Any]:
    return check_mapping(value, name)


def _check_names(name: str, value: Any) -> list[str]:
    return check_names(value, name)


class SessionManagerImpl:
    """Creates, advances, checkpoints and closes sessions kept in a :class:`SessionStore`.

    Optional collaborators (``None`` when the application registers none): working
    memory (each turn is recorded as a ``MemoryEntry``), a memory consolidator
    (called with the turns on close when ``consolidate_on_close``), an event bus and
    a hook registry (the framework's ambient registry when none is given).
    """

    def __init__(
        self,
        store: SessionStore,
        config: SessionConfig | dict[str, Any] | None = None,
        working_memory: WorkingMemoryProtocol | None = None,
        consolidator: MemoryConsolidatorProtocol | None = None,
        event_bus: EventBusProtocol | None = None,
        hooks: HookRegistry | None = None,
    ) -> None:
        if not isinstance(store, SessionStore):
            raise SessionValidationError(
                "store", f"expected a SessionStore, got {type(store).__name__}"
            )
        self.config = coerce_config(config)
        self.store = store
        # The store judges expiry; it must use the manager's TTL.
        store.session_ttl = self.config.session_ttl
        self.notifier = SessionNotifier(event_bus, hooks)
        self.memory = MemoryBridge(working_memory, consolidator)
        self.sealed = SealedSessionGuard(store)
        self.checkpoints = CheckpointManager(
            store,
            self.config.max_checkpoints_per_session,
            notifier=self.notifier,
            sealed=self.sealed,
        )
        self.state_machine = SessionStateMachine()
        # Steps after a stored write left running by a cancelled caller (finishing).
        self._finishing: Background = set()
        self._ordered = SessionLocks()

    @classmethod
    def open(
        cls,
        config: SessionConfig | Mapping[str, Any] | None = None,
        *,
        cleanup: bool = False,
        working_memory: WorkingMemoryProtocol | None = None,
        consolidator: MemoryConsolidatorProtocol | None = None,
        event_bus: EventBusProtocol | None = None,
        hooks: HookRegistry | None = None,
        **overrides: Any,
    ) -> AbstractAsyncContextManager[Self]:
        """A manager over its own store, without an Application (``async with``).

        ``config`` is a ``SessionConfig``, a dict or None; ``overrides`` are config
        fields (``database_url=...`` alone selects the sql backend). The store
        is initialised on entry; ``cleanup=True`` also runs the expiry sweeper. Both
        are closed on exit, also when the block raises. See
        :mod:`lexigram.ai.session.manager.standalone`.
        """
        from lexigram.ai.session.manager.standalone import open_manager

        return open_manager(
            config,
            manager_class=cls,
            cleanup=cleanup,
            working_memory=working_memory,
            consolidator=consolidator,
            event_bus=event_bus,
            hooks=hooks,
            **overrides,
        )

    # ----------------------------------------------------------------- create
    @instrumented("create")
    async def create(
        self,
        user_id: str,
        metadata: dict[str, Any] | None = None,
        *,
        system_prompt: str | None = None,
        variables: dict[str, Any] | None = None,
        active_tools: Sequence[str] | None = None,
        active_skills: Sequence[str] | None = None,
        session_id: str | None = None,
    ) -> SessionState:
        """Create an ACTIVE session for ``user_id``.

        ``session_id`` lets the caller key the session by its own id (a chat thread,
        a ticket); it must be a valid id (non-blank, at most ``MAX_ID_LENGTH``
        characters, no control characters) and is refused with
        ``SessionValidationError`` (field ``session_id``) when a session has it or it
        was purged within the tombstone retention. Without it a random id is drawn.
        Raises ``SessionCapacityError`` when the user already has
        ``max_sessions_per_user`` live sessions (checked atomically with the insert).
        ``system_prompt`` defaults to ``config.default_system_prompt``.
        """
        # The checked ids are plain str (a str Enum's value), as every store keys them.
        user_id = _check_user_id(user_id)
        chosen = new_session_id() if session_id is None else _check_session_id(session_id)
        now = self.store.now()  # the store's clock judges the deadline
        prompt = system_prompt if system_prompt is not None else self.config.default_system_prompt
        check_optional_text(prompt, "system_prompt")
        if prompt is not None and type(prompt) is not str:
            prompt = str.__str__(prompt)  # a str subclass: stored as its value
        self.sealed.check_metadata(metadata)
        state = SessionState(
            session_id=chosen,
            user_id=user_id,
            status=_A,
            metadata=_check_mapping("metadata", metadata or {}),
            variables=_check_mapping("variables", variables or {}),
            active_tools=_check_names("active_tools", active_tools or []),
            active_skills=_check_names("active_skills", active_skills or []),
            system_prompt=prompt,
            created_at=now,
            updated_at=now,
        )
        stored = self._store_create(state, chosen=session_id is not None)
        if self.notifier.listened(HOOK_SESSION_STARTED):
            # A caller cancelled during the create or its announcement still has it
            # announced (a retry could not).
            record = await write_then(
                stored, self._finishing, lambda _: lambda: self._announce_created(state)
            )
        else:
            record = await stored
            await self._announce_created(state)
        return record.state

    async def _store_create(self, state: SessionState, *, chosen: bool = False) -> SessionRecord:
        """The store's create of ``state`` (the user's live sessions counted with it).

        ``chosen``: the caller chose the id; an id refused as taken while nothing is
        stored under it was purged recently, and the error says so."""
        try:
            record = await self.store.create_session(
                state, max_live_per_user=self.config.max_sessions_per_user
            )
        except SessionValidationError as exc:
            sid = state.session_id
            if not chosen or exc.field != "session_id" or not exc.problem.endswith("exists"):
                raise
            try:
                stored = await self.store.load_record(sid)
            except SessionError:  # stored, but not readable here (another key, damaged)
                raise exc from None
            if stored is not None:
                raise
            raise SessionValidationError(
                "session_id",
                f"session {sid!r} was purged recently: its id stays reserved while the "
                "purge's tombstone is kept (purge_after_s, at least one hour)",
            ) from None
        self.sealed.seen(record.state)
        telemetry().session_created(backend=self.store.backend_name)
        return record

    async def _announce_created(self, state: SessionState) -> None:
        """The created event and the ``session_started`` hook of a stored session."""
        await self.notifier.notify(
            SessionCreatedEvent(session_id=state.session_id, user_id=state.user_id),
            HOOK_SESSION_STARTED,
            SessionStartedHook(session_id=state.session_id, user_id=state.user_id),
        )

    # ------------------------------------------------------------------ reads
    async def get_state(self, session_id: str) -> SessionState | None:
        """The full state (EXPIRED when idle past ``session_ttl``), or None."""
        state = await self.store.load(_check_session_id(session_id))
        self.sealed.check_state(state)
        return state

    async def get_header(self, session_id: str) -> SessionState | None:
        """The state without its turns (``turns == []``, counters set), or None."""
        record = await self.store.load_record(_check_session_id(session_id))
        if record is None:
            return None
        self.sealed.check_state(record.state)
        return record.state

    async def get_turns(self, session_id: str, *, last: int | None = None) -> list[SessionTurn]:
        """All live turns in order, or only the newest ``last`` without reading the rest."""
        if last is not None and (not isinstance(last, int) or isinstance(last, bool) or last < 0):
            raise SessionValidationError("last", f"must be an integer >= 0, got {last!r}")
        turns = await self.store.get_turns(_check_session_id(session_id), last=last)
        if self.sealed.looks_sealed(turns):
            await self.sealed.check(session_id)
        return turns

    async def list_sessions(
        self,
        user_id: str,
        *,
        status: SessionStatus | str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> SessionPage:
        """A page of the user's sessions (headers, newest first); pass ``next_cursor`` on."""
        _check_user_id(user_id)
        if cursor is not None:
            check_id(cursor, "cursor")
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 10_000:
            raise SessionValidationError("limit", f"must be an integer in 1..10000, got {limit!r}")
        wanted = None
        if status is not None:
            try:
                wanted = SessionStatus(status)
            except ValueError:
                raise SessionValidationError(
                    "status", f"unknown session status {status!r}"
                ) from None
        page = await self.store.list_user_sessions(
            user_id, status=wanted, limit=limit, cursor=cursor
        )
        return self.sealed.split_page(page)

    async def count_live_sessions(self, user_id: str) -> int:
        """How many live sessions the user has (what ``max_sessions_per_user`` counts)."""
        return await self.store.count_live_sessions(_check_user_id(user_id))

    # ----------------------------------------------------------------- turns
    async def add_turn(self, session_id: str, turn: SessionTurn) -> None:
        """Append ``turn`` (see :meth:`add_turns`; errors name ``turn.<field>``)."""
        _check_session_id(session_id)
        await self._append(session_id, checked_batch(turn, "turn"), counted=True)

    async def add_turns(self, session_id: str, turns: Sequence[SessionTurn]) -> SessionState:
        """Append ``turns`` atomically (all or none); return the header after the append.

        Every turn is checked first (``SessionValidationError`` naming
        ``turns[i].<field>``, see :mod:`lexigram.ai.session.validation`), and so are
        the session's totals after the append (``total_tokens`` at most 2**53 - 1,
        ``total_cost`` finite). Raises ``SessionNotFoundError``,
        ``SessionClosedError``, ``SessionExpiredError``, ``SessionTransitionError``
        (suspended), ``SessionCapacityError`` (past ``max_turns_per_session``) and
        ``DuplicateTurnError`` (a turn id already in the session). Reaching the turn
        cap closes the session.
        """
        _check_session_id(session_id)
        checked = check_turns(turns, "turns")
        if not checked:
            raise SessionValidationError("turns", "no turn given")
        if len(checked) > 1:
            check_batch_ids(session_id, checked, "turns")
        try:
            return await self._append(session_id, checked)
        except DuplicateTurnError as exc:
            if exc.field != "turn.turn_id":
                raise
            # Named by its place in the batch, as every other error of the batch is.
            at = next((i for i, t in enumerate(checked) if t.turn_id == exc.turn_id), None)
            if at is None:
                raise
            raise DuplicateTurnError(
                exc.session_id, exc.turn_id, field=f"turns[{at}].turn_id"
            ) from None

    @instrumented("add_turns")
    async def _append(
        self, session_id: str, checked: list[SessionTurn], *, counted: bool = False
    ) -> SessionState:
        """Append a checked batch; ``counted``: the caller returns nothing of the header,
        so the store may leave its private fields unopened (``append_turns_counted``).

        With automatic checkpoints on, appends to one session from this process take
        turns, so that each checkpoint holds the state its crossing append left
        (see :mod:`.ordering`).

        When something follows the append (see :meth:`_append_followed`), the store's
        append runs in a task of its own: a caller cancelled during it still gets what
        follows a stored append (:func:`.finishing.shielded`)."""
        interval = self.config.auto_checkpoint_interval
        if interval is None or interval <= 0:
            stored = self._store_append(session_id, checked, counted)
            if self._append_followed():
                state, closed = await shielded(
                    stored,
                    self._finishing,
                    lambda done: self._finish_cancelled_append(done[0], checked, None, done[1]),
                )
            else:
                state, closed = await stored
            snapshot = None
        else:
            lock = self._ordered.lock(session_id)
            await lock.acquire()
            held = True

            def landed(done: tuple[SessionState, bool]) -> None:
                # The caller was cancelled during the store's append, which was stored:
                # its snapshot is taken under the lock, still held (as below).
                landed_snapshot = None
                try:
                    if _crossed(done[0].turn_count, len(checked), interval):
                        landed_snapshot = asyncio.ensure_future(
                            self._auto_snapshot(session_id, done[0].turn_count)
                        )
                finally:
                    if landed_snapshot is None:
                        lock.release()
                    else:
                        landed_snapshot.add_done_callback(lambda _: lock.release())
                self._finish_cancelled_append(done[0], checked, landed_snapshot, done[1])

            try:
                try:
                    state, closed = await shielded(
                        self._store_append(session_id, checked, counted),
                        self._finishing,
                        landed,
                        lock.release,
                    )
                except asyncio.CancelledError:
                    held = False  # let go by ``landed`` or ``lock.release`` (see shielded)
                    raise
                # Exactly one append crosses each multiple of the interval; its snapshot
                # is taken before the next append on this loop (the lock).
                snapshot = None
                if _crossed(state.turn_count, len(checked), interval):
                    snapshot = asyncio.ensure_future(
                        self._auto_snapshot(session_id, state.turn_count)
                    )
                    try:
                        await asyncio.shield(snapshot)
                    except asyncio.CancelledError:
                        # The snapshot goes on without its caller; the next append waits
                        # for it still (it slipped in before, a regression audit).
                        held = False
                        snapshot.add_done_callback(lambda _: lock.release())
                        detach(self._late_steps(state, snapshot, closed), self._finishing)
                        raise
            finally:
                if held:
                    lock.release()
        # Each step below is skipped without a call when nobody would receive it.
        hook = self.notifier.fires(HOOK_TURN_ADDED)
        if snapshot is not None or hook or closed or self.memory.working_memory is not None:
            await self._after_append(state, checked, snapshot, hook, closed)
        return state

    async def _store_append(
        self, session_id: str, checked: list[SessionTurn], counted: bool
    ) -> tuple[SessionState, bool]:
        """The store's append; the header after it and whether it reached the turn cap."""
        # A batch whose own sums cannot be stored is refused before the session is read.
        new_totals(0, 0.0, checked)
        if self.sealed.write_unchecked(session_id):
            await self.sealed.check(session_id)
        # The store sees the checked batch and does not check it again.
        max_turns = self.config.max_turns_per_session
        if counted:
            result = await self.store.append_turns_counted(
                session_id, checked, max_turns=max_turns
            )
        else:
            result = await self.store.append_turns(session_id, checked, max_turns=max_turns)
        state = result.record.state
        self.sealed.seen(state)
        telemetry().turns_appended(len(checked), backend=self.store.backend_name)
        return state, result.closed_by_cap

    def _append_followed(self) -> bool:
        """Whether something follows an append that a caller cancelled during the
        store's append would lose (automatic checkpoints aside): working memory, a
        ``turn_added`` hook, or what follows a close by the turn cap."""
        return (
            self.memory.working_memory is not None
            or self.notifier.fires(HOOK_TURN_ADDED)
            or self._close_followed()
        )

    def _close_followed(self) -> bool:
        """Whether something follows a close (telemetry aside): an event bus, a
        ``session_closed`` hook, or a consolidation."""
        return self.notifier.listened(HOOK_SESSION_CLOSED) or (
            self.config.consolidate_on_close and self.memory.consolidator is not None
        )

    def _finish_cancelled_append(
        self,
        state: SessionState,
        checked: list[SessionTurn],
        snapshot: asyncio.Future[SessionCheckpoint | None] | None,
        closed_by_cap: bool,
    ) -> None:
        """What follows an append stored after its caller was cancelled, in the
        background: memory, the hook, the automatic checkpoint's announcement (its
        snapshot is under way) and the cap's close."""
        hook = self.notifier.fires(HOOK_TURN_ADDED)
        if (
            snapshot is None
            and not closed_by_cap
            and not hook
            and self.memory.working_memory is None
        ):
            return
        late = self._late_steps(state, snapshot, closed_by_cap)

        async def steps() -> None:
            try:
                await self._record_turns(state, checked, hook)
            except Exception as exc:  # logged; the checkpoint and the close still follow
                logger.warning(
                    "ai_session.after_write_failed", session_id=state.session_id, error=str(exc)
                )
            await late()

        detach(steps, self._finishing)

    def _late_steps(
        self,
        state: SessionState,
        snapshot: asyncio.Future[SessionCheckpoint | None] | None,
        closed_by_cap: bool,
    ) -> Callable[[], Coroutine[Any, Any, None]]:
        """The steps that must follow a stored append even for a cancelled caller: the
        automatic checkpoint's announcement (once its snapshot is taken) and the cap's
        close."""

        async def late() -> None:
            if snapshot is not None:
                taken = await snapshot
                if taken is not None:
                    await self._announce_checkpoint(taken)
            if closed_by_cap:
                await self._after_close(state, reason="max_turns")

        return late

    async def _after_append(
        self,
        state: SessionState,
        checked: list[SessionTurn],
        snapshot: asyncio.Future[SessionCheckpoint | None] | None,
        hook: bool,
        closed_by_cap: bool,
    ) -> None:
        """What follows a stored append: memory and the hook in the caller's task; the
        automatic checkpoint's announcement and the cap's close through
        :mod:`.finishing`, so that a cancelled caller does not lose them."""
        late = self._late_steps(state, snapshot, closed_by_cap)
        try:
            await self._record_turns(state, checked, hook)
        except asyncio.CancelledError:
            if snapshot is not None or closed_by_cap:
                detach(late, self._finishing)
            raise
        if snapshot is not None or closed_by_cap:
            await finish(late, self._finishing)

    async def _record_turns(
        self, state: SessionState, checked: list[SessionTurn], hook: bool
    ) -> None:
        """Record the appended turns in working memory and fire the ``turn_added`` hook."""
        session_id = state.session_id
        if self.memory.working_memory is not None:
            await self.memory.record(session_id, state.user_id, checked)
        if hook:
            await self.notifier.notify(
                None,
                HOOK_TURN_ADDED,
                SessionTurnAddedHook(
                    session_id=session_id,
                    turn_id=checked[-1].turn_id,
                    turn_count=state.turn_count,
                ),
            )

    def track_background(self, task: asyncio.Future[Any]) -> None:
        """Keep ``task`` (a write a cancelled caller left running, such as the Agents SDK
        adapter's) until it ends; :meth:`wait_for_background` waits for it too."""
        track(task, self._finishing)

    async def wait_for_background(self, timeout_s: float = 5.0) -> int:
        """Wait (up to ``timeout_s``) for the steps cancelled callers on this event loop
        left running (an automatic checkpoint, a cap's close); returns how many are
        still running.

        ``SessionManager.open`` and the module call it before closing the store. A
        worker thread's ``asyncio.run`` cancels what its loop still runs when it ends:
        await this before returning from it after a cancelled append.
        """
        return await drain(self._finishing, timeout_s)

    async def add_message(
        self,
        session_id: str,
        role: str,
        content: str,
        *,
        tokens_used: int = 0,
        cost: float = 0.0,
        model: str | None = None,
        provider: str | None = None,
        metadata: dict[str, Any] | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
    ) -> SessionTurn:
        """Build a turn with a fresh id and the store's current time, append it and return it.

        Invalid arguments raise ``SessionValidationError`` naming the parameter.
        """
        turn = new_turn(
            role,
            content,
            tokens_used=tokens_used,
            cost=cost,
            model=model,
            provider=provider,
            metadata=metadata,
            tool_calls=tool_calls,
            timestamp=self.store.now(),
        )
        _check_session_id(session_id)
        # Errors name the parameter (``tokens_used``, ``metadata.foo``).
        await self._append(session_id, checked_batch(turn, ""), counted=True)
        return turn

    async def pop_turn(self, session_id: str) -> SessionTurn | None:
        """Remove and return the newest turn (None when there is none); totals corrected."""
        _check_session_id(session_id)
        if self.sealed.write_unchecked(session_id):
            await self.sealed.check(session_id)  # the turn would come back sealed, and be gone
        return await self.store.pop_turn(session_id)

    async def clear_turns(self, session_id: str) -> int:
        """Remove every turn of the session; returns how many there were."""
        return await self.store.clear_turns(_check_session_id(session_id))

    async def _auto_snapshot(self, session_id: str, turn_count: int) -> SessionCheckpoint | None:
        """The automatic checkpoint's snapshot (announced later); None when it failed."""
        try:
            return await self.checkpoints.snapshot(
                session_id,
                metadata={"auto": True, "turn_count": turn_count},
                include_turns=False,
            )
        except Exception as exc:
            logger.warning(
                "ai_session.auto_checkpoint_failed", session_id=session_id, error=str(exc)
            )
            return None

    async def _announce_checkpoint(self, checkpoint: SessionCheckpoint) -> None:
        """The checkpoint-created event and hook of an automatic checkpoint."""
        try:
            await self.checkpoints.announce(checkpoint)
        except Exception as exc:
            logger.warning(
                "ai_session.auto_checkpoint_failed",
                session_id=checkpoint.session_id,
                error=str(exc),
            )

    # ---------------------------------------------------------------- update
    async def update(
        self,
        session_id: str,
        *,
        variables: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        active_tools: Sequence[str] | None = None,
        active_skills: Sequence[str] | None = None,
        system_prompt: str | None = None,
    ) -> SessionState:
        """Replace the given mutable fields of a live session; return the new header."""
        _check_session_id(session_id)
        check_optional_text(system_prompt, "system_prompt")
        if system_prompt is not None and type(system_prompt) is not str:
            system_prompt = str.__str__(system_prompt)  # a str subclass: stored as its value
        patch = SessionPatch(
            variables=None if variables is None else _check_mapping("variables", variables),
            metadata=None if metadata is None else _check_mapping("metadata", metadata),
            active_tools=None
            if active_tools is None
            else _check_names("active_tools", active_tools),
            active_skills=None
            if active_skills is None
            else _check_names("active_skills", active_skills),
            system_prompt=system_prompt,
        )
        self.sealed.check_metadata(patch.metadata)
        if self.sealed.write_unchecked(session_id):
            await self.sealed.check(session_id)
        record = await self.store.update_session(session_id, patch)
        return record.state

    # ------------------------------------------------------------- lifecycle
    @instrumented("suspend")
    async def suspend(self, session_id: str) -> SessionState:
        """ACTIVE -> SUSPENDED and return the full state (turns included, as ``resume``);
        the session refuses turns until resumed."""
        await self._refuse_unopenable(session_id)
        record = await self._transition(session_id, _S)
        state = await self.store.load(session_id)
        return record.state if state is None else state

    @instrumented("resume")
    async def resume(self, session_id: str) -> SessionState | None:
        """SUSPENDED -> ACTIVE and return the full state; None when the session is unknown.

        ACTIVE -> ACTIVE is not a legal move: resuming an ACTIVE (or CLOSED) session
        raises ``SessionTransitionError``; an EXPIRED one
        ``SessionExpiredTransitionError``, which is both that and ``SessionExpiredError``.
        """
        await self._refuse_unopenable(session_id)
        try:
            await self._transition(session_id, _A)
        except SessionNotFoundError:
            return None
        return await self.store.load(session_id)

    @instrumented("close")
    async def close(self, session_id: str) -> None:
        """ACTIVE/SUSPENDED -> CLOSED; consolidates memory and notifies subscribers."""
        await self._refuse_unopenable(session_id)
        stored = self._transition(session_id, _C)
        if not self._close_followed():
            record = await stored
            await self._after_close(record.state, reason="closed")
            return
        # A caller cancelled during the close or what follows it (the consolidation reads
        # the turns) still has it announced (a retry could not: the session is closed).
        await write_then(
            stored,
            self._finishing,
            lambda done: lambda: self._after_close(done.state, reason="closed"),
        )

    async def _transition(self, session_id: str, to_status: SessionStatus) -> SessionRecord:
        _check_session_id(session_id)
        try:
            return await self.store.transition(
                session_id, to_status, allowed_from=SessionStateMachine.sources_of(to_status)
            )
        except SessionExpiredError:
            # EXPIRED is terminal: an illegal move, and still an expired session.
            raise SessionExpiredTransitionError(session_id, to_status) from None

    async def _refuse_unopenable(self, session_id: str) -> None:
        """Refuse, before anything changes, a session this process cannot open.

        Without ``encryption_keys`` an encrypted session's state (what ``suspend`` and
        ``resume`` return) and turns (what ``close`` consolidates) are sealed text:
        ``EncryptionKeyError`` naming the key id, as for a write (an encrypting store
        refuses a key it lacks itself, see its ``transition``).
        """
        _check_session_id(session_id)
        if self.sealed.write_unchecked(session_id):
            await self.sealed.check(session_id)

    async def consolidate_ended(
        self, session_id: str, user_id: str, turns: Sequence[SessionTurn]
    ) -> None:
        """Hand an ended session's turns to the memory consolidator (close, cap, expiry);
        never the sealed text of an encrypted session this process cannot open."""
        if await self.sealed.sealed_turns(session_id, turns):
            logger.warning("ai_session.memory.sealed_not_consolidated", session_id=session_id)
            return
        await self.memory.consolidate(session_id, user_id, turns)

    async def _after_close(self, header: SessionState, *, reason: str) -> None:
        """What follows a stored end (close, turn cap): consolidation, then the events.

        The end is stored: a failure here (the store unreachable when the consolidation
        reads the turns) is logged, never raised, and the events still fire, so the
        caller is not told the close or the append failed (its retry would then be
        refused, the session being closed) and subscribers hear of it once.
        """
        if self.config.consolidate_on_close and self.memory.consolidator is not None:
            try:
                turns = await self.store.get_turns(header.session_id)
                await self.consolidate_ended(header.session_id, header.user_id, turns)
            except Exception as exc:
                logger.warning(
                    "ai_session.consolidation_failed",
                    session_id=header.session_id,
                    error=str(exc),
                    step="read the ended session's turns",
                )
        telemetry().session_ended(reason, backend=self.store.backend_name)
        duration = (header.updated_at - header.created_at).total_seconds()
        await self.notifier.notify(
            SessionClosedEvent(
                session_id=header.session_id,
                user_id=header.user_id,
                duration_seconds=duration,
                reason=reason,
            ),
            HOOK_SESSION_CLOSED,
            SessionClosedHook(
                session_id=header.session_id, user_id=header.user_id, reason=reason
            ),
        )

    @instrumented("delete")
    async def delete(self, session_id: str) -> bool:
        """Remove the session with its turns and checkpoints; True when it existed."""
        _check_session_id(session_id)
        try:
            existed = await self.store.load_record(session_id) is not None
        except (CorruptRecordError, EncryptionKeyError):
            existed = True  # a damaged record, or one without its key, is removed like any other
        await self.store.delete(session_id)
        return existed

    async def erase_user(self, user_id: str) -> UserErasure:
        """Erase every session of ``user_id`` with branches, checkpoints and turns.

        One atomic step per session; running it again finishes an interrupted run.
        Emits ``SessionUserErasedEvent`` and the ``ai_session.user_erased`` hook.
        A later write to an erased session is refused as for a deleted one.
        """
        return await privacy.erase_user(self.store, self.notifier, user_id)

    async def export_user(self, user_id: str) -> privacy.UserExport:
        """Everything stored about ``user_id`` (sessions, branches, checkpoints, turns).

        ``EncryptionKeyError`` naming the key id when a session of the user needs a key
        this process lacks (no keys, none under that id, or other bytes under it): an
        export is never silently short of what the keys would show. ``damaged`` names
        the records that cannot be decoded, or whose sealed values were altered.
        """
        export = await privacy.export_user(self.store, user_id)
        for session in export.sessions:
            self.sealed.check_state(session.state)
        for session_id in export.damaged:
            # The store lists a session its keys do not open as damaged: say why (a value
            # altered under a data key that opens is damage, not a missing key).
            error = await self.sealed.key_error(session_id)
            if error is not None and not error.value_altered:
                raise error
        return export

    # ----------------------------------------------------------- checkpoints
    @instrumented("checkpoint")
    async def checkpoint(
        self, session_id: str, metadata: dict[str, Any] | None = None
    ) -> SessionCheckpoint:
        """Snapshot the session (O(1) storage); the oldest beyond the retention are pruned."""
        _check_session_id(session_id)
        checked = None if metadata is None else _check_mapping("metadata", metadata)
        if not self.notifier.listened(HOOK_CHECKPOINT_CREATED):
            return await self.checkpoints.create(session_id, checked)  # refuses sealed sessions
        # A caller cancelled while the store takes the checkpoint still has it announced.
        return await write_then(
            self.checkpoints.snapshot(session_id, checked),
            self._finishing,
            lambda done: lambda: self.checkpoints.announce(done),
        )

    @instrumented("restore")
    async def restore(self, checkpoint_id: str) -> SessionState:
        """Put the session back to the checkpoint (ACTIVE); other checkpoints stay valid."""
        check_id(checkpoint_id, "checkpoint_id")
        restoring = self.checkpoints.restore(checkpoint_id)  # refuses sealed sessions
        if not self.notifier.listened(HOOK_CHECKPOINT_RESTORED):
            return await restoring
        # The restore and its announcement run as one task, which a caller cancelled
        # meanwhile does not stop (the announcement follows a stored restore).
        return await shielded(restoring, self._finishing)

    async def list_checkpoints(
        self, session_id: str, *, include_turns: bool = False
    ) -> list[SessionCheckpoint]:
        """The session's checkpoints, oldest first by ``created_at`` (header-only states;
        ``include_turns=True`` also loads their turns)."""
        return await self.checkpoints.list(
            _check_session_id(session_id), include_turns=include_turns
        )

    # ------------------------------------------------------------------ misc
    async def dispose(self) -> None:
        """Container disposal hook: waits for what cancelled callers left running
        (:meth:`wait_for_background`); the provider closes the store.

        Defined so that the container never mistakes :meth:`close` (which closes a
        *session*) for a resource release.
        """
        await self.wait_for_background()

    async def health_check(self) -> bool:
        """Ping the store; raises ``StoreUnavailableError`` when it is unreachable."""
        await self.store.ping()
        return True


SessionManager = SessionManagerImpl
"""Alias of :class:`SessionManagerImpl`."""
