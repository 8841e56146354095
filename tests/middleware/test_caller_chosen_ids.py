"""A session created under the caller's own id (``create(session_id=...)``) is reachable
through the middleware: any id the manager accepts is bound from the header (UTF-8),
the query (percent-encoded) and the cookie, and nothing else is."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lexigram.ai.session.middleware import SessionMiddleware
from lexigram.ai.session.middleware.cookies import CookieCodec

from .conftest import SECRET, World, client, echo_app, send_json, user_from_header

IDS = [
    "ticket/42",
    "alice@example.com:chat-1",
    "thread#7",
    "order 42",
    "commande-é",
    "会話-1",
    "t" * 255,
]


@pytest.mark.parametrize("session_id", IDS)
async def test_any_id_the_manager_accepts_is_bound_from_header_query_and_cookie(
    world: World, session_id: str
) -> None:
    await world.manager.create("alice", session_id=session_id)
    app = world.middleware(echo_app(), user_resolver=user_from_header)
    cookie = CookieCodec(SECRET, max_age=3600).encode(session_id)
    async with client(app) as http:
        by_header = await http.get(
            "/", headers=[(b"x-user", b"alice"), (b"x-session-id", session_id.encode())]
        )
        by_query = await http.get(
            "/", headers={"x-user": "alice"}, params={"session_id": session_id}
        )
        by_cookie = await http.get(
            "/", headers={"x-user": "alice", "cookie": f"lexigram_session={cookie}"}
        )
    for response in (by_header, by_query, by_cookie):
        assert response.json()["session_id"] == session_id


@pytest.mark.parametrize("bad", ["a\x01b", " ", "t" * 256])
async def test_an_id_the_manager_refuses_is_not_bound(world: World, bad: str) -> None:
    app = world.middleware(echo_app(), user_resolver=user_from_header)
    async with client(app) as http:
        response = await http.get("/", headers={"x-user": "alice"}, params={"session_id": bad})
    assert response.status_code == 200
    assert response.json()["session_id"] is None


async def test_an_async_manager_source_is_called_once_for_concurrent_first_requests(
    world: World,
) -> None:
    calls: list[int] = []

    async def source() -> Any:
        calls.append(1)
        await asyncio.sleep(0.01)
        return world.manager

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send_json(send, {"bound": scope["ai_session"].bound})

    wrapped = SessionMiddleware(app, session_manager=source, config=world.config())
    async with client(wrapped) as http:
        responses = await asyncio.gather(*(http.get("/") for _ in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert len(calls) == 1
