"""``ExplorerRuntime``: what every handler shares (settings, service, CSRF token, errors)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.exceptions import SessionError
from lexigram.ai.session.explorer.errors import describe, http_status
from lexigram.ai.session.explorer.pages.context import PageContext
from lexigram.ai.session.explorer.pages.layout import message_page
from lexigram.ai.session.explorer.service import ExplorerService
from lexigram.ai.session.explorer.settings import ExplorerSettings
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.manager.standalone import open_manager

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
    """The settings, the service (set once the store is open) and the CSRF token.

    Over a :class:`SessionConfig` the store is opened by :meth:`start`: from the app's
    lifespan, or from its first request when the app is mounted in another (Starlette's
    ``Mount`` does not pass the lifespan on), and closed by :meth:`stop`.
    """

    def __init__(
        self,
        settings: ExplorerSettings,
        service: ExplorerService | None,
        config: SessionConfig | None = None,
    ) -> None:
        self.settings = settings
        self.service_or_none = service
        self.csrf = secrets.token_urlsafe(32)
        """A random token of this process; every write form must carry it."""
        self._config = config
        self._stack: AsyncExitStack | None = None
        self._starting = asyncio.Lock()

    @property
    def service(self) -> ExplorerService:
        """The service (raises before the store is open; :meth:`guarded` opens it first)."""
        if self.service_or_none is None:  # pragma: no cover - guarded handlers start it
            raise RuntimeError("the explorer has not started")
        return self.service_or_none

    async def start(self) -> None:
        """Open the configured store, once (nothing to do over a caller's manager)."""
        if self.service_or_none is not None or self._config is None:
            return
        async with self._starting:
            if self.service_or_none is not None:
                return
            stack = AsyncExitStack()
            manager = await stack.enter_async_context(
                open_manager(self._config, manager_class=SessionManagerImpl, warn_layered=False)
            )
            self._stack = stack
            self.service_or_none = ExplorerService(manager)

    async def stop(self) -> None:
        """Close the store :meth:`start` opened (the caller's manager is left open)."""
        async with self._starting:
            stack, self._stack = self._stack, None
            if stack is not None:
                self.service_or_none = None
                await stack.aclose()

    def _backend(self) -> str:
        if self.service_or_none is not None:
            return self.service_or_none.backend
        return str(self._config.backend) if self._config is not None else "?"

    def ctx(self, request: Request) -> PageContext:
        """The page context of ``request`` (links under its mount path)."""
        return PageContext(
            base=request.scope.get("root_path", "").rstrip("/"),
            backend=self._backend(),
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
                await self.start()  # mounted in another app: no lifespan reached us
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
