"""``OpenAIAgentsSession``: one lexigram session behind the OpenAI Agents SDK ``Session`` protocol.

Every protocol call is one manager call, hence one atomic store operation:

* ``get_items(limit=N)`` -> ``manager.get_turns(id, last=N)`` (reads only the newest N);
* ``add_items(items)`` -> ``manager.add_turns(id, turns)`` (all or nothing);
* ``pop_item()`` -> ``manager.pop_turn(id)``;
* ``clear_session()`` -> ``manager.clear_turns(id)``.

A session that does not exist yet is created on the first call, with exactly the
adapter's id (``manager.create(user_id, session_id=id)``), unless the adapter was
built with ``create_missing=False`` (as :meth:`OpenAIAgentsSession.create` and
:meth:`OpenAIAgentsSession.attach` do).

A write whose caller is cancelled still runs to its end before the cancellation
propagates, so its outcome is settled (as with the SDK's own sessions).

The session's lifecycle rules hold: writes to a closed, expired or suspended session
raise ``SessionClosedError`` / ``SessionExpiredError`` / ``SessionTransitionError``,
and reaching ``max_turns_per_session`` closes it. Reading works in every status.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

from agents.memory.session_settings import SessionSettings
from lexigram.contracts.ai.session import SessionStatus

from lexigram.ai.session.branching.branch_manager import BranchManager
from lexigram.ai.session.exceptions import (
    SessionClosedError,
    SessionExpiredError,
    SessionNotFoundError,
    SessionTransitionError,
    SessionValidationError,
)
from lexigram.ai.session.integrations.openai_agents.errors import SessionTypeError
from lexigram.ai.session.integrations.openai_agents.inputs import (
    check_limit,
    coerce_settings,
    item_error,
)
from lexigram.ai.session.integrations.openai_agents.mapping import (
    item_to_turn,
    turn_to_item,
    turns_to_items,
)
from lexigram.ai.session.manager.finishing import Background, track
from lexigram.ai.session.manager.protocol import SessionManagerAPI
from lexigram.ai.session.validation import MAX_SAFE_INT, check_id

if TYPE_CHECKING:
    from agents.items import TResponseInputItem
    from agents.memory import Session

__all__ = ["OpenAIAgentsSession"]

_T = TypeVar("_T")

#: Attempts to create a missing session whose id another creator holds (see
#: ``OpenAIAgentsSession._after_missing``), and the first pause between them.
_CREATE_ATTEMPTS = 8
_CREATE_PAUSE_S = 0.002


#: How long a cancelled call waits for its write to finish before the cancellation is
#: raised (the write goes on in the background after that).
_SETTLE_S = 1.0
#: Writes left running by cancelled calls (kept referenced until they end).
_BACKGROUND: Background = set()


async def _settle(write: Awaitable[_T], manager: Any = None) -> _T:
    """Run a write to its end even when the caller is cancelled meanwhile.

    The store makes each write atomic; this lets its outcome settle before a
    cancellation propagates, as the SDK's own sessions do, so that the next call
    (the next ``Runner.run``) sees it. The wait is bounded by :data:`_SETTLE_S` and
    by a second cancellation: a write held up longer (a slow ``turn_added`` hook runs
    after the items are stored) goes on in the background, and a caller's timeout
    still bounds the call. The cancellation is re-raised after.
    """
    task = asyncio.ensure_future(write)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({task}, timeout=_SETTLE_S)
        if task.done():
            if not task.cancelled():
                task.exception()  # retrieved: the caller's cancellation wins
        else:
            # The manager's shutdown waits for it (SessionManager.open, the module); a
            # manager without that hook (a wrapper) leaves it in the adapter's own set.
            keep = getattr(manager, "track_background", None)
            if callable(keep):
                keep(task)
            else:
                track(task, _BACKGROUND)
        raise


class OpenAIAgentsSession:
    """A lexigram session that the OpenAI Agents SDK ``Runner`` can keep its history in.

    Satisfies ``agents.memory.Session`` (``isinstance`` holds). Key a conversation by
    your own id, as with the SDK's ``SQLiteSession("user_123")``; the session is
    created with exactly that id on first use::

        session = OpenAIAgentsSession(manager, "user_123")   # no I/O yet
        result = await Runner.run(agent, "Hello", session=session)

    or let :meth:`create` open a session with a random id, or :meth:`attach` wrap
    one that must already exist.

    ``session_settings`` (the SDK's ``SessionSettings`` or a dict) gives the default
    ``limit`` of :meth:`get_items`, exactly as in the SDK's own sessions; an unknown
    key raises :class:`SessionTypeError` (a ``TypeError``, as in the SDK).

    The adapter keeps no event-loop state: one instance may be used from any event
    loop of the process (``Runner.run_sync`` in a worker thread, ``asyncio.run`` in
    several threads), as far as the manager's store allows.
    """

    session_id: str
    session_settings: SessionSettings | None

    def __init__(
        self,
        manager: SessionManagerAPI,
        session_id: str,
        *,
        session_settings: SessionSettings | Mapping[str, Any] | None = None,
        user_id: str | None = None,
        create_missing: bool = True,
    ) -> None:
        """Wrap the session ``session_id`` of ``manager`` (no I/O).

        With ``create_missing`` (the default), the first call that finds no session
        ``session_id`` creates it, with exactly that id, for ``user_id`` (default: the
        session id itself, so ``max_sessions_per_user`` counts each such conversation
        on its own). Concurrent first calls, from any task, loop or process, create
        one session. An id the sweeper purged within the tombstone retention is refused
        on first use with ``SessionValidationError`` (field ``session_id``); one removed
        with ``delete`` is created again, empty. With
        ``create_missing=False`` a missing session raises ``SessionNotFoundError``.
        """
        if not isinstance(manager, SessionManagerAPI):
            raise SessionValidationError(
                "manager", f"expected a SessionManagerAPI, got {type(manager).__name__}"
            )
        self.manager = manager
        self.session_id = check_id(session_id, "session_id")
        self.session_settings = coerce_settings(session_settings)
        self.user_id = self.session_id if user_id is None else check_id(user_id, "user_id")
        if not isinstance(create_missing, bool):
            raise SessionTypeError(
                "create_missing", f"expected a bool, got {type(create_missing).__name__}"
            )
        self.create_missing = create_missing

    # ------------------------------------------------------------ construction
    @classmethod
    async def create(
        cls,
        manager: SessionManagerAPI,
        *,
        user_id: str,
        metadata: dict[str, Any] | None = None,
        system_prompt: str | None = None,
        session_id: str | None = None,
        session_settings: SessionSettings | Mapping[str, Any] | None = None,
    ) -> OpenAIAgentsSession:
        """Create a new ACTIVE session for ``user_id`` now and wrap it.

        ``session_id`` chooses its id (refused with ``SessionValidationError``, field
        ``session_id``, when taken); a random id otherwise. The per-user cap applies
        (``SessionCapacityError``). The adapter does not re-create the session if it
        is deleted later (``SessionNotFoundError``).
        """
        if not isinstance(manager, SessionManagerAPI):
            raise SessionValidationError(
                "manager", f"expected a SessionManagerAPI, got {type(manager).__name__}"
            )
        settings = coerce_settings(session_settings)
        state = await manager.create(
            user_id, metadata, system_prompt=system_prompt, session_id=session_id
        )
        return cls(
            manager,
            state.session_id,
            session_settings=settings,
            user_id=state.user_id,
            create_missing=False,
        )

    @classmethod
    async def attach(
        cls,
        manager: SessionManagerAPI,
        session_id: str,
        *,
        session_settings: SessionSettings | Mapping[str, Any] | None = None,
    ) -> OpenAIAgentsSession:
        """Wrap an existing session; ``SessionNotFoundError`` when there is none.

        The adapter does not create the session if it is deleted later.
        """
        adapter = cls(manager, session_id, session_settings=session_settings, create_missing=False)
        if await manager.get_header(session_id) is None:
            raise SessionNotFoundError(session_id)
        return adapter

    async def _after_missing(self, call: Callable[[], Awaitable[_T]]) -> _T:
        """``call()`` again once the missing session exists (created here, or meanwhile).

        A refused create (field ``session_id``) means the id is taken: by a concurrent
        first call of another task, loop or process, whose session may not be readable
        yet (retried after a short, growing pause), or by a recently purged session
        (the error stands after the last attempt).
        """
        if not self.create_missing:
            raise SessionNotFoundError(self.session_id)
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                await _settle(
                    self.manager.create(self.user_id, session_id=self.session_id),
                    self.manager,
                )
            except SessionValidationError as exc:
                if exc.field != "session_id" or attempt == _CREATE_ATTEMPTS - 1:
                    raise
                await asyncio.sleep(_CREATE_PAUSE_S * 2**attempt)
            try:
                return await call()
            except SessionNotFoundError:
                continue
        raise SessionNotFoundError(self.session_id)  # pragma: no cover - deleted each time

    async def _or_after_missing(self, call: Callable[[], Awaitable[_T]]) -> _T:
        """``call()``, and when the session is missing, again after creating it."""
        try:
            return await call()
        except SessionNotFoundError:
            return await self._after_missing(call)

    async def _check_writable(self) -> None:
        """Refuse a write to this session as ``add_turns`` would (an empty one included).

        The SDK's own sessions check before skipping an empty list; a missing session
        is fine when it would be created on first use.
        """
        header = await self.manager.get_header(self.session_id)
        if header is None:
            if not self.create_missing:
                raise SessionNotFoundError(self.session_id)
            return
        status = SessionStatus(header.status)
        if status is SessionStatus.CLOSED:
            raise SessionClosedError(self.session_id)
        if status is SessionStatus.EXPIRED:
            raise SessionExpiredError(self.session_id)
        if status is SessionStatus.SUSPENDED:
            raise SessionTransitionError(
                self.session_id, SessionStatus.SUSPENDED, SessionStatus.ACTIVE
            )

    def _settings(self) -> SessionSettings | None:
        """``session_settings`` as a ``SessionSettings``: a dict assigned to the attribute
        after construction is taken as the SDK's own sessions take it."""
        settings: Any = self.session_settings
        return (
            settings
            if settings is None or isinstance(settings, SessionSettings)
            else coerce_settings(settings)
        )

    # ----------------------------------------------------------------- protocol
    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The history in order; with ``limit=N`` only the newest N, reading nothing else.

        ``limit=None`` falls back to ``session_settings.limit``; as in the SDK's
        ``SQLiteSession``, ``0`` gives ``[]`` and a negative limit gives everything.
        Each item comes back exactly as it was added.
        """
        resolved = check_limit(limit)
        settings = self._settings()
        if resolved is None and settings is not None:
            resolved = check_limit(settings.limit)
        # Negative, or more than any session holds (sys.maxsize, a common "all"): everything.
        last = None if resolved is None or not 0 <= resolved <= MAX_SAFE_INT else resolved
        try:
            turns = await self.manager.get_turns(self.session_id, last=last)
        except SessionNotFoundError:
            turns = await self._after_missing(
                lambda: self.manager.get_turns(self.session_id, last=last)
            )
        return cast("list[TResponseInputItem]", turns_to_items(turns))

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append ``items`` in one atomic step: all of them are stored, or none.

        Any JSON value is stored exactly as given (see the module
        :mod:`~lexigram.ai.session.integrations.openai_agents.mapping`). One that does
        not survive a JSON round trip unchanged raises :class:`SessionTypeError`
        (a ``TypeError``, as in the SDK) naming it (``items[i]``), and nothing is
        stored. A value every backend cannot keep (an integer beyond 64 bits signed,
        nesting deeper than the manager's limit) raises ``SessionValidationError``
        naming it (``items[i].path``). An empty list stores nothing, but is refused as a
        non-empty one would be by a closed, expired or suspended session (and by a
        missing one without ``create_missing``), as the SDK's own sessions do.
        """
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
            raise SessionTypeError("items", f"expected a list of items, got {type(items).__name__}")
        if not isinstance(items, Sequence):  # a generator or any iterable, as the SDK takes
            items = list(items)
        if not items:
            await self._check_writable()
            return
        now = datetime.now(UTC)
        turns = [
            item_to_turn(item, now=now, field=f"items[{index}]") for index, item in enumerate(items)
        ]
        manager, session_id = self.manager, self.session_id
        try:
            # Settled as a whole: a cancellation during the create-on-first-use still
            # lets the append that follows it run to its end.
            await _settle(
                self._or_after_missing(lambda: manager.add_turns(session_id, turns)), manager
            )
        except SessionValidationError as exc:
            renamed = item_error(exc)
            if renamed is None:
                raise
            raise renamed from exc

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove the newest item and return it (None when the history is empty), atomically."""
        manager, session_id = self.manager, self.session_id
        turn = await _settle(self._or_after_missing(lambda: manager.pop_turn(session_id)), manager)
        return None if turn is None else cast("TResponseInputItem", turn_to_item(turn))

    async def clear_session(self) -> None:
        """Remove every item of the history (the session itself stays, with its settings)."""
        manager, session_id = self.manager, self.session_id
        await _settle(self._or_after_missing(lambda: manager.clear_turns(session_id)), manager)

    # ------------------------------------------------------------- branching
    async def fork(
        self,
        branches: BranchManager,
        branch_name: str,
        *,
        from_checkpoint: str | None = None,
    ) -> OpenAIAgentsSession:
        """Fork this conversation: a new session (same settings) holding its items so far.

        The fork point is now, or ``from_checkpoint``. The branch is an SDK session of
        its own; merge it back with ``branches.merge(self.session_id, branch.session_id)``.
        """
        state = await branches.fork(self.session_id, branch_name, from_checkpoint=from_checkpoint)
        return type(self)(
            self.manager,
            state.session_id,
            session_settings=self._settings(),
            user_id=state.user_id,
            create_missing=False,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(session_id={self.session_id!r})"


if TYPE_CHECKING:

    def _satisfies_protocol(adapter: OpenAIAgentsSession) -> Session:
        """mypy checks here that the adapter matches ``agents.memory.Session``."""
        return adapter
