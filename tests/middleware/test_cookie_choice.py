"""Which cookie the response deletes after ``end()``, and which of several cookies of the
name a request goes by (found by an outside audit).

``end()`` of a session reached through the header deleted the browser's cookie, which
named another, live session. Of two cookies of the name (one per Path after
``cookie_path`` moved), only the first was read: a stale first one left the request
unbound and the response deleted the valid one.
"""

from __future__ import annotations

from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionStatus

from lexigram.ai.session.middleware.cookies import CookieCodec

from .conftest import SECRET, World, client, send_json, set_cookies, user_from_header

NAME = "lexigram_session"


def _cookie(session_id: str | None, anonymous_id: str | None = None, secret: str = SECRET) -> str:
    return CookieCodec(secret, max_age=3600).encode(session_id, anonymous_id)


def _deletes(response: Any) -> bool:
    return any("max-age=0" in c.lower() for c in set_cookies(response))


def _reporting_app(*, end: bool = False, ensure: bool = False) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        session = scope["ai_session"]
        body: dict[str, Any] = {"bound": session.session_id if session.bound else None}
        if end and session.bound:
            body["ended"] = session.session_id
            await session.end()
        if ensure:
            body["ensured"] = (await session.ensure()).session_id
            body["user"] = session.user_id
        await send_json(send, body)

    return app


# ------------------------------------------------------------------ end()


async def test_ending_a_header_session_keeps_the_cookie_of_another(world: World) -> None:
    api = await world.manager.create("alice")
    browser = await world.manager.create("alice")
    app = world.middleware(_reporting_app(end=True), user_resolver=user_from_header)
    headers = {
        "x-user": "alice",
        "X-Session-ID": api.session_id,
        "cookie": f"{NAME}={_cookie(browser.session_id)}",
    }
    async with client(app) as http:
        response = await http.post("/end", headers=headers)
    assert response.json()["ended"] == api.session_id
    assert set_cookies(response) == []  # the browser's cookie is left alone
    closed = await world.manager.get_header(api.session_id)
    kept = await world.manager.get_header(browser.session_id)
    assert closed is not None and closed.status == SessionStatus.CLOSED
    assert kept is not None and kept.status == SessionStatus.ACTIVE


@pytest.mark.parametrize("source", ["header", "cookie"])
async def test_ending_the_session_the_cookie_names_deletes_it(world: World, source: str) -> None:
    state = await world.manager.create("alice")
    app = world.middleware(_reporting_app(end=True), user_resolver=user_from_header)
    headers = {"x-user": "alice", "cookie": f"{NAME}={_cookie(state.session_id)}"}
    if source == "header":
        headers["X-Session-ID"] = state.session_id
    async with client(app) as http:
        response = await http.post("/end", headers=headers)
    assert response.json()["ended"] == state.session_id
    assert _deletes(response)


async def test_ending_a_header_session_still_deletes_a_forged_cookie(world: World) -> None:
    api = await world.manager.create("alice")
    forged = _cookie("whatever-" + "x" * 12, secret="attacker-" + "y" * 40)
    app = world.middleware(_reporting_app(end=True), user_resolver=user_from_header)
    headers = {"x-user": "alice", "X-Session-ID": api.session_id, "cookie": f"{NAME}={forged}"}
    async with client(app) as http:
        response = await http.post("/end", headers=headers)
    assert _deletes(response)


async def test_end_then_ensure_in_one_request_deletes_nothing_and_sets_the_new_cookie(
    world: World,
) -> None:
    api = await world.manager.create("alice")
    browser = await world.manager.create("alice")
    app = world.middleware(_reporting_app(end=True, ensure=True), user_resolver=user_from_header)
    headers = {
        "x-user": "alice",
        "X-Session-ID": api.session_id,
        "cookie": f"{NAME}={_cookie(browser.session_id)}",
    }
    async with client(app) as http:
        response = await http.post("/end", headers=headers)
    [cookie] = set_cookies(response)
    assert "max-age=3600" in cookie.lower()  # the new session's cookie, not a deletion


# ----------------------------------------------------- several cookies of the name


async def _stale_and_live(world: World, how: str) -> tuple[str, str]:
    """A cookie value that does not bind (``how``), and one naming alice's live session."""
    live = await world.manager.create("alice")
    if how == "retired-secret":
        return _cookie(live.session_id, secret="retired-" + "r" * 40), _cookie(live.session_id)
    old = await world.manager.create("alice")
    if how == "closed":
        await world.manager.close(old.session_id)
    elif how == "foreign":
        old = await world.manager.create("bob")
    elif how == "deleted":
        await world.manager.delete(old.session_id)
    return _cookie(old.session_id), _cookie(live.session_id)


@pytest.mark.parametrize("how", ["closed", "retired-secret", "foreign", "deleted"])
async def test_a_stale_first_cookie_does_not_hide_a_valid_second(world: World, how: str) -> None:
    stale, fresh = await _stale_and_live(world, how)
    live_id = CookieCodec(SECRET, max_age=3600).decode(fresh)
    assert live_id is not None
    app = world.middleware(_reporting_app(), user_resolver=user_from_header)
    async with client(app) as http:
        response = await http.get(
            "/chat/x", headers={"x-user": "alice", "cookie": f"{NAME}={stale}; {NAME}={fresh}"}
        )
    assert response.json()["bound"] == live_id.session_id
    [renewed] = set_cookies(response)
    assert "max-age=0" not in renewed.lower()  # renewed, never deleted
    again = CookieCodec(SECRET, max_age=3600).decode(renewed.split(";")[0].split("=", 1)[1])
    assert again is not None and again.session_id == live_id.session_id


async def test_a_valid_first_cookie_still_wins(world: World) -> None:
    stale, fresh = await _stale_and_live(world, "closed")
    app = world.middleware(_reporting_app(), user_resolver=user_from_header)
    async with client(app) as http:
        response = await http.get(
            "/", headers={"x-user": "alice", "cookie": f"{NAME}={fresh}; {NAME}={stale}"}
        )
    assert response.json()["bound"] is not None and not _deletes(response)


async def test_when_no_value_binds_the_first_verified_one_decides_as_before(world: World) -> None:
    gone = await world.manager.create("alice")
    await world.manager.close(gone.session_id)
    bobs = await world.manager.create("bob")
    bad = _cookie(gone.session_id, secret="retired-" + "r" * 40)
    app = world.middleware(_reporting_app(), user_resolver=user_from_header)
    async with client(app) as http:
        # first verified names a closed session: deleted, as with that cookie alone
        closed_first = await http.get(
            "/",
            headers={
                "x-user": "alice",
                "cookie": f"{NAME}={bad}; {NAME}={_cookie(gone.session_id)}; "
                f"{NAME}={_cookie(bobs.session_id)}",
            },
        )
        # first verified names bob's session: left alone, as with that cookie alone
        foreign_first = await http.get(
            "/",
            headers={
                "x-user": "alice",
                "cookie": f"{NAME}={_cookie(bobs.session_id)}; {NAME}={_cookie(gone.session_id)}",
            },
        )
        # none verifies: deleted
        none_verified = await http.get(
            "/", headers={"x-user": "alice", "cookie": f"{NAME}={bad}; {NAME}=forged.value"}
        )
    assert closed_first.json()["bound"] is None and _deletes(closed_first)
    assert foreign_first.json()["bound"] is None and set_cookies(foreign_first) == []
    assert none_verified.json()["bound"] is None and _deletes(none_verified)


async def test_an_anonymous_caller_keeps_the_identity_of_the_cookie_that_bound(
    world: World,
) -> None:
    config = world.config(allow_anonymous=True)
    app = world.middleware(_reporting_app(ensure=True), config=config)
    async with client(app) as http:
        first = (await http.post("/")).json()
    owner_anon = first["user"].removeprefix("anonymous:")
    stale_session = await world.manager.create("anonymous:someone-else-aaaa")
    await world.manager.close(stale_session.session_id)
    stale = _cookie(stale_session.session_id, "someone-else-aaaa")
    fresh = _cookie(first["ensured"], owner_anon)
    async with client(app) as http:
        again = await http.post("/", headers={"cookie": f"{NAME}={stale}; {NAME}={fresh}"})
    assert again.json()["bound"] == first["ensured"]
    assert again.json()["user"] == first["user"]
    [renewed] = set_cookies(again)
    payload = CookieCodec(SECRET, max_age=3600).decode(renewed.split(";")[0].split("=", 1)[1])
    assert payload is not None and payload.anonymous_id == owner_anon


async def test_one_verified_value_costs_one_look_up(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = await world.manager.create("alice")
    looked_up: list[str] = []
    original = world.manager.get_header

    async def counting(session_id: str) -> Any:
        looked_up.append(session_id)
        return await original(session_id)

    monkeypatch.setattr(world.manager, "get_header", counting)
    app = world.middleware(_reporting_app(), user_resolver=user_from_header)
    forged = _cookie(state.session_id, secret="retired-" + "r" * 40)
    cookie = _cookie(state.session_id)
    async with client(app) as http:
        await http.get(
            "/", headers={"x-user": "alice", "cookie": f"{NAME}={forged}; {NAME}={cookie}"}
        )
        one = len(looked_up)
        # the header decides: the cookies are not looked up at all
        other = await world.manager.create("alice")
        looked_up.clear()
        await http.get(
            "/",
            headers={
                "x-user": "alice",
                "X-Session-ID": other.session_id,
                "cookie": f"{NAME}={_cookie('gone-' + 'g' * 12)}; {NAME}={cookie}",
            },
        )
    assert one == 1
    assert looked_up == [other.session_id]
