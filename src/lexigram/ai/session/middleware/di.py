"""Container bindings of the web integration: ``SessionMiddleware`` and ``SessionContext``.

Called by the provider (``di/extensions.py``) while it registers. The middleware is
bound without an application; wrap yours with it::

    middleware = await container.resolve(SessionMiddleware)
    asgi_app = middleware.wrap(starlette_app)
"""

from __future__ import annotations

from typing import Any

from lexigram.contracts.ai.session import SessionContextProtocol

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.context.session_context import SessionContext
from lexigram.ai.session.manager.protocol import SessionManagerAPI
from lexigram.ai.session.middleware.session_middleware import SessionMiddleware

__all__ = ["exported_types", "register_web_services"]


def register_web_services(container: Any, config: SessionConfig) -> None:
    """Bind ``SessionMiddleware`` (no app yet), ``SessionContext`` and its protocol."""

    async def build_middleware(resolver: Any) -> SessionMiddleware:
        manager: SessionManagerAPI = await resolver.resolve(SessionManagerAPI)
        return SessionMiddleware(None, session_manager=manager, config=config)

    async def build_context(resolver: Any) -> SessionContext:
        manager: SessionManagerAPI = await resolver.resolve(SessionManagerAPI)
        return SessionContext(manager)

    async def context_alias(resolver: Any) -> SessionContext:
        context: SessionContext = await resolver.resolve(SessionContext)
        return context

    container.singleton(SessionMiddleware, factory=build_middleware)
    container.singleton(SessionContext, factory=build_context)
    container.singleton(SessionContextProtocol, factory=context_alias)


def exported_types() -> list[type]:
    """The types :func:`register_web_services` makes resolvable."""
    return [SessionMiddleware, SessionContext, SessionContextProtocol]
