"""Security properties of the middleware (OWASP session management)."""

from __future__ import annotations

import base64
import string
from typing import Any

import pytest
from itsdangerous import URLSafeTimedSerializer

from lexigram.ai.session.exceptions import SessionError
from lexigram.ai.session.middleware import resolution
from lexigram.ai.session.middleware.cookies import CookieCodec

from .conftest import SECRET, World, client, echo_app, send_json, set_cookies, user_from_header


def _cookie(session_id: str, anonymous_id: str | None = None, secret: str = SECRET) -> str:
    return CookieCodec(secret, max_age=3600).encode(session_id, anonymous_id)


# ------------------------------------------------------------ ownership


@pytest.mark.parametrize("source", ["header", "query", "cookie"])
async def test_another_users_session_is_not_bound(world: World, source: str) -> None:
    bobs = await world.manager.create("bob")
    await world.manager.add_message(bobs.session_id, "user", "bob's secret")
    app = world.middleware(echo_app(), user_resolver=user_from_header)
    headers = {"x-user": "alice"}
    params: dict[str, str] = {}
    cookies: dict[str, str] = {}
    if source == "header":
        headers["X-Session-ID"] = bobs.session_id
    elif source == "query":
        params["session_id"] = bobs.session_id
    else:
        cookies["lexigram_session"] = _cookie(bobs.session_id)  # bob's genuine cookie
    async with client(app, cookies=cookies) as http:
        seen = (await http.get("/", headers=headers, params=params)).json()
        created = (await http.post("/", headers=headers, params=params)).json()
    assert seen["session_id"] is None and seen["bound_before"] is False
    # asking for a session gives alice her own, never bob's
    assert created["created"] is True and created["user_id"] == "alice"
    assert created["session_id"] != bobs.session_id
    bob_now = await world.manager.get_state(bobs.session_id)
    assert bob_now is not None and bob_now.turn_count == 1 and bob_now.user_id == "bob"


async def test_a_request_without_user_binds_no_id(world: World) -> None:
    state = await world.manager.create("alice")
    app = world.middleware(echo_app(create_on=frozenset()), user_resolver=user_from_header)
    async with client(app, cookies={"lexigram_session": _cookie(state.session_id)}) as http:
        by_header = (await http.get("/", headers={"X-Session-ID": state.session_id})).json()
        by_cookie = (await http.get("/")).json()
    assert by_header["session_id"] is None and by_cookie["session_id"] is None


@pytest.mark.parametrize("what", ["closed", "expired", "unknown", "deleted"])
async def test_closed_expired_or_unknown_sessions_are_not_bound(world: World, what: str) -> None:
    state = await world.manager.create("alice")
    session_id = state.session_id
    if what == "closed":
        await world.manager.close(session_id)
    elif what == "expired":
        world.clock.advance(3601)
    elif what == "deleted":
        await world.manager.delete(session_id)
    else:
        session_id = "never-issued-" + "a" * 10
    app = world.middleware(echo_app(create_on=frozenset()), user_resolver=user_from_header)
    async with client(app) as http:
        body = (await http.get("/", headers={"x-user": "alice", "X-Session-ID": session_id})).json()
    assert body["session_id"] is None


async def test_rejections_are_logged_with_the_reason_but_never_the_id(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    records: list[tuple[str, dict[str, Any]]] = []

    class Recorder:
        def info(self, event: str, **fields: Any) -> None:
            records.append((event, fields))

        warning = debug = info

    monkeypatch.setattr(resolution, "logger", Recorder())
    bobs = await world.manager.create("bob")
    app = world.middleware(echo_app(create_on=frozenset()), user_resolver=user_from_header)
    async with client(app) as http:
        await http.get("/", headers={"x-user": "alice", "X-Session-ID": bobs.session_id})
        await http.get("/", headers={"x-user": "alice"}, params={"session_id": "nope-nope"})
        await http.get("/", headers={"cookie": "lexigram_session=forged.value.sig"})
    events = [(e, f.get("reason"), f.get("source")) for e, f in records]
    assert ("ai_session.web.session_not_bound", "foreign", "header") in events
    assert ("ai_session.web.session_not_bound", "unknown", "query") in events
    assert any(e == "ai_session.web.cookie_rejected" for e, _, _ in events)
    dumped = repr(records)
    assert bobs.session_id not in dumped and "nope-nope" not in dumped


# ------------------------------------------------------------- cookies


async def test_forged_cookie_is_ignored(world: World) -> None:
    state = await world.manager.create("alice")
    forged = _cookie(state.session_id, secret="attacker-secret-" + "y" * 30)
    app = world.middleware(echo_app(create_on=frozenset()), user_resolver=user_from_header)
    async with client(app, cookies={"lexigram_session": forged}) as http:
        response = await http.get("/", headers={"x-user": "alice"})
    assert response.json()["session_id"] is None
    [deleted] = set_cookies(response)
    assert "Max-Age=0" in deleted


async def test_tampered_cookie_is_ignored(world: World) -> None:
    mine = await world.manager.create("alice")
    other = await world.manager.create("alice")
    genuine = _cookie(mine.session_id)
    payload, timestamp, signature = genuine.split(".")
    # swap the payload for one naming another session, keep the old signature
    other_payload = base64.urlsafe_b64encode(
        ('{"sid":"' + other.session_id + '"}').encode()
    ).rstrip(b"=").decode()
    flipped = "A" if signature[-2] != "A" else "B"
    tampered = [
        f"{other_payload}.{timestamp}.{signature}",
        f"{payload}.{timestamp}.{signature[:-2]}{flipped}{signature[-1]}",
        f"{payload}.{timestamp}.",
        mine.session_id,  # an unsigned bare id
    ]
    app = world.middleware(echo_app(create_on=frozenset()), user_resolver=user_from_header)
    for value in tampered:
        async with client(app, cookies={"lexigram_session": value}) as http:
            body = (await http.get("/", headers={"x-user": "alice"})).json()
        assert body["session_id"] is None, value
    async with client(app, cookies={"lexigram_session": genuine}) as http:
        assert (await http.get("/", headers={"x-user": "alice"})).json()["session_id"] == (
            mine.session_id
        )


async def test_cookie_from_another_salt_or_secret_is_ignored(world: World) -> None:
    state = await world.manager.create("alice")
    wrong_salt = URLSafeTimedSerializer(SECRET, salt="other").dumps({"sid": state.session_id})
    app = world.middleware(echo_app(create_on=frozenset()), user_resolver=user_from_header)
    async with client(app, cookies={"lexigram_session": wrong_salt}) as http:
        assert (await http.get("/", headers={"x-user": "alice"})).json()["session_id"] is None


# ------------------------------------------------------- lazy creation


async def test_1000_anonymous_requests_create_no_session(world: World) -> None:
    alice = await world.manager.create("alice")
    before = len(world.created)
    # anonymous sessions allowed, but the app only asks for one on POST
    app = world.middleware(
        echo_app(create_on=frozenset({"POST"})), config=world.config(allow_anonymous=True)
    )
    async with client(app) as http:
        for _ in range(1000):
            response = await http.get("/")
            assert response.json()["session_id"] is None
            assert set_cookies(response) == []
    assert len(world.created) == before
    assert await world.manager.count_live_sessions("alice") == 1
    assert (await world.manager.get_header(alice.session_id)) is not None


async def test_anonymous_requests_asking_for_a_session_are_refused_when_not_allowed(
    world: World,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await scope["ai_session"].ensure()
            await send_json(send, {"ok": True})
        except SessionError:
            await send_json(send, {"ok": False}, status=401)

    middleware = world.middleware(app)  # allow_anonymous defaults to False
    async with client(middleware) as http:
        statuses = [(await http.post("/")).status_code for _ in range(1000)]
    assert statuses == [401] * 1000
    assert world.created == []


# ``allow_anonymous`` with cookies off (a case here before) is refused by the config
# now: tests/config/test_web_fields_more.py.
@pytest.mark.parametrize("config", [{}], ids=["default"])
async def test_a_request_without_user_cannot_create_for_a_named_user(
    world: World, config: dict[str, Any]
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            state = await scope["ai_session"].get_or_create("victim")
            await send_json(send, {"created": state.user_id})
        except SessionError as exc:
            await send_json(send, {"refused": type(exc).__name__}, status=401)

    middleware = world.middleware(app, config=world.config(max_sessions_per_user=3, **config))
    async with client(middleware) as http:
        answers = [await http.post("/") for _ in range(4)]
    assert [a.json() for a in answers] == [{"refused": "SessionError"}] * 4
    assert all(set_cookies(a) == [] for a in answers)
    assert world.created == []
    assert (await world.manager.create("victim")).user_id == "victim"  # cap untouched


async def test_anonymous_callers_get_their_own_sessions(world: World) -> None:
    app = world.middleware(echo_app(), config=world.config(allow_anonymous=True))
    async with client(app) as one, client(app) as two:
        a = (await one.post("/")).json()
        b = (await two.post("/")).json()
        a_again = (await one.get("/")).json()
        b_again = (await two.get("/")).json()
        # client two presenting client one's session id is not bound
        stolen = (await two.get("/", headers={"X-Session-ID": a["session_id"]})).json()
    assert a["user_id"].startswith("anonymous:") and b["user_id"].startswith("anonymous:")
    assert a["user_id"] != b["user_id"] and a["session_id"] != b["session_id"]
    assert a_again["session_id"] == a["session_id"]
    assert b_again["session_id"] == b["session_id"]
    assert stolen["session_id"] is None


async def test_anonymous_ids_can_not_be_claimed_by_a_user_name(world: World) -> None:
    app = world.middleware(echo_app(), config=world.config(allow_anonymous=True))
    async with client(app) as http:
        anon = (await http.post("/")).json()
    victim_user = anon["user_id"]
    impostor = world.middleware(echo_app(create_on=frozenset()), user_resolver=user_from_header)
    async with client(impostor) as http:
        body = (
            await http.get(
                "/", headers={"x-user": victim_user, "X-Session-ID": anon["session_id"]}
            )
        ).json()
    assert body["session_id"] is None


# ------------------------------------------------------------ fixation


@pytest.mark.parametrize("source", ["header", "query", "cookie"])
async def test_attacker_chosen_id_is_not_adopted(world: World, source: str) -> None:
    chosen = "attacker-chosen-session-id"
    headers = {"x-user": "alice"}
    params: dict[str, str] = {}
    cookies: dict[str, str] = {}
    if source == "header":
        headers["X-Session-ID"] = chosen
    elif source == "query":
        params["session_id"] = chosen
    else:
        # even a correctly signed cookie naming a non-existent session
        cookies["lexigram_session"] = _cookie(chosen)
    app = world.middleware(echo_app(), user_resolver=user_from_header)
    async with client(app, cookies=cookies) as http:
        response = await http.post("/", headers=headers, params=params)
    body = response.json()
    assert body["created"] is True and body["session_id"] != chosen
    assert await world.manager.get_header(chosen) is None
    assert world.created == [body["session_id"]]
    [cookie] = set_cookies(response)
    value = cookie.split(";", 1)[0].split("=", 1)[1]
    payload = CookieCodec(SECRET, max_age=3600).decode(value)
    assert payload is not None and payload.session_id == body["session_id"]


async def test_session_ids_are_128_bit_random(world: World) -> None:
    app = world.middleware(echo_app(), user_resolver=user_from_header)
    ids: list[str] = []
    async with client(app) as http:
        for i in range(300):
            ids.append((await http.post("/", headers={"x-user": f"u{i}"})).json()["session_id"])
    for i in range(300, 2000):
        ids.append((await world.manager.create(f"u{i}")).session_id)
    alphabet = set(string.ascii_letters + string.digits + "-_")
    raw = []
    for session_id in ids:
        assert set(session_id) <= alphabet and len(session_id) == 22
        decoded = base64.urlsafe_b64decode(session_id + "==")
        assert len(decoded) == 16
        raw.append(int.from_bytes(decoded, "big"))
    assert len(set(ids)) == len(ids)
    # every one of the 128 bit positions varies, and is set about half the time
    n = len(raw)
    for bit in range(128):
        ones = sum((value >> bit) & 1 for value in raw)
        assert 0.4 * n < ones < 0.6 * n, (bit, ones)
