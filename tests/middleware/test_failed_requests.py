"""A request that raises before its response starts does not strand the sessions it made.

Inside a Starlette application (``Middleware(SessionMiddleware, ...)``) an unhandled
exception is answered by Starlette's ``ServerErrorMiddleware``, outside this one: the 500
carries no session id, so the client can never reach a session the request created. An
outside audit saw each retry of a failing endpoint create one more live session until
``max_sessions_per_user`` locked the user out (``SessionCapacityError`` on every later
``ensure()``, for ``session_ttl``). Such sessions are now closed; their turns stay stored.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from lexigram.contracts.ai.session import SessionStatus, SessionTurn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from lexigram.ai.session.middleware import SessionMiddleware, current_session

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
