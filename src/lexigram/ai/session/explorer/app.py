"""``create_app``: the explorer as a Starlette application.

Pages (server-rendered HTML) and the JSON API under ``/api`` call the same
:class:`.ExplorerService` methods. :class:`.AccessGuard` wraps everything, so the
access rules hold for pages, API and static files alike.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.exceptions import SessionError, SessionValidationError
from lexigram.ai.session.explorer.access import AccessGuard
from lexigram.ai.session.explorer.errors import describe, http_status
from lexigram.ai.session.explorer.jsonable import (
    checkpoint_json,
    page_json,
    record_json,
    tree_json,
    turns_json,
)
from lexigram.ai.session.explorer.pages.analytics import analytics_page
from lexigram.ai.session.explorer.pages.confirm import confirm_page
from lexigram.ai.session.explorer.pages.context import PageContext
from lexigram.ai.session.explorer.pages.layout import message_page
from lexigram.ai.session.explorer.pages.session import session_page
from lexigram.ai.session.explorer.pages.sessions import sessions_page
from lexigram.ai.session.explorer.service import ExplorerService
from lexigram.ai.session.explorer.settings import ExplorerSettings
from lexigram.ai.session.manager.core import SessionManagerImpl

__all__ = ["create_app"]

MAX_FORM_BYTES = 16 * 1024
_ACTIONS = frozenset({"close", "restore", "fork"})
_NOTICES = {
    "closed": "Session closed.",
    "restored": "Checkpoint restored.",
    "forked": "Branch created.",
}

Handler = Callable[[Request], Awaitable[Response]]


def _json(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS, default=str),
        status_code=status,
        media_type="application/json",
    )


def _int(request: Request, name: str, *, low: int, high: int, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SessionValidationError(name, f"must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise SessionValidationError(name, f"must be in {low}..{high}, got {value}")
    return value


def _paging(request: Request) -> tuple[int | None, int]:
    """``after`` (a turn ``seq``) and ``pos`` (the position of the first turn shown)."""
    after = _int(request, "after", low=0, high=2**62, default=None)
    position = _int(request, "pos", low=1, high=2**62, default=1)
    return after, position or 1


def _text(request: Request, name: str) -> str:
    return request.query_params.get(name, "").strip()


def _required(value: str, name: str) -> str:
    if not value:
        raise SessionValidationError(name, "is required")
    return value


class _Explorer:
    """The request handlers, over a service that exists once the app has started."""

    def __init__(self, settings: ExplorerSettings, service: ExplorerService | None) -> None:
        self.settings = settings
        self.service_or_none = service
        self.csrf = secrets.token_urlsafe(32)

    @property
    def service(self) -> ExplorerService:
        if self.service_or_none is None:  # pragma: no cover - only before startup
            raise RuntimeError("the explorer has not started")
        return self.service_or_none

    def ctx(self, request: Request) -> PageContext:
        return PageContext(
            base=request.scope.get("root_path", "").rstrip("/"),
            backend=self.service.backend,
            allow_writes=self.settings.allow_writes,
            csrf=self.csrf,
        )

    def guarded(self, handler: Handler, *, api: bool) -> Handler:
        """``handler`` with session errors answered as JSON (API) or an error page."""

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except SessionError as error:
                status = http_status(error)
                info = describe(error)
                if api:
                    return _json({"error": info}, status)
                page = message_page(self.ctx(request), f"Error {status}", str(info["message"]),
                                    code=str(info["code"]))
                return HTMLResponse(page, status_code=status)

        return run

    # ------------------------------------------------------------------ pages
    async def index(self, request: Request) -> Response:
        ctx = self.ctx(request)
        wanted = _text(request, "session")
        if wanted:
            return RedirectResponse(ctx.session(wanted), status_code=303)
        user_id, status = _text(request, "user"), _text(request, "status")
        cursor = request.query_params.get("cursor") or None
        page = None
        if user_id:
            page = await self.service.sessions(
                user_id, status=status, cursor=cursor, limit=self.settings.page_size
            )
        return HTMLResponse(
            sessions_page(ctx, user_id=user_id, status=status, cursor=cursor, page=page)
        )

    async def session(self, request: Request) -> Response:
        sid = _required(request.query_params.get("id", ""), "id")
        after, position = _paging(request)
        record = await self.service.record(sid)
        limit = self.settings.turns_per_page
        page = await self.service.turns(
            record,
            after=after,
            position=position,
            limit=limit,
            newest=request.query_params.get("view") == "newest",
        )
        html = session_page(
            self.ctx(request),
            record,
            page=page,
            checkpoints=await self.service.checkpoints(sid),
            tree=await self.service.tree(sid),
            limit=limit,
            notice=_NOTICES.get(request.query_params.get("done", "")),
        )
        return HTMLResponse(html)

    async def analytics(self, request: Request) -> Response:
        sid = _required(request.query_params.get("id", ""), "id")
        record = await self.service.record(sid)
        series = await self.service.series(sid)
        return HTMLResponse(analytics_page(self.ctx(request), record, series))

    # ----------------------------------------------------------------- writes
    def _writes_refused(self, request: Request) -> Response | None:
        if not self.settings.allow_writes:
            page = message_page(self.ctx(request), "Read-only",
                                "This explorer is read-only: start it with --allow-writes "
                                "to close, restore or fork sessions.")
            return HTMLResponse(page, status_code=403)
        return None

    async def confirm(self, request: Request) -> Response:
        refused = self._writes_refused(request)
        if refused is not None:
            return refused
        action = request.path_params["action"]
        if action not in _ACTIONS:
            return HTMLResponse(message_page(self.ctx(request), "Not found", "No such action."),
                                status_code=404)
        sid = _required(request.query_params.get("id", ""), "id")
        await self.service.record(sid)
        checkpoint = request.query_params.get("checkpoint") or None
        if action == "restore":
            _required(checkpoint or "", "checkpoint")
        return HTMLResponse(confirm_page(self.ctx(request), action, session_id=sid,
                                         checkpoint_id=checkpoint))

    async def act(self, request: Request) -> Response:
        refused = self._writes_refused(request)
        if refused is not None:
            return refused
        action = request.path_params["action"]
        if action not in _ACTIONS:
            return HTMLResponse(message_page(self.ctx(request), "Not found", "No such action."),
                                status_code=404)
        if not _same_origin(request):
            return HTMLResponse(message_page(self.ctx(request), "Forbidden",
                                             "The form was posted from another site."),
                                status_code=403)
        form = await _read_form(request)
        if not hmac.compare_digest(form.get("csrf", "").encode(), self.csrf.encode()):
            return HTMLResponse(message_page(self.ctx(request), "Forbidden",
                                             "The form's CSRF token is missing or stale; "
                                             "reload the page and try again."),
                                status_code=403)
        sid = _required(form.get("id", ""), "id")
        checkpoint = form.get("checkpoint") or None
        branch_name = form.get("branch_name", "").strip()
        if form.get("confirm") != "yes":
            page = confirm_page(self.ctx(request), action, session_id=sid,
                                checkpoint_id=checkpoint, branch_name=branch_name,
                                problem="Tick the confirmation box to go ahead.")
            return HTMLResponse(page, status_code=400)
        ctx = self.ctx(request)
        if action == "close":
            await self.service.close(sid)
            return RedirectResponse(ctx.session(sid, done="closed"), status_code=303)
        if action == "restore":
            await self.service.restore(sid, _required(checkpoint or "", "checkpoint"))
            return RedirectResponse(ctx.session(sid, done="restored"), status_code=303)
        branch = await self.service.fork(sid, branch_name, from_checkpoint=checkpoint)
        return RedirectResponse(ctx.session(branch.session_id, done="forked"), status_code=303)

    # -------------------------------------------------------------------- API
    async def api_info(self, request: Request) -> Response:
        return _json({"backend": self.service.backend, "allow_writes": self.settings.allow_writes,
                      "version": _version(), "turns_per_page": self.settings.turns_per_page,
                      "page_size": self.settings.page_size})

    async def api_sessions(self, request: Request) -> Response:
        user_id = _required(_text(request, "user"), "user")
        limit = _int(request, "limit", low=1, high=1000, default=self.settings.page_size)
        page = await self.service.sessions(
            user_id, status=_text(request, "status"),
            cursor=request.query_params.get("cursor") or None, limit=limit or 1,
        )
        return _json(page_json(page))

    async def api_session(self, request: Request) -> Response:
        record = await self.service.record(_required(request.query_params.get("id", ""), "id"))
        return _json(record_json(record))

    async def api_turns(self, request: Request) -> Response:
        sid = _required(request.query_params.get("id", ""), "id")
        after, position = _paging(request)
        limit = _int(request, "limit", low=1, high=1000, default=self.settings.turns_per_page)
        record = await self.service.record(sid)
        page = await self.service.turns(
            record,
            after=after,
            position=position,
            limit=limit or 1,
            newest=request.query_params.get("view") == "newest",
        )
        return _json(turns_json(page))

    async def api_checkpoints(self, request: Request) -> Response:
        record = await self.service.record(_required(request.query_params.get("id", ""), "id"))
        checkpoints = await self.service.checkpoints(record.state.session_id)
        return _json({"checkpoints": [checkpoint_json(c) for c in checkpoints]})

    async def api_tree(self, request: Request) -> Response:
        tree = await self.service.tree(_required(request.query_params.get("id", ""), "id"))
        return _json(tree_json(tree))

    async def api_analytics(self, request: Request) -> Response:
        series = await self.service.series(_required(request.query_params.get("id", ""), "id"))
        return _json(series.to_dict())


def _version() -> str:
    """The installed distribution's version (empty when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lexigram-ai-session")
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        return ""


def _same_origin(request: Request) -> bool:
    """False when the browser says the form came from another origin."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def _read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (at most :data:`MAX_FORM_BYTES`)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise SessionValidationError("form", f"is larger than {MAX_FORM_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SessionValidationError("form", "is not UTF-8") from None
    return dict(parse_qsl(text, keep_blank_values=True))


def create_app(
    source: SessionManagerImpl | SessionConfig, settings: ExplorerSettings | None = None
) -> AccessGuard:
    """The explorer over a running manager, or over the store a config names.

    With a :class:`SessionConfig` the store is opened when the app starts (ASGI
    lifespan) and closed when it stops; with a manager, the caller owns the store.
    """
    settings = settings or ExplorerSettings()
    service = ExplorerService(source) if isinstance(source, SessionManagerImpl) else None
    explorer = _Explorer(settings, service)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if isinstance(source, SessionManagerImpl):
            yield
            return
        async with SessionManagerImpl.open(source) as manager:
            explorer.service_or_none = ExplorerService(manager)
            yield

    def page(handler: Handler) -> Handler:
        return explorer.guarded(handler, api=False)

    def api(handler: Handler) -> Handler:
        return explorer.guarded(handler, api=True)

    routes = [
        Route("/", page(explorer.index)),
        Route("/session", page(explorer.session)),
        Route("/session/analytics", page(explorer.analytics)),
        Route("/confirm/{action}", page(explorer.confirm)),
        Route("/actions/{action}", page(explorer.act), methods=["POST"]),
        Route("/api/info", api(explorer.api_info)),
        Route("/api/sessions", api(explorer.api_sessions)),
        Route("/api/session", api(explorer.api_session)),
        Route("/api/session/turns", api(explorer.api_turns)),
        Route("/api/session/checkpoints", api(explorer.api_checkpoints)),
        Route("/api/session/tree", api(explorer.api_tree)),
        Route("/api/session/analytics", api(explorer.api_analytics)),
        Mount("/static", StaticFiles(packages=[("lexigram.ai.session.explorer", "static")]),
              name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    return AccessGuard(app, settings)
