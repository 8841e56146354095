"""Anonymous sessions are bounded: per client address per minute, and in total (429)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from lexigram.contracts.ai.session import SessionStatus
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from lexigram.ai.session.middleware import ANONYMOUS_PREFIX, SessionMiddleware, current_session
from lexigram.ai.session.middleware.anonymous import (
    RECHECK_EVERY_S,
    AnonymousLimiter,
    AnonymousLimitError,
)

from .conftest import World, user_from_header


class Noop(BaseHTTPMiddleware):
    """Runs the rest of the app in another task (what BaseHTTPMiddleware does)."""

    async def dispatch(self, request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        return response


class Ticks:
    """A monotonic clock the tests move."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _chat(request: Request) -> Response:
    state = await current_session().ensure()
    return JSONResponse({"id": state.session_id, "user": state.user_id})


def _routes() -> list[Any]:
    return [Route("/chat", _chat, methods=["POST"])]


def _config(world: World, **bounds: Any) -> Any:
    return world.config(allow_anonymous=True, **bounds)


def _inside(world: World, **bounds: Any) -> Starlette:
    """The middleware in Starlette's middleware list (inside its error middleware)."""
    return Starlette(
        routes=_routes(),
        middleware=[
            Middleware(
                SessionMiddleware,
                session_manager=world.manager,
                config=_config(world, **bounds),
                user_resolver=user_from_header,
            ),
            Middleware(Noop),
        ],
    )


def _around(world: World, ticks: Ticks, **bounds: Any) -> SessionMiddleware:
    """The middleware wrapped around a whole Starlette app, on a clock the test moves."""
    middleware = SessionMiddleware(
        Starlette(routes=_routes()),
        session_manager=world.manager,
        config=_config(world, **bounds),
        user_resolver=user_from_header,
    )
    limiter = middleware.limiter
    assert limiter is not None
    middleware.limiter = AnonymousLimiter(
        per_minute=limiter.per_minute,
        max_live=limiter.max_live,
        read_status=middleware._read_status,
        clock=ticks,
    )
    return middleware


async def _post(app: Any, address: str, **kwargs: Any) -> httpx.Response:
    """A cookie-less POST /chat from ``address``."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return await http.post("/chat", **kwargs)


async def _anonymous_live(world: World) -> list[str]:
    live = []
    for sid in world.created:
        header = await world.manager.get_header(sid)
        assert header is not None
        if header.user_id.startswith(ANONYMOUS_PREFIX) and header.status == SessionStatus.ACTIVE:
            live.append(sid)
    return live


async def test_per_address_bound_answers_429_with_retry_after(world: World) -> None:
    app = _inside(world, anonymous_sessions_per_minute=3)
    answers = [await _post(app, "203.0.113.7") for _ in range(5)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429, 429]
    retry = int(answers[3].headers["retry-after"])
    assert 1 <= retry <= 60
    assert "set-cookie" not in answers[3].headers
    # exactly three sessions were stored, under three anonymous identities
    assert len(world.created) == 3
    users = set()
    for sid in world.created:
        header = await world.manager.get_header(sid)
        assert header is not None
        users.add(header.user_id)
    assert len(users) == 3
    # another address is not affected
    other = await _post(app, "198.51.100.1")
    assert other.status_code == 200 and len(world.created) == 4


async def test_the_window_ends_after_a_minute(world: World) -> None:
    ticks = Ticks()
    app = _around(world, ticks, anonymous_sessions_per_minute=2)
    codes = [(await _post(app, "203.0.113.7")).status_code for _ in range(3)]
    assert codes == [200, 200, 429]  # a 500 of Starlette's error middleware became a 429
    ticks.now += 59
    refused = await _post(app, "203.0.113.7")
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    ticks.now += 1
    assert (await _post(app, "203.0.113.7")).status_code == 200
    assert len(world.created) == 3


async def test_total_bound_counts_live_anonymous_sessions_only(world: World) -> None:
    ticks = Ticks()
    app = _around(world, ticks, anonymous_sessions_per_minute=0, max_anonymous_sessions=2)
    codes = [(await _post(app, f"192.0.2.{i}")).status_code for i in range(3)]
    assert codes == [200, 200, 429]
    refused = await _post(app, "192.0.2.9")
    assert refused.status_code == 429 and refused.headers["retry-after"] == "60"
    assert len(await _anonymous_live(world)) == 2
    # one of them ends: after the recheck interval it no longer counts
    await world.manager.close(world.created[0])
    ticks.now += RECHECK_EVERY_S
    assert (await _post(app, "192.0.2.10")).status_code == 200
    assert len(await _anonymous_live(world)) == 2 and len(world.created) == 3
    assert (await _post(app, "192.0.2.11")).status_code == 429


async def test_authenticated_users_and_returning_anonymous_clients_are_not_counted(
    world: World,
) -> None:
    app = _inside(world, anonymous_sessions_per_minute=1)
    for _ in range(3):
        answer = await _post(app, "203.0.113.7", headers={"x-user": "alice"})
        assert answer.status_code == 200
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        first = await http.post("/chat")
        again = [await http.post("/chat") for _ in range(3)]  # the cookie binds it again
    assert first.status_code == 200
    assert {r.json()["id"] for r in again} == {first.json()["id"]}
    assert len(world.created) == 4  # three of alice (no cookie sent back), one anonymous


def test_websocket_refusal_closes_with_1013(world: World) -> None:
    async def ws(websocket: WebSocket) -> None:
        await current_session().ensure()
        await websocket.accept()
        await websocket.send_text("ok")
        await websocket.close()

    app = Starlette(
        routes=[WebSocketRoute("/ws", ws)],
        middleware=[
            Middleware(
                SessionMiddleware,
                session_manager=world.manager,
                config=_config(world, anonymous_sessions_per_minute=1),
            )
        ],
    )
    with TestClient(app) as http:
        with http.websocket_connect("/ws") as socket:
            assert socket.receive_text() == "ok"
        http.cookies.clear()
        with pytest.raises(WebSocketDisconnect) as closed, http.websocket_connect("/ws") as socket:
            socket.receive_text()
        assert getattr(closed.value, "code", None) == 1013
    assert len(world.created) == 1


async def test_limiter_memory_is_bounded_and_windows_are_forgotten() -> None:
    ticks = Ticks()

    async def gone(session_id: str) -> SessionStatus | None:
        return None

    limiter = AnonymousLimiter(
        per_minute=2, max_live=0, read_status=gone, clock=ticks, max_clients=3
    )
    for i in range(5):
        await limiter.reserve(f"client-{i}")
        limiter.settle(f"s{i}")
    assert limiter.tracked_clients == 3 and limiter.live_count == 0
    await limiter.reserve("client-4")
    limiter.settle(None)
    with pytest.raises(AnonymousLimitError) as refused:
        await limiter.reserve("client-4")
    assert refused.value.bound == "anonymous_sessions_per_minute"
    ticks.now += 60
    await limiter.reserve("client-9")
    assert limiter.tracked_clients == 1


async def test_concurrent_requests_never_pass_a_bound_together(world: World) -> None:
    app = _inside(world, anonymous_sessions_per_minute=3, max_anonymous_sessions=100)
    answers = await asyncio.gather(*(_post(app, "203.0.113.7") for _ in range(20)))
    assert sorted(r.status_code for r in answers) == [200] * 3 + [429] * 17
    assert len(world.created) == 3
    total = _inside(world, anonymous_sessions_per_minute=0, max_anonymous_sessions=4)
    answers = await asyncio.gather(*(_post(total, f"192.0.2.{i}") for i in range(20)))
    assert sorted(r.status_code for r in answers) == [200] * 4 + [429] * 16
    assert len(world.created) == 7
