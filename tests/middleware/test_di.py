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


class _Wrapped:
    """A manager of the application's own: delegates everything, counts creates."""

    def __init__(self, inner: SessionManagerImpl) -> None:
        self.inner = inner
        self.creates = 0

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        self.creates += 1
        return await self.inner.create(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_services_built_by_the_container_use_the_manager_bound_as_the_protocol() -> None:
    """An application binding its own wrapper as ``SessionManagerAPI`` got the concrete
    manager in the container's middleware, context and group factory (an outside audit)."""
    from lexigram.di.module import Module, module
    from lexigram.di.provider import Provider

    from lexigram.ai.session import SessionManagerAPI
    from lexigram.ai.session.multi_agent.factory import GroupSessionFactory

    class WrapProvider(Provider):
        name = "wrap-manager"

        async def register(self, container: Any) -> None:
            async def build(resolver: Any) -> _Wrapped:
                return _Wrapped(await resolver.resolve(SessionManagerImpl))

            container.singleton(SessionManagerAPI, factory=build)

        async def boot(self, container: Any) -> None:
            return None

        async def shutdown(self) -> None:
            return None

    @module(imports=_modules(), providers=[WrapProvider])
    class App(Module):
        pass

    async with Application.boot(modules=[App]) as app:
        wrapped = await app.container.resolve(SessionManagerAPI)
        assert isinstance(wrapped, _Wrapped)
        middleware = await app.container.resolve(SessionMiddleware)
        context = await app.container.resolve(SessionContext)
        groups = await app.container.resolve(GroupSessionFactory)
        assert await middleware.session_manager() is wrapped
        assert groups.manager is wrapped
        await context.get_or_create("alice")
        assert wrapped.creates == 1
