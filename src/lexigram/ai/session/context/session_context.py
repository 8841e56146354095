"""``SessionContext``: the session of the current request, held in a context variable.

One module-level :class:`~contextvars.ContextVar` holds the *binding* of the running
request (or task): the bound session header, the user it was resolved for and the
manager that can create a session lazily. Every :class:`SessionContext` instance is a
view of that binding, so a context resolved from the container (a singleton) sees the
session the :class:`~lexigram.ai.session.middleware.SessionMiddleware` bound for the
request being served, and concurrent requests (each in its own task, hence its own
context copy) never see each other's session.

The binding itself is a small mutable object: a session created lazily with
:meth:`SessionContext.ensure` inside a copied context (a thread pool, a child task)
is still seen by the middleware that bound it, which then sets the cookie.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.exceptions import (
    SessionError,
    SessionNotFoundError,
    SessionValidationError,
)
from lexigram.ai.session.manager.core import new_session_id, new_turn
from lexigram.ai.session.manager.ordering import SessionLocks
from lexigram.ai.session.manager.protocol import SessionManagerAPI

__all__ = ["SessionContext", "SessionBinding"]

_LIVE = frozenset({SessionStatus.ACTIVE, SessionStatus.SUSPENDED})
#: ``get_or_create`` outside a request: one look-up-or-create per manager and user at a
#: time in a loop, so concurrent tasks of a worker share one new session (as on the
#: in-memory store) instead of each creating its own.
_STANDALONE_USERS = SessionLocks()


class _Holding:
    """A look-up-or-create holding its (manager, user) turn; ``active`` until it ends."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = True


#: The look-ups-or-creates the current context was started inside, by (manager, user):
#: a hook or subscriber that ``create`` runs inline (or a task it awaits) calling
#: ``get_or_create`` again goes through while that look-up still holds the turn,
#: instead of waiting on its own caller. A task started meanwhile and still running
#: afterwards takes turns again once that look-up has ended.
_CREATING: ContextVar[tuple[tuple[str, _Holding], ...]] = ContextVar(
    "lexigram_ai_session_get_or_create", default=()
)


@dataclass(eq=False)
class SessionBinding:
    """What is bound to one request: its session (if any), its user and a manager.

    ``state`` is None until a session is bound or created. ``created`` tells whether
    :meth:`SessionContext.ensure` created the session during this binding;
    ``creates`` counts the sessions created for it (by ``ensure`` and
    ``get_or_create``, once the manager's ``create`` returned or was cancelled in
    flight) and ``made_ids`` their ids, in order; ``ended`` that
    :meth:`SessionContext.end` closed a session, and ``ended_ids`` which ones (the
    middleware removes the cookie when it named one of them); ``released`` is set
    when the binding is unbound (views then report no session). ``guard``, when set
    (the middleware sets it to bound anonymous sessions), is awaited with the user id
    before a session is created for the binding and refuses by raising.
    """

    state: SessionState | None
    user_id: str | None
    manager: SessionManagerAPI | None
    created: bool = False
    creates: int = 0
    ended: bool = False
    ended_ids: list[str] = field(default_factory=list, repr=False)
    made_ids: list[str] = field(default_factory=list, repr=False)
    released: bool = False
    guard: Callable[[str], Awaitable[None]] | None = field(default=None, repr=False)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    #: The view of this binding handed out by ``pinned()`` of a context without its own
    #: manager (the middleware's and ``current_session()``'s): one object per request.
    view: SessionContext | None = field(default=None, repr=False, compare=False)
    #: Set by :meth:`SessionContext.get_or_create` outside any request (a worker): no
    #: request's user to hold to, so a later call for another user binds in its place.
    standalone: bool = field(default=False, repr=False)


_CURRENT: ContextVar[SessionBinding | None] = ContextVar(
    "lexigram_ai_session_binding", default=None
)


class SessionContext:
    """The session bound to the current request; implements ``SessionContextProtocol``.

    ``session_id`` and ``state`` raise :class:`SessionError` when no session is bound.
    A context built with a ``session_manager`` can create sessions
    (:meth:`get_or_create`); inside a request served by the middleware the request's
    binding also carries the manager, so :meth:`ensure` works on any instance.
    """

    def __init__(
        self,
        session_manager: SessionManagerAPI | None = None,
        *,
        _binding: SessionBinding | None = None,
    ) -> None:
        if session_manager is not None and not isinstance(session_manager, SessionManagerAPI):
            raise SessionValidationError(
                "session_manager",
                f"expected a SessionManagerAPI, got {type(session_manager).__name__}",
            )
        self._manager = session_manager
        self._pinned = _binding

    # ------------------------------------------------------------- binding
    def bind(self, state: SessionState | None, *, user_id: str | None = None) -> Token[Any]:
        """Bind ``state`` (None: no session yet) to the current context; return the token.

        ``user_id`` is the request's user, for whom :meth:`ensure` creates a session
        (defaults to the owner of ``state``). Pass the token to :meth:`unbind`.
        """
        if state is not None and not isinstance(state, SessionState):
            raise SessionValidationError(
                "state", f"expected a SessionState, got {type(state).__name__}"
            )
        if user_id is not None and (not isinstance(user_id, str) or not user_id.strip()):
            raise SessionValidationError(
                "user_id", f"must be a non-empty string or None, got {user_id!r}"
            )
        owner = user_id if user_id is not None else (state.user_id if state is not None else None)
        binding = SessionBinding(state=state, user_id=owner, manager=self._manager)
        return _CURRENT.set(binding)

    def unbind(self, token: Token[Any]) -> None:
        """Undo the :meth:`bind` that returned ``token``; its views then see no session."""
        binding = _CURRENT.get()
        _CURRENT.reset(token)
        if binding is not None:
            binding.released = True

    def pinned(self) -> SessionContext:
        """A view fixed to the binding current now, whatever context it is later used in.

        The middleware stores such a view in ``scope[config.scope_key]``. Raises
        :class:`SessionError` when nothing is bound.
        """
        binding = self._binding()
        if binding is None:
            raise SessionError("no session context is bound to the current request")
        if self._manager is not None:
            return SessionContext(self._manager, _binding=binding)
        if binding.view is None:
            binding.view = SessionContext(_binding=binding)
        return binding.view

    @property
    def binding(self) -> SessionBinding | None:
        """The live binding this context sees (None outside a bound request)."""
        return self._binding()

    def _binding(self) -> SessionBinding | None:
        binding = self._pinned if self._pinned is not None else _CURRENT.get()
        if binding is None or binding.released:
            return None
        return binding

    def _require_state(self) -> SessionState:
        binding = self._binding()
        if binding is None or binding.state is None:
            raise SessionError("no session is bound to the current context")
        return binding.state

    def _require_manager(self, binding: SessionBinding | None) -> SessionManagerAPI:
        manager = binding.manager if binding is not None and binding.manager else self._manager
        if manager is None:
            raise SessionError("this SessionContext has no session manager to create sessions with")
        return manager

    # ---------------------------------------------------------- properties
    @property
    def bound(self) -> bool:
        """Whether a session is bound to the current context."""
        binding = self._binding()
        return binding is not None and binding.state is not None

    @property
    def session_id(self) -> str:
        """The bound session's id; raises :class:`SessionError` when none is bound."""
        return self._require_state().session_id

    @property
    def state(self) -> SessionState:
        """The bound session as last read (header only unless :meth:`refresh` ran).

        Raises :class:`SessionError` when no session is bound.
        """
        return self._require_state()

    @property
    def user_id(self) -> str | None:
        """The user of the current request (an ``anonymous:`` id for anonymous callers)."""
        binding = self._binding()
        return None if binding is None else binding.user_id

    @property
    def created(self) -> bool:
        """Whether the bound session was created during the current request."""
        binding = self._binding()
        return binding is not None and binding.created

    # ------------------------------------------------------------ creation
    async def ensure(
        self,
        *,
        metadata: dict[str, Any] | None = None,
        system_prompt: str | None = None,
        variables: dict[str, Any] | None = None,
    ) -> SessionState:
        """The bound session, creating one for the request's user when none is bound.

        The new session always gets a fresh random id (``new_session_id()``, never one
        a client sent). Raises :class:`SessionError` when the request has no user (not
        authenticated and anonymous sessions not allowed) and
        ``SessionCapacityError`` when the user is at ``max_sessions_per_user``.
        """
        binding = self._binding()
        if binding is None:
            raise SessionError("no session context is bound to the current request")
        async with binding.lock:
            if binding.state is not None:
                return binding.state
            if binding.user_id is None:
                raise _no_user()
            manager = self._require_manager(binding)
            if binding.guard is not None:
                await binding.guard(binding.user_id)
            state = await _create(
                binding,
                manager,
                binding.user_id,
                metadata=metadata,
                system_prompt=system_prompt,
                variables=variables,
            )
            binding.state = state
            binding.created = True
            return state

    async def get_or_create(self, user_id: str) -> SessionState:
        """The bound live session of ``user_id``, else a new session bound in its place.

        Inside a request the user must be the request's user (a
        :class:`SessionValidationError` names ``user_id`` otherwise), and a request
        without a user gets :class:`SessionError`, as from :meth:`ensure`. Outside any
        request (a worker, a script) it returns the user's newest ACTIVE session, or
        creates one, and binds it to the current context (and the tasks it starts
        afterwards); a later call for another user binds that user's session instead.
        Concurrent such calls for one user in one event loop take turns, so they share
        one new session (other loops and processes are not ordered by this).
        """
        if not isinstance(user_id, str) or not user_id.strip():
            raise SessionValidationError("user_id", f"must be a non-empty string, got {user_id!r}")
        binding = self._binding()
        if binding is None or binding.standalone:
            return await self._get_or_create_standalone(user_id, binding)
        if binding.user_id is None:
            raise _no_user()  # as ensure(): a request without a user creates for nobody
        if binding.user_id != user_id:
            raise SessionValidationError("user_id", "is not the user of the current request")
        current = binding.state
        if current is not None and current.user_id == user_id and current.status in _LIVE:
            return current
        async with binding.lock:
            current = binding.state  # again: a concurrent call may have created it meanwhile
            if current is not None and current.user_id == user_id and current.status in _LIVE:
                return current
            manager = self._require_manager(binding)
            if binding.guard is not None:
                await binding.guard(user_id)
            state = await _create(binding, manager, user_id)
            binding.user_id = user_id
            binding.state = state
            binding.created = True
            return state

    async def _get_or_create_standalone(
        self, user_id: str, binding: SessionBinding | None
    ) -> SessionState:
        """:meth:`get_or_create` outside a request (``binding``: a standalone one or None)."""
        manager = self._require_manager(binding)
        if binding is not None and binding.user_id == user_id:
            current = binding.state
            if current is not None and current.status in _LIVE:
                # Re-read: it may have expired or been closed elsewhere since it was bound
                # (a long-lived worker kept handing out a dead session).
                # ACTIVE only, as the look-up below: a suspended session takes no turns.
                fresh = await manager.get_header(current.session_id)
                active = fresh is not None and fresh.status == SessionStatus.ACTIVE
                if fresh is not None and active and fresh.user_id == user_id:
                    binding.state = fresh
                    return fresh
        place = f"{id(manager)}\0{user_id}"
        inside = _CREATING.get()
        if any(p == place and holding.active for p, holding in inside):
            # Re-entered from the look-up holding the turn (a hook of its create).
            state, created = await _newest_or_new(manager, user_id)
        else:
            lock = _STANDALONE_USERS.lock(place)
            async with lock:
                holding = _Holding()
                token = _CREATING.set((*inside, (place, holding)))
                try:
                    state, created = await _newest_or_new(manager, user_id)
                finally:
                    holding.active = False
                    _CREATING.reset(token)
        _CURRENT.set(
            SessionBinding(
                state=state, user_id=user_id, manager=manager, created=created, standalone=True
            )
        )
        return state

    async def end(self) -> None:
        """Close the bound session (e.g. on logout) and unbind it from the request.

        The middleware then deletes the session cookie when the cookie named this
        session (not when the session came from the header or the query and the
        cookie names another). Raises :class:`SessionError` when no session is bound.
        """
        binding = self._binding()
        if binding is None or binding.state is None:
            raise SessionError("no session is bound to the current context")
        manager = self._require_manager(binding)
        async with binding.lock:
            state = binding.state
            if state is None:
                return
            await manager.close(state.session_id)
            binding.state = None
            binding.ended = True
            binding.ended_ids.append(state.session_id)

    # -------------------------------------------------------- conveniences
    async def refresh(self) -> SessionState:
        """Re-read the bound session in full (with its turns) and return it.

        Raises :class:`SessionNotFoundError` (and unbinds the session) when it was
        deleted meanwhile.
        """
        binding = self._binding()
        if binding is None or binding.state is None:
            raise SessionError("no session is bound to the current context")
        state = binding.state
        manager = self._require_manager(binding)
        fresh = await manager.get_state(state.session_id)
        if fresh is None:
            binding.state = None
            raise SessionNotFoundError(state.session_id)
        binding.state = fresh
        return fresh

    async def turns(self, *, last: int | None = None) -> list[SessionTurn]:
        """The bound session's live turns (only the newest ``last`` when given)."""
        state = self._require_state()
        return await self._require_manager(self._binding()).get_turns(state.session_id, last=last)

    async def add_message(
        self,
        role: str,
        content: str,
        *,
        tokens_used: int = 0,
        cost: float = 0.0,
        model: str | None = None,
        provider: str | None = None,
        metadata: dict[str, Any] | None = None,
        tool_calls: Sequence[dict[str, Any]] | None = None,
    ) -> SessionTurn:
        """Append a turn to the bound session and keep :attr:`state` current."""
        binding = self._binding()
        state = self._require_state()
        manager = self._require_manager(binding)
        turn = new_turn(
            role,
            content,
            tokens_used=tokens_used,
            cost=cost,
            model=model,
            provider=provider,
            metadata=metadata,
            tool_calls=tool_calls,
        )
        header = await manager.add_turns(state.session_id, [turn])
        if binding is not None and binding.state is state:
            binding.state = header
        return turn

    def __repr__(self) -> str:
        return f"SessionContext(bound={self.bound})"


async def _create(
    binding: SessionBinding, manager: SessionManagerAPI, user_id: str, **fields: Any
) -> SessionState:
    """``manager.create`` for a request's binding, counted in ``creates`` and
    ``made_ids`` when made, or when cancelled in flight (the manager finishes such a
    create, so it may be stored: the middleware's anonymous bounds count it, and a
    re-check drops it when it was not). The id is drawn here so that it is known then."""
    # Drawn here only under the anonymous bounds (a guard), which must count a create
    # cancelled in flight by its id; otherwise the manager draws it, as always.
    session_id = new_session_id() if binding.guard is not None else None
    if session_id is not None:
        fields["session_id"] = session_id
    try:
        try:
            state = await manager.create(user_id, **fields)
        except TypeError as exc:
            # A manager wrapper whose create() does not take ``session_id`` (the protocol
            # declares it): its own id then, uncounted if cancelled in flight.
            if session_id is None or "session_id" not in str(exc):
                raise
            del fields["session_id"]
            session_id = None
            state = await manager.create(user_id, **fields)
    except Exception:
        raise  # refused: nothing was stored
    except BaseException:
        binding.creates += 1
        if session_id is not None:
            binding.made_ids.append(session_id)
        raise
    binding.creates += 1
    binding.made_ids.append(state.session_id)
    return state


async def _newest_or_new(manager: SessionManagerAPI, user_id: str) -> tuple[SessionState, bool]:
    """The user's newest ACTIVE session, or a new one; and whether it was created."""
    page = await manager.list_sessions(user_id, status=SessionStatus.ACTIVE, limit=1)
    if page.items:
        return page.items[0], False
    return await manager.create(user_id), True


def _no_user() -> SessionError:
    return SessionError(
        "the request has no user: authenticate it, or set "
        "ai_session.allow_anonymous to give anonymous callers sessions"
    )
