"""ASGI integration: bind the caller's own session to each HTTP/WebSocket request."""

from __future__ import annotations

from lexigram.ai.session.middleware.anonymous import AnonymousLimitError
from lexigram.ai.session.middleware.cookies import CookieCodec
from lexigram.ai.session.middleware.di import register_web_services
from lexigram.ai.session.middleware.identity import ANONYMOUS_PREFIX, UserResolver
from lexigram.ai.session.middleware.session_middleware import SessionMiddleware, current_session

__all__ = [
    "ANONYMOUS_PREFIX",
    "AnonymousLimitError",
    "CookieCodec",
    "SessionMiddleware",
    "UserResolver",
    "current_session",
    "register_web_services",
]
