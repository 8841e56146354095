"""``ExplorerRuntime``: what every handler shares (settings, service, CSRF token, errors)."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from lexigram.ai.session.exceptions import SessionError
from lexigram.ai.session.explorer.errors import describe, http_status
from lexigram.ai.session.explorer.pages.context import PageContext
from lexigram.ai.session.explorer.pages.layout import message_page
from lexigram.ai.session.explorer.service import ExplorerService
from lexigram.ai.session.explorer.settings import ExplorerSettings

__all__ = ["ExplorerRuntime", "Handler", "json_response"]

Handler = Callable[[Request], Awaitable[Response]]


def json_response(data: Any, status: int = 200) -> Response:
    """``data`` as a JSON answer."""
    return Response(
        orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS, default=str),
        status_code=status,
        media_type="application/json",
    )


class ExplorerRuntime:
    """The settings, the service (set once the app has started) and the CSRF token."""

    def __init__(self, settings: ExplorerSettings, service: ExplorerService | None) -> None:
        self.settings = settings
        self.service_or_none = service
        self.csrf = secrets.token_urlsafe(32)
        """A random token of this process; every write form must carry it."""

    @property
    def service(self) -> ExplorerService:
        """The service (raises before the app has started)."""
        if self.service_or_none is None:  # pragma: no cover - only before startup
            raise RuntimeError("the explorer has not started")
        return self.service_or_none

    def ctx(self, request: Request) -> PageContext:
        """The page context of ``request`` (links under its mount path)."""
        return PageContext(
            base=request.scope.get("root_path", "").rstrip("/"),
            backend=self.service.backend,
            allow_writes=self.settings.allow_writes,
            csrf=self.csrf,
        )

    def page(self, request: Request, title: str, message: str, status: int) -> Response:
        """A page that only says ``message``."""
        return HTMLResponse(message_page(self.ctx(request), title, message), status_code=status)

    def guarded(self, handler: Handler, *, api: bool) -> Handler:
        """``handler`` with session errors answered as JSON (API) or an error page."""

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except SessionError as error:
                status = http_status(error)
                info = describe(error)
                if api:
                    return json_response({"error": info}, status)
                page = message_page(self.ctx(request), f"Error {status}", str(info["message"]),
                                    code=str(info["code"]))
                return HTMLResponse(page, status_code=status)

        return run
