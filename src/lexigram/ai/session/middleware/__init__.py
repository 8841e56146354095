"""ASGI integration: bind the caller's own session to each HTTP/WebSocket request."""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "SessionMiddleware": "lexigram.ai.session.middleware.session_middleware",
    "CookieCodec": "lexigram.ai.session.middleware.cookies",
    "UserResolver": "lexigram.ai.session.middleware.identity",
    "ANONYMOUS_PREFIX": "lexigram.ai.session.middleware.identity",
    "register_web_services": "lexigram.ai.session.middleware.di",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(name)
    return getattr(importlib.import_module(module), name)
