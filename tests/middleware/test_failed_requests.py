"""A request that raises before its response starts does not strand the sessions it made.

Inside a Starlette application (``Middleware(SessionMiddleware, ...)``) an unhandled
exception is answered by Starlette's ``ServerErrorMiddleware``, outside this one: the 500
carries no session id, so the client can never reach a session the request created. An
outside audit saw each retry of a failing endpoint create one more live session until
``max_sessions_per_user`` locked the user out (``SessionCapacityError`` on every later
``ensure()``, for ``session_ttl``). Such sessions are now closed; their turns stay stored.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from lexigram.contracts.ai.session import SessionStatus, SessionTurn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lexigram.ai.session.exceptions import StoreUnavailableError
from lexigram.ai.session.middleware import SessionMiddleware, current_session, session_middleware

from .conftest import World, user_from_header


def _client(app: Starlette) -> httpx.AsyncClient:
    """A client that gets the 500 Starlette answers, as a browser would."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def _turn(text: str) -> SessionTurn:
    return SessionTurn(turn_id=text, role="user", content=text, timestamp=datetime.now(UTC))


def _app(world: World) -> Starlette:
    async def failing(request: Request) -> JSONResponse:
        session = current_session()
        state = await session.ensure()
        await world.manager.add_turn(state.session_id, _turn(f"asked-{request.query_params['n']}"))
        raise RuntimeError("the model call failed")

    async def working(request: Request) -> JSONResponse:
        session = current_session()
        state = await session.ensure()
        return JSONResponse({"session_id": state.session_id})

    async def binding(request: Request) -> JSONResponse:
        session = current_session()
        await world.manager.add_turn(session.session_id, _turn("bound-turn"))
        raise RuntimeError("failed after binding")

    return Starlette(
        routes=[
            Route("/fail", failing),
            Route("/work", working),
            Route("/bound", binding),
        ],
        middleware=[
            Middleware(
                SessionMiddleware,
                session_manager=world.manager,
                config=world.config(max_sessions_per_user=2),
                user_resolver=user_from_header,
            )
        ],
    )


async def test_failed_requests_do_not_use_up_the_per_user_cap(world: World) -> None:
    app = _app(world)
    alice = {"x-user": "alice"}
    async with _client(app) as http:
        for n in range(4):
            failed = await http.get(f"/fail?n={n}", headers=alice)
            assert failed.status_code == 500
            assert "x-session-id" not in failed.headers  # the client never learns the id
        worked = await http.get("/work", headers=alice)
    assert worked.status_code == 200, worked.text
    assert await world.manager.count_live_sessions("alice") == 1
    page = await world.manager.list_sessions("alice", limit=10)
    ended = [s for s in page.items if s.status is SessionStatus.CLOSED]
    assert len(ended) == 4  # closed, not deleted: what they stored is kept
    for state in ended:
        turns = await world.manager.get_turns(state.session_id)
        assert len(turns) == 1 and turns[0].turn_id.startswith("asked-")


async def test_a_session_the_request_only_bound_stays_open(world: World) -> None:
    state = await world.manager.create("alice")
    app = _app(world)
    async with _client(app) as http:
        failed = await http.get(
            "/bound", headers={"x-user": "alice", "X-Session-ID": state.session_id}
        )
    assert failed.status_code == 500
    stored = await world.manager.get_state(state.session_id)
    assert stored is not None and stored.status is SessionStatus.ACTIVE
    assert [t.turn_id for t in stored.turns] == ["bound-turn"]


# ---- a regression audit of the fix: the other ways a request ends without a response


def _anonymous_app(world: World) -> Starlette:
    async def failing(request: Request) -> JSONResponse:
        await current_session().ensure()
        raise RuntimeError("the model call failed")

    async def working(request: Request) -> JSONResponse:
        await current_session().ensure()
        return JSONResponse({"ok": True})

    config = world.config(
        allow_anonymous=True, max_anonymous_sessions=3, anonymous_sessions_per_minute=0
    )
    return Starlette(
        routes=[Route("/fail", failing), Route("/work", working)],
        middleware=[Middleware(SessionMiddleware, session_manager=world.manager, config=config)],
    )


async def test_closed_sessions_stop_counting_under_the_anonymous_bound_at_once(
    world: World,
) -> None:
    async with _client(_anonymous_app(world)) as http:
        statuses = []
        for path in ["/work", "/fail", "/fail", "/work", "/fail", "/fail", "/work"]:
            http.cookies.clear()  # each a new anonymous visitor
            statuses.append((await http.get(path)).status_code)
        http.cookies.clear()
        refused = await http.get("/work")  # a fourth live one: over the bound
    assert statuses == [200, 500, 500, 200, 500, 500, 200]
    assert refused.status_code == 429


async def test_a_cancelled_request_closes_what_it_created(world: World) -> None:
    created = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await current_session().ensure()
        created.set()
        await asyncio.sleep(30)  # a slow model call, cut by a timeout or a client gone

    middleware = world.middleware(app, user_resolver=user_from_header)
    for _ in range(3):
        created.clear()
        task = asyncio.create_task(middleware(_scope("http"), _receive, _ignore))
        await created.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert await world.manager.count_live_sessions("alice") == 0


@pytest.mark.parametrize("kind", ["http", "websocket"])
async def test_a_request_answered_by_nobody_closes_what_it_created(world: World, kind: str) -> None:
    """An HTTP app returning without a response (the server answers 500), a websocket
    closed before it was accepted (403): no id reached the client."""
    sent: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await current_session().ensure()
        if kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    async def send(message: Any) -> None:
        sent.append(message["type"])

    await world.middleware(app, user_resolver=user_from_header)(_scope(kind), _receive, send)
    assert sent == (["websocket.close"] if kind == "websocket" else [])
    assert await world.manager.count_live_sessions("alice") == 0


async def test_a_close_the_store_refuses_is_logged_and_the_apps_error_raised(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    records: list[tuple[str, dict[str, Any]]] = []

    class Recorder:
        def warning(self, event: str, **fields: Any) -> None:
            records.append((event, fields))

        info = debug = error = warning

    monkeypatch.setattr(session_middleware, "logger", Recorder())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        state = await current_session().ensure()
        records.append(("created", {"id": state.session_id}))
        raise RuntimeError("the model call failed")

    async def unavailable(session_id: str) -> None:
        raise StoreUnavailableError("the store is unreachable")

    world.manager.close = unavailable  # type: ignore[method-assign]
    middleware = world.middleware(app, user_resolver=user_from_header)
    with pytest.raises(RuntimeError, match="the model call failed"):
        await middleware(_scope("http"), _receive, _ignore)
    (_, made), (event, fields) = records
    assert event == "ai_session.web.unannounced_session_not_closed"
    assert "StoreUnavailableError" in fields["error"] and made["id"] not in str(fields)
    assert await world.manager.count_live_sessions("alice") == 1  # the store said no


def _scope(kind: str) -> dict[str, Any]:
    return {
        "type": kind,
        "path": "/",
        "headers": [(b"x-user", b"alice")],
        "query_string": b"",
        "scheme": "http" if kind == "http" else "ws",
        "client": ("127.0.0.1", 1),
        "method": "GET",
    }


async def _receive() -> dict[str, Any]:
    return {"type": "websocket.connect"}


async def _ignore(message: Any) -> None:
    return None
