"""Inside a Starlette application: current_session(), BaseHTTPMiddleware, sync endpoints."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lexigram.ai.session.context import SessionContext
from lexigram.ai.session.middleware import SessionMiddleware, current_session

from .conftest import World, client, set_cookies, user_from_header


class Noop(BaseHTTPMiddleware):
    """Runs the rest of the app in another task (what BaseHTTPMiddleware does)."""

    async def dispatch(self, request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        return response


def _app(world: World) -> Starlette:
    async def create(request: Request) -> Response:
        view = current_session()
        assert view is request.scope["ai_session"] is current_session()  # as web.md says
        state = await view.ensure()
        return JSONResponse({"id": state.session_id})

    def sync_read(request: Request) -> Response:  # runs in a worker thread
        context = SessionContext()
        return JSONResponse({"id": context.session_id if context.bound else None})

    return Starlette(
        routes=[Route("/create", create, methods=["POST"]), Route("/read", sync_read)],
        middleware=[
            Middleware(
                SessionMiddleware,
                session_manager=world.manager,
                config=world.config(),
                user_resolver=user_from_header,
            ),
            Middleware(Noop),
        ],
    )


async def test_lazy_creation_through_base_http_middleware_sets_the_cookie(world: World) -> None:
    async with client(_app(world)) as http:
        created = await http.post("/create", headers={"x-user": "alice"})
        read = await http.get("/read", headers={"x-user": "alice"})
    assert created.json()["id"] == world.created[0]
    assert len(set_cookies(created)) == 1
    assert created.headers["x-session-id"] == world.created[0]
    # the cookie came back; a sync endpoint in the thread pool sees the session
    assert read.json() == {"id": world.created[0]}


async def test_sync_endpoint_sees_no_session_of_another_user(world: World) -> None:
    bobs = await world.manager.create("bob")
    async with client(_app(world)) as http:
        read = await http.get("/read", headers={"x-user": "alice", "X-Session-ID": bobs.session_id})
    assert read.json() == {"id": None}
