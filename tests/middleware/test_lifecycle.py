"""Scope types, unbinding after the app (even when it raises), concurrency, websockets."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pytest

from lexigram.ai.session.context.session_context import SessionContext
from lexigram.ai.session.exceptions import SessionError
from lexigram.ai.session.middleware import SessionMiddleware
from lexigram.ai.session.middleware.cookies import CookieCodec

from .conftest import SECRET, World, client, send_json, user_from_header


async def test_lifespan_passes_through_untouched(world: World) -> None:
    received: list[tuple[Any, Any, Any]] = []
    source_calls: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        received.append((scope, receive, send))
        message = await receive()
        assert message["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.complete"})

    def source() -> Any:
        source_calls.append(1)
        return world.manager

    middleware = SessionMiddleware(app, session_manager=source, config=world.config())
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    assert len(received) == 1
    got_scope, got_receive, got_send = received[0]
    assert got_scope is scope and "session" not in scope
    assert got_receive is receive and got_send is send
    assert sent == [{"type": "lifespan.startup.complete"}]
    assert source_calls == []  # the manager is not even needed for lifespan


async def test_unknown_scope_type_passes_through(world: World) -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    scope = {"type": "custom-protocol"}
    await world.middleware(app)(scope, None, None)
    assert seen == [scope] and "session" not in scope


async def test_app_that_raises_still_unbinds(world: World) -> None:
    state = await world.manager.create("alice")
    shared = SessionContext(world.manager)  # what the container hands out
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["view"] = scope["ai_session"]
        seen["inside"] = shared.session_id
        raise RuntimeError("handler exploded")

    middleware = world.middleware(app, user_resolver=user_from_header)
    async with client(middleware) as http:
        with pytest.raises(RuntimeError, match="handler exploded"):
            await http.get("/", headers={"x-user": "alice", "X-Session-ID": state.session_id})
    assert seen["inside"] == state.session_id
    assert seen["view"].bound is False
    with pytest.raises(SessionError):
        _ = seen["view"].session_id
    assert shared.bound is False and shared.binding is None


async def test_app_that_raises_after_ensure_keeps_the_session_consistent(world: World) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await scope["ai_session"].ensure()
        raise ValueError("after create")

    async with client(world.middleware(app, user_resolver=user_from_header)) as http:
        with pytest.raises(ValueError):
            await http.post("/", headers={"x-user": "alice"})
    assert len(world.created) == 1
    assert SessionContext().bound is False


async def test_concurrent_requests_each_see_their_own_session(world: World) -> None:
    users = [f"user-{i}" for i in range(40)]
    sessions = {u: (await world.manager.create(u)).session_id for u in users}
    shared = SessionContext(world.manager)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        view = scope["ai_session"]
        first = shared.session_id
        await asyncio.sleep(random.random() / 100)  # let the other requests interleave
        await send_json(
            send, {"first": first, "later": shared.session_id, "view": view.session_id}
        )

    middleware = world.middleware(app, user_resolver=user_from_header)
    async with client(middleware) as http:
        responses = await asyncio.gather(
            *(
                http.get("/", headers={"x-user": u, "X-Session-ID": sessions[u]})
                for u in users
            )
        )
    for user, response in zip(users, responses, strict=True):
        body = response.json()
        assert body == {"first": sessions[user], "later": sessions[user], "view": sessions[user]}


async def test_concurrent_lazy_creation_for_many_users(world: World) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(random.random() / 200)
        state = await scope["ai_session"].ensure()
        await asyncio.sleep(random.random() / 200)
        await send_json(send, {"user": state.user_id, "id": SessionContext().session_id})

    middleware = world.middleware(app, user_resolver=user_from_header)
    async with client(middleware) as http:
        responses = await asyncio.gather(
            *(http.post("/", headers={"x-user": f"u{i}"}) for i in range(30))
        )
    bodies = [r.json() for r in responses]
    assert [b["user"] for b in bodies] == [f"u{i}" for i in range(30)]
    assert len({b["id"] for b in bodies}) == 30
    for response, body in zip(responses, bodies, strict=True):
        assert response.headers["x-session-id"] == body["id"]


async def test_ensure_twice_in_one_request_creates_one_session(world: World) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        states = await asyncio.gather(*(scope["ai_session"].ensure() for _ in range(5)))
        await send_json(send, {"ids": sorted({s.session_id for s in states})})

    async with client(world.middleware(app, user_resolver=user_from_header)) as http:
        body = (await http.post("/", headers={"x-user": "alice"})).json()
    assert len(body["ids"]) == 1 and world.created == body["ids"]


# ------------------------------------------------------------------ websockets


async def _websocket(
    middleware: Any, headers: list[tuple[bytes, bytes]], scheme: str = "ws"
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    scope: dict[str, Any] = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": scheme,
        "path": "/ws",
        "query_string": b"",
        "headers": headers,
    }
    inbox = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(dict(message))

    await middleware(scope, receive, send)
    return sent, scope


def _ws_app(*, create: bool) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        session = scope["ai_session"]
        if create:
            await session.ensure()
        await send({"type": "websocket.accept"})
        text = session.session_id if session.bound else "-"
        await send({"type": "websocket.send", "text": text})
        await receive()

    return app


async def test_websocket_binds_the_users_session(world: World) -> None:
    state = await world.manager.create("alice")
    other = await world.manager.create("bob")
    middleware = world.middleware(_ws_app(create=False), user_resolver=user_from_header)
    sent, scope = await _websocket(
        middleware, [(b"x-user", b"alice"), (b"x-session-id", state.session_id.encode())]
    )
    assert sent[1] == {"type": "websocket.send", "text": state.session_id}
    assert scope["ai_session"].bound is False  # unbound after the connection
    sent, _ = await _websocket(
        middleware, [(b"x-user", b"alice"), (b"x-session-id", other.session_id.encode())]
    )
    assert sent[1]["text"] == "-"


async def test_websocket_lazy_session_sets_cookie_on_accept(world: World) -> None:
    middleware = world.middleware(_ws_app(create=True), user_resolver=user_from_header)
    sent, _ = await _websocket(middleware, [(b"x-user", b"alice")], scheme="wss")
    accept = sent[0]
    assert accept["type"] == "websocket.accept"
    cookies = [v.decode() for k, v in accept["headers"] if k == b"set-cookie"]
    assert len(cookies) == 1 and "Secure" in cookies[0]
    value = cookies[0].split(";", 1)[0].split("=", 1)[1]
    payload = CookieCodec(SECRET, max_age=3600).decode(value)
    assert payload is not None and payload.session_id == sent[1]["text"]


async def test_request_without_app_is_a_clear_error(world: World) -> None:
    middleware = SessionMiddleware(session_manager=world.manager, config=world.config())
    with pytest.raises(RuntimeError, match="wrap"):
        await middleware({"type": "http"}, None, None)
    wrapped = middleware.wrap(_ws_app(create=False))
    assert wrapped.app is not None and middleware.app is None
    assert wrapped.codec is middleware.codec


async def test_httpx_transport_sanity(world: World) -> None:
    # the ASGI transport really goes through the middleware (scope["ai_session"] present)
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send_json(send, {"has": "ai_session" in scope})

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=world.middleware(app)), base_url="http://t"
    ) as http:
        assert (await http.get("/")).json() == {"has": True}


async def test_session_created_after_the_response_started_is_reported(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lexigram.ai.session.middleware import session_middleware

    warnings: list[str] = []

    class Recorder:
        def warning(self, event: str, **fields: Any) -> None:
            warnings.append(event)

    monkeypatch.setattr(session_middleware, "logger", Recorder())

    async def late(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await scope["ai_session"].ensure()
        await send({"type": "http.response.body", "body": b"late"})

    async def early(scope: Any, receive: Any, send: Any) -> None:
        await scope["ai_session"].ensure()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"early"})

    async with client(world.middleware(late, user_resolver=user_from_header)) as http:
        response = await http.post("/", headers={"x-user": "alice"})
    assert response.headers.get_list("set-cookie") == [] and len(world.created) == 1
    assert warnings == ["ai_session.web.session_created_after_response"]
    async with client(world.middleware(early, user_resolver=user_from_header)) as http:
        response = await http.post("/", headers={"x-user": "alice"})
    assert len(response.headers.get_list("set-cookie")) == 1
    assert warnings == ["ai_session.web.session_created_after_response"]  # no new warning
