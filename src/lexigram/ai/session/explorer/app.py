"""``create_app``: the explorer as a Starlette application.

Pages (:mod:`.views`, :mod:`.writes`) and the JSON API (:mod:`.api`) call the same
:class:`.ExplorerService` methods. :class:`.AccessGuard` wraps everything, so the
access rules hold for pages, API and static files alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.explorer.access import AccessGuard
from lexigram.ai.session.explorer.api import ApiViews
from lexigram.ai.session.explorer.runtime import ExplorerRuntime, Handler
from lexigram.ai.session.explorer.service import ExplorerService
from lexigram.ai.session.explorer.settings import ExplorerSettings
from lexigram.ai.session.explorer.views import PageViews
from lexigram.ai.session.explorer.writes import WriteViews
from lexigram.ai.session.manager.protocol import SessionManagerAPI

__all__ = ["create_app"]


def create_app(
    source: SessionManagerAPI | SessionConfig, settings: ExplorerSettings | None = None
) -> AccessGuard:
    """The explorer over a running manager, or over the store a config names.

    With a :class:`SessionConfig` the store is opened when the app starts (ASGI
    lifespan) and closed when it stops; mounted in another app (whose lifespan does not
    reach a mounted app) it is opened on the first request and closed by
    ``await app.aclose()``. With a manager, the caller owns the store.
    """
    settings = settings or ExplorerSettings()
    config = source if isinstance(source, SessionConfig) else None
    service = None if isinstance(source, SessionConfig) else ExplorerService(source)
    runtime = ExplorerRuntime(settings, service, config)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    def page(handler: Handler) -> Handler:
        return runtime.guarded(handler, api=False)

    def api(handler: Handler) -> Handler:
        return runtime.guarded(handler, api=True)

    views, writes, json = PageViews(runtime), WriteViews(runtime), ApiViews(runtime)
    routes = [
        Route("/", page(views.index)),
        Route("/session", page(views.session)),
        Route("/session/analytics", page(views.analytics)),
        Route("/confirm/{action}", page(writes.confirm)),
        Route("/actions/{action}", page(writes.act), methods=["POST"]),
        Route("/api/info", api(json.info)),
        Route("/api/sessions", api(json.sessions)),
        Route("/api/session", api(json.session)),
        Route("/api/session/turns", api(json.turns)),
        Route("/api/session/checkpoints", api(json.checkpoints)),
        Route("/api/session/tree", api(json.tree)),
        Route("/api/session/analytics", api(json.analytics)),
        Mount("/static", StaticFiles(packages=[("lexigram.ai.session.explorer", "static")]),
              name="static"),
    ]
    return AccessGuard(Starlette(routes=routes, lifespan=lifespan), settings, runtime.stop)
