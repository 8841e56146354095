"""The web services resolved from a booted lexigram application."""

from __future__ import annotations

from typing import Any

import httpx
from lexigram.contracts.ai.session import SessionContextProtocol

from lexigram import Application
from lexigram.ai.session import SessionModule
from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.context import SessionContext
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.middleware import SessionMiddleware

from .conftest import SECRET, send_json, user_from_header

CONFIG = SessionConfig(cookie_secret=SECRET)


def _modules() -> list[Any]:
    return [SessionModule.stub(CONFIG)]


async def test_middleware_and_context_resolve_and_work_together() -> None:
    async with Application.boot(modules=_modules()) as app:
        manager = await app.container.resolve(SessionManagerImpl)
        middleware = await app.container.resolve(SessionMiddleware)
        context = await app.container.resolve(SessionContext)
        protocol_context = await app.container.resolve(SessionContextProtocol)
        assert middleware.app is None and await middleware.session_manager() is manager
        assert protocol_context is context and isinstance(context, SessionContextProtocol)

        async def endpoint(scope: Any, receive: Any, send: Any) -> None:
            # a service holding the container's SessionContext sees the request's session
            state = await context.ensure()
            await context.add_message("user", "hi")
            await send_json(send, {"id": context.session_id, "user": state.user_id})

        asgi = middleware.wrap(endpoint)
        custom = SessionMiddleware(
            endpoint, session_manager=manager, user_resolver=user_from_header
        )
        assert custom.config is manager.config
        transport = httpx.ASGITransport(app=_with_user(asgi, "alice"))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            body = (await http.post("/")).json()
        assert body["user"] == "alice"
        header = await manager.get_header(body["id"])
        assert header is not None and header.turn_count == 1 and header.user_id == "alice"
        assert not context.bound


def _with_user(app: Any, user: str) -> Any:
    async def outer(scope: Any, receive: Any, send: Any) -> None:
        scope["user"] = user
        await app(scope, receive, send)

    return outer


def test_web_types_are_exported_by_the_module() -> None:
    from lexigram.ai.session.di.extensions import exported_types as wired
    from lexigram.ai.session.middleware.di import exported_types

    assert set(exported_types()) <= set(wired())
