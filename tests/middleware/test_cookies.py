"""The session cookie: flags, signing, renewal, deletion, the secret."""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest
from itsdangerous import URLSafeTimedSerializer
from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.middleware import SessionMiddleware
from lexigram.ai.session.middleware.cookies import CookieCodec, read_cookie

from .conftest import SECRET, World, client, echo_app, set_cookies, user_from_header


def _attrs(header: str) -> tuple[str, str, dict[str, str]]:
    first, *rest = [p.strip() for p in header.split(";")]
    name, _, value = first.partition("=")
    attrs: dict[str, str] = {}
    for part in rest:
        key, _, val = part.partition("=")
        attrs[key.lower()] = val
    return name, value, attrs


async def _created_cookie(world: World, *, https: bool = False, **config: Any) -> str:
    app = world.middleware(
        echo_app(), config=world.config(**config), user_resolver=user_from_header
    )
    async with client(app, https=https) as http:
        response = await http.post("/", headers={"x-user": "alice"})
    cookies = set_cookies(response)
    assert len(cookies) == 1
    return cookies[0]


async def test_cookie_flags_on_http(world: World) -> None:
    name, value, attrs = _attrs(await _created_cookie(world))
    assert name == "lexigram_session"
    assert attrs["max-age"] == "3600"
    assert "httponly" in attrs
    assert attrs["samesite"] == "Lax"
    assert attrs["path"] == "/"
    assert "secure" not in attrs and "domain" not in attrs
    payload = CookieCodec(SECRET, max_age=3600).decode(value)
    assert payload is not None and payload.session_id == world.created[0]
    assert world.created[0] not in value  # signed payload, not the bare id


async def test_cookie_flags_on_https_with_path_domain_and_ttl(world: World) -> None:
    header = await _created_cookie(
        world,
        https=True,
        session_ttl=120,
        cookie_path="/chat",
        cookie_domain="example.test",
        cookie_name="sid",
        cookie_samesite="strict",
    )
    name, _, attrs = _attrs(header)
    assert name == "sid"
    assert "secure" in attrs and "httponly" in attrs
    assert attrs["max-age"] == "120"
    assert attrs["path"] == "/chat" and attrs["domain"] == "example.test"
    assert attrs["samesite"] == "Strict"


async def test_no_max_age_when_sessions_never_expire(world: World) -> None:
    _, _, attrs = _attrs(await _created_cookie(world, session_ttl=0))
    assert "max-age" not in attrs and "httponly" in attrs


async def test_samesite_none_is_always_secure(world: World) -> None:
    _, _, attrs = _attrs(await _created_cookie(world, cookie_samesite="none"))
    assert attrs["samesite"] == "None" and "secure" in attrs


async def test_cookie_is_renewed_while_the_session_is_used(world: World) -> None:
    app = world.middleware(echo_app(), user_resolver=user_from_header)
    async with client(app) as http:
        created = await http.post("/", headers={"x-user": "alice"})
        used = await http.get("/", headers={"x-user": "alice"})
        by_header = await http.get(
            "/", headers={"x-user": "alice", "X-Session-ID": created.json()["session_id"]}
        )
    assert used.json()["session_id"] == created.json()["session_id"]
    renewed = set_cookies(used)
    assert len(renewed) == 1 and "Max-Age=3600" in renewed[0]
    assert set_cookies(by_header) == []  # API clients using the header get no cookie
    assert "x-session-id" not in used.headers  # the id is only announced on creation


async def test_cookies_disabled(world: World) -> None:
    app = world.middleware(
        echo_app(), config=world.config(cookie_name=None), user_resolver=user_from_header
    )
    assert app.codec is None
    async with client(app) as http:
        response = await http.post("/", headers={"x-user": "alice"})
    assert set_cookies(response) == []
    assert response.headers["x-session-id"] == response.json()["session_id"]


async def test_cookie_of_a_closed_session_is_deleted(world: World) -> None:
    state = await world.manager.create("alice")
    await world.manager.close(state.session_id)
    value = CookieCodec(SECRET, max_age=3600).encode(state.session_id)
    app = world.middleware(echo_app(), user_resolver=user_from_header)
    async with client(app, cookies={"lexigram_session": value}) as http:
        response = await http.get("/", headers={"x-user": "alice"})
    assert response.json()["session_id"] is None
    [header] = set_cookies(response)
    _, _, attrs = _attrs(header)
    assert attrs["max-age"] == "0"


def test_codec_rejects_an_old_cookie() -> None:
    old = URLSafeTimedSerializer(SECRET, salt="lexigram.ai.session.cookie")
    value = old.dumps({"sid": "abc"})
    assert CookieCodec(SECRET, max_age=60).decode(value) is not None
    real_time = time.time
    try:
        time.time = lambda: real_time() + 120  # type: ignore[assignment]
        assert CookieCodec(SECRET, max_age=60).decode(value) is None
        assert CookieCodec(SECRET, max_age=None).decode(value) is not None
    finally:
        time.time = real_time  # type: ignore[assignment]


def test_codec_rejects_garbage_payloads() -> None:
    codec = CookieCodec(SECRET, max_age=None)
    signer = URLSafeTimedSerializer(SECRET, salt="lexigram.ai.session.cookie")
    assert codec.decode(signer.dumps(["not", "a", "dict"])) is None
    assert codec.decode(signer.dumps({"sid": "bad\x01id"})) is None
    assert codec.decode(signer.dumps({"sid": "x" * 300})) is None
    assert codec.decode("") is None and codec.decode("a" * 5000) is None


def test_read_cookie_parses_several_headers_and_quotes() -> None:
    headers = [(b"cookie", b"a=1; lexigram_session=\"v1\""), (b"Cookie", b"lexigram_session=v2")]
    assert read_cookie(headers, "lexigram_session") == "v1"
    assert read_cookie(headers, "a") == "1"
    assert read_cookie(headers, "missing") is None


def test_production_refuses_cookies_without_a_secret(world: World) -> None:
    config = world.config(cookie_secret=None, env="production")
    with pytest.raises(ConfigurationError, match="cookie_secret"):
        SessionMiddleware(echo_app(), session_manager=world.manager, config=config)
    # with cookies off, no secret is needed
    middleware = SessionMiddleware(
        echo_app(),
        session_manager=world.manager,
        config=world.config(cookie_secret=None, cookie_name=None, env="production"),
    )
    assert middleware.codec is None


async def test_production_without_a_secret_boots_and_refuses_only_the_middleware(
    tmp_path: Any,
) -> None:
    from lexigram import Application
    from lexigram.ai.session import SessionModule

    config = {
        "env": "production",
        "backend": "database",
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'prod.db'}",
        "cookie_secret": None,
    }
    async with Application.boot(modules=[SessionModule.configure(config)]) as app:
        # a worker that never serves HTTP works without a cookie secret
        manager = await app.container.resolve(SessionManagerImpl)
        state = await manager.create("worker")
        assert (await manager.get_header(state.session_id)) is not None
        # the web integration refuses where it is built, naming the field
        with pytest.raises(ConfigurationError, match=r"ai_session\.cookie_secret"):
            await app.container.resolve(SessionMiddleware)
        with pytest.raises(ConfigurationError, match=r"ai_session\.cookie_secret"):
            SessionMiddleware(echo_app(), session_manager=manager)


async def test_development_without_secret_uses_one_process_secret(world: World) -> None:
    config = world.config(cookie_secret=None)
    first = SessionMiddleware(echo_app(), session_manager=world.manager, config=config)
    second = SessionMiddleware(echo_app(), session_manager=world.manager, config=config)
    assert first.codec is not None and second.codec is not None
    value = first.codec.encode("abc")
    assert second.codec.decode(value) is not None
    assert CookieCodec(SECRET, max_age=None).decode(value) is None


def test_env_var_secret_is_not_in_repr(world: World) -> None:
    secret = secrets.token_urlsafe(32)
    middleware = SessionMiddleware(
        echo_app(), session_manager=world.manager, config=world.config(cookie_secret=secret)
    )
    assert secret not in repr(middleware)
