"""Web chat: each caller's conversation kept in a lexigram session, over HTTP.

A Starlette application (FastAPI works the same way: it is Starlette underneath)
wrapped by ``SessionMiddleware``. Lexigram boots in the Starlette lifespan with the
SQL session store on a SQLite file (by default: see the settings below); the assistant
is scripted, so no model and no network are needed.

Run it::

    pip install 'lexigram-ai-session[web]'
    WEB_CHAT_COOKIE_SECRET=$(python -c 'import secrets; print(secrets.token_urlsafe(32))') \\
        uvicorn web_chat:app --app-dir examples --port 8000 --lifespan on

Talk to it as an authenticated user (demo bearer tokens below)::

    curl -s localhost:8000/chat -H 'Authorization: Bearer alice-token' \\
         -H 'Content-Type: application/json' -d '{"message": "hello"}' -D -
    # the response carries the new session id in X-Session-ID; send it back:
    curl -s localhost:8000/chat -H 'Authorization: Bearer alice-token' \\
         -H 'X-Session-ID: <id>' -d '{"message": "and again"}'

or anonymously with a cookie jar (a browser does this by itself)::

    curl -s -c jar -b jar localhost:8000/chat -d '{"message": "hi"}'
    curl -s -c jar -b jar localhost:8000/history

Settings (environment):

* ``WEB_CHAT_BACKEND``: where sessions are kept, ``sql`` (the default), ``redis`` or
  ``memory`` (lost when the process stops; one worker only);
* ``WEB_CHAT_DATABASE_URL``: the ``sql`` backend's database (default
  ``sqlite+aiosqlite:///./web_chat.db``);
* ``WEB_CHAT_REDIS_URL``: the ``redis`` backend's server (default
  ``redis://127.0.0.1:6379/0``);
* ``WEB_CHAT_COOKIE_SECRET``: signs the session cookie (without it cookies are signed
  with a per-process secret and do not survive a restart).

Each URL is passed only to its own backend (lexigram refuses a URL the chosen backend
would ignore).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

os.environ.setdefault("LEX_QUIET", "1")
os.environ.setdefault("LEX_LOGGING__LEVEL", "WARNING")

from starlette.applications import Starlette
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
    SimpleUser,
)
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lexigram import Application
from lexigram.ai.session import SessionModule
from lexigram.ai.session.context import SessionContext
from lexigram.ai.session.exceptions import (
    SessionCapacityError,
    SessionClosedError,
    SessionError,
    SessionExpiredError,
)
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.middleware import (
    AnonymousLimitError,
    SessionMiddleware,
    current_session,
)

BACKEND = os.environ.get("WEB_CHAT_BACKEND", "sql")

SETTINGS: dict[str, Any] = {
    "backend": BACKEND,
    "cookie_secret": os.environ.get("WEB_CHAT_COOKIE_SECRET") or None,
    "allow_anonymous": True,  # browsers without a login chat under their own anonymous id
    "anonymous_sessions_per_minute": 20,  # new anonymous sessions per client address
    "max_anonymous_sessions": 10000,  # live anonymous sessions of this middleware
    "session_ttl": 3600,  # idle sessions expire after an hour; the cookie's Max-Age too
    "max_sessions_per_user": 20,
    "default_system_prompt": "You are a friendly scripted assistant.",
}
# Only the chosen backend's URL: lexigram refuses a URL the backend would not use.
if BACKEND == "sql":
    SETTINGS["database_url"] = os.environ.get(
        "WEB_CHAT_DATABASE_URL", "sqlite+aiosqlite:///./web_chat.db"
    )
elif BACKEND == "redis":
    SETTINGS["redis_url"] = os.environ.get("WEB_CHAT_REDIS_URL", "redis://127.0.0.1:6379/0")

# Demo authentication: a bearer token names the user. Use your real auth instead; the
# session middleware only needs scope["user"] (or a user_resolver=).
DEMO_TOKENS = {"alice-token": "alice", "bob-token": "bob"}
MAX_MESSAGE = 4000


class DemoTokenBackend(AuthenticationBackend):
    """``Authorization: Bearer <token>`` -> the user named in ``DEMO_TOKENS``."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        header = conn.headers.get("authorization")
        if not header:
            return None  # anonymous
        scheme, _, token = header.partition(" ")
        user = DEMO_TOKENS.get(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise AuthenticationError("unknown token")
        return AuthCredentials(["authenticated"]), SimpleUser(user)


class Services:
    """What the lifespan boots and the middleware needs."""

    manager: SessionManagerImpl | None = None

    def session_manager(self) -> SessionManagerImpl:
        if self.manager is None:
            raise RuntimeError("lexigram has not booted (is the lifespan enabled?)")
        return self.manager


services = Services()


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Boot lexigram (creates the SQL tables on ``sql``, starts the expiry sweeper)."""
    async with Application.boot(modules=[SessionModule.configure(SETTINGS)]) as lexigram_app:
        services.manager = await lexigram_app.container.resolve(SessionManagerImpl)
        yield
        services.manager = None


def scripted_reply(message: str, turn_number: int) -> str:
    """The assistant: deterministic, no model involved."""
    words = len(message.split())
    return f"You said {words} word{'s' if words != 1 else ''}: {message!r}. (turn {turn_number})"


def chat_session(request: Request) -> SessionContext:
    """The request's session context, put there by SessionMiddleware.

    It is ``request.scope["ai_session"]`` (the ``scope_key`` setting), so that
    Starlette's own ``SessionMiddleware`` can keep ``request.session``.
    """
    del request
    return current_session()


async def chat(request: Request) -> Response:
    """Append the user's message and the assistant's reply to the caller's session."""
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"error": "body must be JSON"}, status_code=400)
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message.strip() or len(message) > MAX_MESSAGE:
        return JSONResponse(
            {"error": f"message: a non-empty string of at most {MAX_MESSAGE} characters"},
            status_code=422,
        )
    session = chat_session(request)
    try:
        await session.ensure()  # the caller's session; created here only when it has none
    except AnonymousLimitError:
        raise  # the middleware answers 429 with Retry-After
    except SessionCapacityError:
        return JSONResponse({"error": "too many open sessions"}, status_code=429)
    except SessionError:
        return JSONResponse({"error": "log in to chat"}, status_code=401)
    try:
        await session.add_message("user", message)
        reply = scripted_reply(message, session.state.turn_count + 1)
        await session.add_message("assistant", reply, model="scripted")
    except (SessionClosedError, SessionExpiredError):
        return JSONResponse({"error": "this conversation has ended"}, status_code=409)
    return JSONResponse({"reply": reply, "turn_count": session.state.turn_count})


async def history(request: Request) -> Response:
    """The turns of the caller's session (empty when it has none)."""
    session = chat_session(request)
    if not session.bound:
        return JSONResponse({"turns": []})
    turns = await session.turns()
    return JSONResponse({"turns": [{"role": t.role, "content": t.content} for t in turns]})


async def end(request: Request) -> Response:
    """Close the caller's session (logout); the cookie is removed."""
    session = chat_session(request)
    if not session.bound:
        return JSONResponse({"error": "no session"}, status_code=404)
    await session.end()
    return JSONResponse({"closed": True})


async def health(request: Request) -> Response:
    """Liveness: never touches a session."""
    return JSONResponse({"ok": services.manager is not None})


app = Starlette(
    routes=[
        Route("/chat", chat, methods=["POST"]),
        Route("/history", history, methods=["GET"]),
        Route("/end", end, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
    ],
    middleware=[
        # Authentication first (outermost): it sets scope["user"], which the session
        # middleware checks every session against.
        Middleware(AuthenticationMiddleware, backend=DemoTokenBackend()),
        Middleware(SessionMiddleware, session_manager=services.session_manager, config=SETTINGS),
    ],
    lifespan=lifespan,
)
