"""Cookie secret rotation: a list of secrets, newest first."""

from __future__ import annotations

import pytest
from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.middleware.cookies import CookieCodec

from .conftest import World, client, echo_app, set_cookies, user_from_header

OLD = "old-secret-" + "o" * 40
NEW = "new-secret-" + "n" * 40


def test_codec_signs_with_the_newest_and_verifies_with_every_secret() -> None:
    old_value = CookieCodec(OLD, max_age=60).encode("s1")
    rotated = CookieCodec([NEW, OLD], max_age=60)
    payload = rotated.decode(old_value)
    assert payload is not None and payload.session_id == "s1"
    new_value = rotated.encode("s1")
    assert CookieCodec(NEW, max_age=60).decode(new_value) is not None  # signed with NEW
    assert CookieCodec(OLD, max_age=60).decode(new_value) is None
    assert CookieCodec(NEW, max_age=60).decode(old_value) is None  # OLD dropped: refused


def test_config_accepts_a_list_and_names_a_bad_entry_without_echoing_it() -> None:
    config = SessionConfig(cookie_secret=[NEW, OLD])
    assert config.cookie_secret == [NEW, OLD]
    assert NEW not in repr(config) and OLD not in repr(config)
    with pytest.raises(ConfigurationError, match=r"cookie_secret\[1\]") as caught:
        SessionConfig(cookie_secret=[NEW, 12345])
    assert "12345" not in str(caught.value)
    with pytest.raises(ConfigurationError, match="cookie_secret"):
        SessionConfig(cookie_secret=[])


async def test_a_cookie_signed_with_the_old_secret_is_accepted_and_resigned(world: World) -> None:
    old_app = world.middleware(
        echo_app(), config=world.config(cookie_secret=OLD), user_resolver=user_from_header
    )
    async with client(old_app) as http:
        created = await http.post("/", headers={"x-user": "alice"})
    old_cookie = set_cookies(created)[0].split(";")[0]
    session_id = created.json()["session_id"]

    new_app = world.middleware(
        echo_app(), config=world.config(cookie_secret=[NEW, OLD]), user_resolver=user_from_header
    )
    async with client(new_app) as http:
        used = await http.get("/", headers={"x-user": "alice", "cookie": old_cookie})
    assert used.json()["session_id"] == session_id  # the old cookie still binds the session
    renewed = set_cookies(used)
    assert len(renewed) == 1
    value = renewed[0].split(";")[0].partition("=")[2]
    payload = CookieCodec(NEW, max_age=3600).decode(value)  # re-signed with the newest
    assert payload is not None and payload.session_id == session_id
    assert CookieCodec(OLD, max_age=3600).decode(value) is None
