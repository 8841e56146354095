"""``SessionMiddleware``: binds the caller's own session to each HTTP/WebSocket request.

Pure ASGI (no web framework needed): wrap any ASGI application (Starlette, FastAPI,
...) with it. For each ``http`` and ``websocket`` scope it works out the request's
user and the session it may use (:mod:`.resolution`), binds a
:class:`~lexigram.ai.session.context.SessionContext` for the duration of the call and
stores a view of it in ``scope[config.scope_key]`` (``scope["ai_session"]`` by
default, so that Starlette's own ``SessionMiddleware`` keeps ``scope["session"]``) and,
while no other middleware holds it, in ``scope["session"]`` too (the slot earlier
releases and the specification use; a cookie middleware inside this one replaces it
with its own dict); :func:`current_session` returns the same view whatever the key.
``lifespan`` and any other scope type pass through untouched.

Sessions are created lazily: only when the application calls
``await current_session().ensure()``. The response then carries the new session's
signed cookie (HttpOnly, SameSite, Secure on https, Max-Age = ``session_ttl``) and
its id in the ``config.header_name`` header. Anonymous sessions are bounded
(:mod:`.anonymous`): a refused ``ensure()`` is answered with ``429`` and
``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from lexigram.contracts.ai.session import SessionStatus
from lexigram.contracts.exceptions.config import ConfigurationError
from lexigram.logging import get_logger

from lexigram.ai.session.config import SessionConfig, coerce_config
from lexigram.ai.session.context.session_context import SessionBinding, SessionContext
from lexigram.ai.session.exceptions import (
    SessionClosedError,
    SessionError,
    SessionExpiredError,
    SessionNotFoundError,
    SessionValidationError,
)
from lexigram.ai.session.manager.protocol import SessionManagerAPI
from lexigram.ai.session.middleware.anonymous import (
    AnonymousLimiter,
    AnonymousLimitError,
    Reservation,
    send_too_many,
)
from lexigram.ai.session.middleware.cookies import (
    CookieCodec,
    cookie_secret,
    delete_cookie_header,
    set_cookie_header,
)
from lexigram.ai.session.middleware.identity import ANONYMOUS_PREFIX, UserResolver
from lexigram.ai.session.middleware.resolution import Rejection, Resolution, resolve_request

__all__ = [
    "SHARED_SCOPE_KEY",
    "ASGIApp",
    "ManagerSource",
    "SessionMiddleware",
    "current_session",
]

logger = get_logger(__name__)

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]
ManagerSource = Callable[[], "SessionManagerAPI | Awaitable[SessionManagerAPI]"]
"""A zero-argument callable giving the manager, called on the first request."""

_SESSION_SCOPES = frozenset({"http", "websocket"})
#: The scope slot the view also takes when it is free (see the module docstring).
SHARED_SCOPE_KEY = "session"
_START_MESSAGES = frozenset({"http.response.start", "websocket.accept"})
_GONE = frozenset({Rejection.UNKNOWN, Rejection.CLOSED, Rejection.EXPIRED})


@dataclass
class _Admission:
    """A request's dealings with the anonymous bounds: places reserved, the refusal.

    Each reservation is kept with the binding's count of created sessions when it was
    taken: it was used when the next reservation (or the request's end) finds that
    count grown.
    """

    reserved: list[tuple[Reservation, int]] = field(default_factory=list)
    refused: AnonymousLimitError | None = None


class SessionMiddleware:
    """ASGI middleware binding the caller's own session to each request.

    ``session_manager`` is the :class:`SessionManagerAPI` or a zero-argument
    callable returning it (sync or async, called once on the first request; handy
    when the manager only exists after the application's lifespan booted lexigram).
    ``config`` defaults to the manager's. ``user_resolver`` replaces the default
    reading of ``scope["user"]``. Built without ``app`` (e.g. from the container),
    use :meth:`wrap` to get the middleware around an application.

    Building it checks the cookie secret: in production, cookies enabled and no
    ``cookie_secret`` raise ``ConfigurationError`` naming ``ai_session.cookie_secret``.
    With ``allow_anonymous`` it keeps the anonymous bounds (:attr:`limiter`).
    """

    def __init__(
        self,
        app: ASGIApp | None = None,
        *,
        session_manager: SessionManagerAPI | ManagerSource,
        config: SessionConfig | dict[str, Any] | None = None,
        user_resolver: UserResolver | None = None,
    ) -> None:
        self.app = app
        self._manager: SessionManagerAPI | None = None
        self._source: ManagerSource | None = None
        self._source_lock = asyncio.Lock()
        if isinstance(session_manager, SessionManagerAPI):
            self._manager = session_manager
        elif callable(session_manager):
            self._source = session_manager
        else:
            raise SessionValidationError(
                "session_manager",
                f"expected a SessionManagerAPI or a callable returning one, "
                f"got {type(session_manager).__name__}",
            )
        if config is None:
            if self._manager is None:
                raise SessionValidationError(
                    "config", "required when session_manager is a callable"
                )
            config = self._manager.config
        self.config = coerce_config(config)
        if user_resolver is not None and not callable(user_resolver):
            raise SessionValidationError("user_resolver", "must be callable")
        self.user_resolver = user_resolver
        self.codec: CookieCodec | None = None
        if self.config.cookie_name is not None:
            ttl = self.config.session_ttl
            try:
                secret = cookie_secret(self.config)
            except ConfigurationError as exc:
                # Starlette builds its middleware in the lifespan call, where uvicorn's
                # default ``--lifespan auto`` reports the exception only as "lifespan
                # unsupported": logged here so a server that starts anyway says why.
                logger.error("ai_session.web.refused", error=str(exc))
                raise
            self.codec = CookieCodec(secret, max_age=ttl if ttl > 0 else None)
        self.limiter: AnonymousLimiter | None = None
        if self.config.allow_anonymous and self.codec is not None:
            self.limiter = AnonymousLimiter(
                per_minute=self.config.anonymous_sessions_per_minute,
                max_live=self.config.max_anonymous_sessions,
                read_status=self._read_status,
            )

    async def _read_status(self, session_id: str) -> SessionStatus | None:
        """The stored status of ``session_id`` (None: gone or unreadable)."""
        manager = await self.session_manager()
        try:
            header = await manager.get_header(session_id)
        except SessionError:
            return None
        return None if header is None else header.status

    def wrap(self, app: ASGIApp) -> SessionMiddleware:
        """This middleware (same manager, config, resolver and secret) around ``app``."""
        wrapped = object.__new__(SessionMiddleware)
        wrapped.__dict__.update(self.__dict__)
        wrapped.app = app
        return wrapped

    async def session_manager(self) -> SessionManagerAPI:
        """The manager (resolving the ``session_manager`` callable on first use)."""
        if self._manager is not None:
            return self._manager
        if self._source is None:  # pragma: no cover - __init__ sets one of the two
            raise RuntimeError("SessionMiddleware has no session manager")
        # Concurrent first requests wait for one call of the source, not one call each.
        async with self._source_lock:
            if self._manager is not None:
                return self._manager
            result = self._source()
            if inspect.isawaitable(result):
                result = await result
            if not isinstance(result, SessionManagerAPI):
                raise SessionValidationError(
                    "session_manager",
                    f"the callable returned {type(result).__name__}, not a SessionManagerAPI",
                )
            self._manager = result
            return result

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if self.app is None:
            raise RuntimeError(
                "SessionMiddleware has no application: build it with app= or use .wrap(app)"
            )
        if scope.get("type") not in _SESSION_SCOPES:
            await self.app(scope, receive, send)
            return
        key = self.config.scope_key
        taken = scope.get(key)
        if taken is not None and not isinstance(taken, SessionContext):
            raise ConfigurationError(
                f"ai_session.scope_key: scope[{key!r}] already holds a "
                f"{type(taken).__name__} set by another middleware (Starlette's "
                "SessionMiddleware uses 'session'); set scope_key to a free name such as "
                "'ai_session'"
            )
        manager = await self.session_manager()
        resolution = await resolve_request(
            scope,
            manager=manager,
            config=self.config,
            codec=self.codec,
            user_resolver=self.user_resolver,
        )
        context = SessionContext(manager)
        token = context.bind(resolution.state, user_id=resolution.user_id)
        view = SessionContext().pinned()  # the one view current_session() also returns
        binding = view.binding
        if binding is None:  # pragma: no cover - bind() just set it
            raise RuntimeError("the session binding vanished")
        admission = _Admission()
        if self.limiter is not None and resolution.anonymous_id is not None:
            binding.guard = self._guard(scope, binding, admission)
        scope[key] = view
        if key != SHARED_SCOPE_KEY and SHARED_SCOPE_KEY not in scope:
            scope[SHARED_SCOPE_KEY] = view
        secure = scope.get("scheme") in ("https", "wss")
        started = False
        announced = False  # whether the response start reported a created session
        answered = False  # whether a 500 caused by a refusal was replaced by our 429

        async def send_with_cookie(message: Message) -> None:
            nonlocal started, announced, answered
            kind = message.get("type")
            if answered:
                return  # the body of the error response we replaced
            if not started and kind in _START_MESSAGES:
                started = True
                if admission.refused is not None and message.get("status") == 500:
                    # An error middleware inside (Starlette's ServerErrorMiddleware)
                    # answered the refusal with a 500 before re-raising it.
                    answered = True
                    await send_too_many(scope, send, admission.refused)
                    return
                announced = binding.created
                extra = self._response_headers(binding, resolution, secure=secure)
                if extra:
                    message = dict(message)
                    message["headers"] = [*(message.get("headers") or []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_cookie)
        except AnonymousLimitError as refused:
            if answered:
                return
            if started:
                raise
            await send_too_many(scope, send, refused)
        finally:
            context.unbind(token)
            if not started:  # no response start reached the client, so no id did
                await self._close_unannounced(binding)
            self._settle(binding, admission)
            if started and binding.created and not announced:
                logger.warning(
                    "ai_session.web.session_created_after_response",
                    detail="call ensure() before the response starts so the cookie can be set",
                )

    def _guard(
        self, scope: MutableMapping[str, Any], binding: SessionBinding, admission: _Admission
    ) -> Callable[[str], Awaitable[None]]:
        """The binding guard: admit a new anonymous session or raise ``AnonymousLimitError``."""
        limiter = self.limiter
        client = scope.get("client")
        address = str(client[0]) if client else "unknown"

        async def guard(user_id: str) -> None:
            if limiter is None or not user_id.startswith(ANONYMOUS_PREFIX):
                return
            if admission.reserved and admission.reserved[-1][1] == binding.creates:
                # The previous create of this request failed: give its place back
                # before asking again (a retry in the same request is not refused by it).
                limiter.refund(admission.reserved.pop()[0])
            try:
                reservation = await limiter.reserve(address)
            except AnonymousLimitError as refused:
                admission.refused = refused
                raise
            # ensure()/get_or_create() hold the binding's lock from here to the end of
            # their create, so the count grows by one exactly when this one succeeds.
            admission.reserved.append((reservation, binding.creates))

        return guard

    async def _close_unannounced(self, binding: SessionBinding) -> None:
        """Close the sessions this request created when it ended without starting a
        response: it raised (the error response, Starlette's, is made outside this
        middleware and carries no id), was cancelled (a timeout, a client gone),
        returned without a response, or closed a websocket before accepting it. The
        client could never reach them, and each retry would hold one more place under
        ``max_sessions_per_user`` (and the anonymous bound) until they expired. Their
        turns stay stored. Shielded: a second cancellation does not stop the closes."""
        if binding.manager is None or not binding.made_ids:
            return
        # Cancelled again: the closes go on; the request's own outcome stands.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._close_made(binding, binding.manager))

    async def _close_made(self, binding: SessionBinding, manager: SessionManagerAPI) -> None:
        for session_id in list(binding.made_ids):
            if session_id in binding.ended_ids:
                continue
            try:
                await manager.close(session_id)
            except (SessionNotFoundError, SessionClosedError, SessionExpiredError):
                pass  # deleted, closed or expired meanwhile: nothing holds a place
            except Exception as exc:  # the app's error (if any) is the one to raise
                logger.warning(
                    "ai_session.web.unannounced_session_not_closed", error=repr(exc)
                )
                continue
            else:
                logger.info("ai_session.web.unannounced_session_closed")
            binding.ended_ids.append(session_id)  # stops counting under the anonymous bound

    def _settle(self, binding: SessionBinding, admission: _Admission) -> None:
        """Count the anonymous sessions the request created; refund the reservations
        whose create failed (they count neither in the total nor in the client's window)."""
        limiter = self.limiter
        if limiter is None:
            return
        reserved = admission.reserved
        used = 0
        for index, (reservation, before) in enumerate(reserved):
            after = reserved[index + 1][1] if index + 1 < len(reserved) else binding.creates
            if after > before:
                used += 1
            else:
                limiter.refund(reservation)
        # Each used reservation made one session (``made_ids``, in order; one cancelled
        # in flight may be stored, and is dropped by a re-check when it was not); the
        # ones the request ended stop counting at once.
        made = binding.made_ids
        for index in range(used):
            limiter.settle(made[index] if index < len(made) else None)
        for ended in binding.ended_ids:
            limiter.forget(ended)

    def _response_headers(
        self, binding: SessionBinding, resolution: Resolution, *, secure: bool
    ) -> list[tuple[bytes, bytes]]:
        """The headers to add to the response start for what happened to the session."""
        headers: list[tuple[bytes, bytes]] = []
        state = binding.state
        if binding.created and state is not None:
            headers.append(
                (self.config.header_name.lower().encode("latin-1"), state.session_id.encode())
            )
        if self.codec is None:
            return headers
        anonymous_id = (
            resolution.anonymous_id
            if state is not None and state.user_id == binding.user_id
            else None
        )
        if state is not None and (binding.created or resolution.source == "cookie"):
            # New session, or sliding renewal of the one the cookie carried.
            value = self.codec.encode(state.session_id, anonymous_id)
            headers.append(set_cookie_header(self.config, value, secure=secure))
        elif (
            (
                resolution.cookie_session_id is not None
                and resolution.cookie_session_id in binding.ended_ids
            )
            or resolution.cookie_rejected
            or (resolution.source == "cookie" and resolution.rejection in _GONE)
        ):
            headers.append(delete_cookie_header(self.config, secure=secure))
        return headers

    def __repr__(self) -> str:
        return f"SessionMiddleware(app={self.app!r}, backend={self.config.backend!r})"


def current_session() -> SessionContext:
    """The session view of the request being served (what ``scope[scope_key]`` holds).

    Works in any endpoint or dependency of the request, and in a function it runs in
    a thread through ``asyncio.to_thread`` / Starlette's ``run_in_threadpool`` (which
    carry the request's context), whatever ``scope_key`` is. A thread started by hand
    (``threading.Thread``) does not carry it: pass it the view. Raises
    :class:`SessionError` outside a request served by :class:`SessionMiddleware`.
    """
    return SessionContext().pinned()
