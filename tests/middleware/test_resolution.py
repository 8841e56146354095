"""Where the session id comes from, and what gets bound, through httpx against the middleware."""

from __future__ import annotations

from typing import Any

import pytest

from lexigram.ai.session.middleware.cookies import CookieCodec

from .conftest import SECRET, World, client, echo_app, user_from_header


async def _three_sessions(world: World, user: str = "alice") -> tuple[str, str, str]:
    a = await world.manager.create(user)
    b = await world.manager.create(user)
    c = await world.manager.create(user)
    return a.session_id, b.session_id, c.session_id


def _cookie(session_id: str, anonymous_id: str | None = None) -> str:
    return CookieCodec(SECRET, max_age=3600).encode(session_id, anonymous_id)


@pytest.mark.parametrize(
    ("use_header", "use_query", "use_cookie", "expected"),
    [
        (True, True, True, "header"),
        (True, False, True, "header"),
        (False, True, True, "query"),
        (False, False, True, "cookie"),
        (False, True, False, "query"),
        (False, False, False, None),
    ],
)
async def test_resolution_order_header_then_query_then_cookie(
    world: World, use_header: bool, use_query: bool, use_cookie: bool, expected: str | None
) -> None:
    by_source = dict(zip(("header", "query", "cookie"), await _three_sessions(world), strict=True))
    app = world.middleware(echo_app(), user_resolver=user_from_header)
    headers = {"x-user": "alice"}
    if use_header:
        headers["X-Session-ID"] = by_source["header"]
    params = {"session_id": by_source["query"]} if use_query else {}
    cookies = {"lexigram_session": _cookie(by_source["cookie"])} if use_cookie else {}
    async with client(app, cookies=cookies) as http:
        body = (await http.get("/", headers=headers, params=params)).json()
    assert body["session_id"] == (by_source[expected] if expected else None)
    assert body["bound_before"] is (expected is not None)


async def test_header_name_is_configurable_and_case_insensitive(world: World) -> None:
    state = await world.manager.create("alice")
    app = world.middleware(
        echo_app(),
        config=world.config(header_name="X-Chat-Session"),
        user_resolver=user_from_header,
    )
    async with client(app) as http:
        hit = (await http.get("/", headers={"x-user": "alice", "x-chat-session": state.session_id}))
        miss = (await http.get("/", headers={"x-user": "alice", "X-Session-ID": state.session_id}))
    assert hit.json()["session_id"] == state.session_id
    assert miss.json()["session_id"] is None


async def test_no_id_binds_nothing_and_creates_nothing(world: World) -> None:
    app = world.middleware(echo_app(), user_resolver=user_from_header)
    async with client(app) as http:
        response = await http.get("/", headers={"x-user": "alice"})
    assert response.json() == {"bound_before": False, "session_id": None, "created": False}
    assert world.created == []
    assert set_cookie_count(response) == 0


def set_cookie_count(response: Any) -> int:
    return len(response.headers.get_list("set-cookie"))


async def test_ensure_creates_for_the_request_user_and_reports_the_id(world: World) -> None:
    app = world.middleware(echo_app(), user_resolver=user_from_header)
    async with client(app) as http:
        first = await http.post("/", headers={"x-user": "alice"})
        new_id = first.json()["session_id"]
        # the cookie the client now holds binds the same session again
        again = await http.get("/", headers={"x-user": "alice"})
    assert first.json()["created"] is True and first.json()["user_id"] == "alice"
    assert first.headers["x-session-id"] == new_id
    assert world.created == [new_id]
    assert again.json()["session_id"] == new_id and again.json()["created"] is False
    header = await world.manager.get_header(new_id)
    assert header is not None and header.user_id == "alice"


async def test_user_from_scope_user_starlette_convention(world: World) -> None:
    from starlette.authentication import SimpleUser, UnauthenticatedUser

    state = await world.manager.create("carol")
    seen: dict[str, Any] = {}

    def with_user(user: Any) -> Any:
        inner = echo_app()

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await inner(scope, receive, send)

        async def outer(scope: Any, receive: Any, send: Any) -> None:
            scope["user"] = user
            await mw(scope, receive, send)

        mw = world.middleware(app)
        return outer

    async with client(with_user(SimpleUser("carol"))) as http:
        seen["carol"] = (await http.get("/", headers={"X-Session-ID": state.session_id})).json()
    async with client(with_user(UnauthenticatedUser())) as http:
        seen["anon"] = (await http.get("/", headers={"X-Session-ID": state.session_id})).json()
    assert seen["carol"]["session_id"] == state.session_id
    assert seen["anon"]["session_id"] is None


async def test_suspended_session_is_bound(world: World) -> None:
    state = await world.manager.create("alice")
    await world.manager.suspend(state.session_id)
    app = world.middleware(echo_app(), user_resolver=user_from_header)
    async with client(app) as http:
        headers = {"x-user": "alice", "X-Session-ID": state.session_id}
        body = (await http.get("/", headers=headers)).json()
    assert body["session_id"] == state.session_id


async def test_async_user_resolver_and_manager_callable(world: World) -> None:
    state = await world.manager.create("dave")
    calls: list[int] = []

    async def resolver(scope: Any) -> str | None:
        return "dave"

    async def source() -> Any:
        calls.append(1)
        return world.manager

    from lexigram.ai.session.middleware import SessionMiddleware

    app = SessionMiddleware(
        echo_app(), session_manager=source, config=world.config(), user_resolver=resolver
    )
    async with client(app) as http:
        for _ in range(3):
            body = (await http.get("/", params={"session_id": state.session_id})).json()
            assert body["session_id"] == state.session_id
    assert calls == [1]
