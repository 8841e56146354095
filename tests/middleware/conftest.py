"""Shared pieces of the web integration tests: a real manager on the in-memory store,
a clock the tests can move, a creation counter, and small ASGI applications."""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from lexigram.hooks import HookRegistry

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.context.session_context import SessionContext
from lexigram.ai.session.hooks import HOOK_SESSION_STARTED
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.middleware import SessionMiddleware
from lexigram.ai.session.stores.in_memory import InMemorySessionStore

Scope = MutableMapping[str, Any]
ASGI = Callable[[Scope, Any, Any], Awaitable[None]]

SECRET = "test-secret-" + "x" * 40


@dataclass
class Clock:
    """A clock the tests move forward."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class World:
    """A manager on a fresh in-memory store, with a creation counter."""

    manager: SessionManagerImpl
    store: InMemorySessionStore
    clock: Clock
    created: list[str]

    def config(self, **overrides: Any) -> SessionConfig:
        values: dict[str, Any] = {"cookie_secret": SECRET, "session_ttl": 3600}
        values.update(overrides)
        return SessionConfig(**values)

    def middleware(self, app: ASGI, **kwargs: Any) -> SessionMiddleware:
        config = kwargs.pop("config", None) or self.config()
        return SessionMiddleware(app, session_manager=self.manager, config=config, **kwargs)


@pytest.fixture
def world() -> World:
    clock = Clock()
    store = InMemorySessionStore(clock=clock)
    hooks = HookRegistry("ai_session_test_" + secrets.token_hex(4))
    created: list[str] = []

    async def on_start(*, payload: Any) -> None:
        created.append(payload.session_id)

    hooks.register_action(HOOK_SESSION_STARTED, on_start)
    manager = SessionManagerImpl(
        store, {"session_ttl": 3600, "max_sessions_per_user": 5}, hooks=hooks
    )
    return World(manager=manager, store=store, clock=clock, created=created)


def user_from_header(scope: Scope) -> str | None:
    """A toy authentication: the ``x-user`` request header names the user."""
    for key, value in scope.get("headers") or []:
        if key == b"x-user":
            return value.decode() or None
    return None


async def send_json(send: Any, body: Any, status: int = 200) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def echo_app(*, create_on: frozenset[str] = frozenset({"POST"})) -> ASGI:
    """Reports the bound session; creates one (``ensure``) for the methods in ``create_on``."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        session: SessionContext = scope["ai_session"]
        body: dict[str, Any] = {"bound_before": session.bound}
        if scope["method"] in create_on:
            state = await session.ensure()
            body["user_id"] = state.user_id
        body["session_id"] = session.session_id if session.bound else None
        body["created"] = session.created
        await send_json(send, body)

    return app


def client(app: ASGI, *, https: bool = False, **kwargs: Any) -> httpx.AsyncClient:
    base = "https://testserver" if https else "http://testserver"
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base, **kwargs)


def set_cookies(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")
