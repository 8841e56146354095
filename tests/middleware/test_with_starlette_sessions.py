"""Running beside Starlette's cookie ``SessionMiddleware`` (what Authlib's OAuth client needs)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from lexigram.contracts.exceptions.config import ConfigurationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lexigram.ai.session.context import SessionContext
from lexigram.ai.session.middleware import SessionMiddleware, current_session

from .conftest import World, set_cookies, user_from_header


async def _login(request: Request) -> Response:
    request.session["oauth_state"] = "state-123"  # Starlette's signed cookie dict
    state = await current_session().ensure()
    assert request.scope["ai_session"].session_id == state.session_id
    return JSONResponse({"id": state.session_id})


async def _callback(request: Request) -> Response:
    view: SessionContext = request.scope["ai_session"]
    return JSONResponse(
        {
            "oauth_state": request.session.get("oauth_state"),
            "id": view.session_id if view.bound else None,
            "same": current_session().session_id == view.session_id if view.bound else None,
        }
    )


def _app(world: World, *, ours_outside: bool, **config: Any) -> Starlette:
    ours = Middleware(
        SessionMiddleware,
        session_manager=world.manager,
        config=world.config(**config),
        user_resolver=user_from_header,
    )
    theirs = Middleware(StarletteSessionMiddleware, secret_key="starlette-secret-" + "y" * 32)
    return Starlette(
        routes=[
            Route("/login", _login, methods=["POST"]),
            Route("/callback", _callback),
        ],
        middleware=[ours, theirs] if ours_outside else [theirs, ours],
    )


def _ours_only(world: World, endpoint: Any, **config: Any) -> Starlette:
    """An app with our middleware alone, ``endpoint`` at ``POST /``."""
    ours = Middleware(
        SessionMiddleware,
        session_manager=world.manager,
        config=world.config(**config),
        user_resolver=user_from_header,
    )
    return Starlette(routes=[Route("/", endpoint, methods=["POST"])], middleware=[ours])


@pytest.mark.parametrize("ours_outside", [True, False], ids=["ours-outer", "ours-inner"])
async def test_both_cookies_are_set_and_both_sessions_read_back(
    world: World, ours_outside: bool
) -> None:
    app = _app(world, ours_outside=ours_outside)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        login = await http.post("/login", headers={"x-user": "alice"})
        names = sorted(c.split("=", 1)[0] for c in set_cookies(login))
        assert names == ["lexigram_session", "session"]
        callback = await http.get("/callback", headers={"x-user": "alice"})
    assert callback.json() == {"oauth_state": "state-123", "id": login.json()["id"], "same": True}
    header = await world.manager.get_header(login.json()["id"])
    assert header is not None and header.user_id == "alice"
    assert world.created == [login.json()["id"]]


async def test_the_spec_slot_holds_the_session_while_no_cookie_middleware_uses_it(
    world: World,
) -> None:
    seen: list[bool] = []

    async def endpoint(request: Request) -> Response:
        seen.append(request.scope["session"] is request.scope["ai_session"])
        state = await request.session.ensure()  # scope["session"], as SPEC §10 binds it
        return JSONResponse({"id": state.session_id})

    transport = httpx.ASGITransport(app=_ours_only(world, endpoint))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        answer = await http.post("/", headers={"x-user": "alice"})
    assert seen == [True]
    assert answer.json()["id"] == world.created[0]
    assert "lexigram_session" in [c.split("=", 1)[0] for c in set_cookies(answer)]


@pytest.mark.parametrize("ours_outside", [True, False], ids=["ours-outer", "ours-inner"])
async def test_a_cookie_middleware_keeps_its_dict_in_the_spec_slot(
    world: World, ours_outside: bool
) -> None:
    kinds: list[tuple[bool, bool]] = []

    async def endpoint(request: Request) -> Response:
        kinds.append(
            (
                isinstance(request.scope["session"], SessionContext),
                isinstance(request.scope["ai_session"], SessionContext),
            )
        )
        return JSONResponse({})

    app = _app(world, ours_outside=ours_outside)
    app.router.routes.append(Route("/kinds", endpoint))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        await http.get("/kinds", headers={"x-user": "alice"})
    assert kinds == [(False, True)]  # Starlette's own object, ours beside it


async def test_the_old_session_slot_can_still_be_chosen(world: World) -> None:
    async def endpoint(request: Request) -> Response:
        state = await request.session.ensure()  # request.session is scope["session"]
        return JSONResponse({"id": state.session_id})

    transport = httpx.ASGITransport(app=_ours_only(world, endpoint, scope_key="session"))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        answer = await http.post("/", headers={"x-user": "alice"})
    assert answer.json()["id"] == world.created[0]


async def test_a_slot_taken_by_starlette_is_refused_naming_scope_key(world: World) -> None:
    app = _app(world, ours_outside=False, scope_key="session")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        with pytest.raises(ConfigurationError, match=r"ai_session\.scope_key"):
            await http.post("/login", headers={"x-user": "alice"})
    assert world.created == []
