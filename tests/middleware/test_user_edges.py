"""Who the caller is, at the edges (found by an outside audit).

A user id of whitespace only failed every request inside the middleware, before the
app ran (``''`` is "no user"); an ``is_authenticated`` *method* returning False (old
Django style) counted as logged in, the bound method being true.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.authentication import SimpleUser, UnauthenticatedUser

from lexigram.ai.session.middleware import identity
from lexigram.ai.session.middleware.identity import user_from_scope

from .conftest import World, client, send_json


async def _health(scope: Any, receive: Any, send: Any) -> None:
    session = scope["ai_session"]
    await send_json(send, {"user": session.user_id, "bound": session.bound})


class _Recorder:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.records.append((event, fields))

    info = debug = warning


@pytest.mark.parametrize("blank", [" ", "   ", "\t", " \n "])
async def test_a_blank_user_id_is_no_user(
    world: World, blank: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = _Recorder()
    monkeypatch.setattr(identity, "logger", recorder)
    by_resolver = world.middleware(_health, user_resolver=lambda scope: blank)

    async def async_resolver(scope: Any) -> str:
        return blank

    by_async = world.middleware(_health, user_resolver=async_resolver)

    def with_user(user: Any) -> Any:
        inner = world.middleware(_health)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            scope["user"] = user
            await inner(scope, receive, send)

        return app

    apps = [by_resolver, by_async, with_user(blank), with_user(SimpleUser(blank))]
    for app in apps:
        async with client(app) as http:
            response = await http.get("/health")
        assert response.status_code == 200
        assert response.json() == {"user": None, "bound": False}
    assert [event for event, _ in recorder.records] == ["ai_session.web.blank_user_id"] * 4
    # the value itself is never logged
    assert all(f == {"detail": "user id is whitespace only"} for _, f in recorder.records)


def test_an_empty_user_id_is_still_no_user_without_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = _Recorder()
    monkeypatch.setattr(identity, "logger", recorder)
    assert user_from_scope({"user": ""}) is None
    assert recorder.records == []


class _MethodFlag:
    """Old Django style: ``is_authenticated`` is a method."""

    def __init__(self, identity: str, authenticated: bool) -> None:
        self.identity = identity
        self._authenticated = authenticated

    def is_authenticated(self) -> bool:
        return self._authenticated


class _NoFlag:
    identity = "erin"


class _NotImplemented:
    identity = "fay"

    def is_authenticated(self) -> bool:
        raise NotImplementedError


def test_is_authenticated_as_a_method_is_called() -> None:
    assert user_from_scope({"user": _MethodFlag("gina", False)}) is None
    assert user_from_scope({"user": _MethodFlag("gina", True)}) == "gina"


def test_a_user_without_is_authenticated_counts_as_logged_in() -> None:
    assert user_from_scope({"user": _NoFlag()}) == "erin"
    assert user_from_scope({"user": _NotImplemented()}) == "fay"
    assert user_from_scope({"user": SimpleUser("hana")}) == "hana"
    assert user_from_scope({"user": UnauthenticatedUser()}) is None


async def test_a_method_flag_false_gets_no_session(world: World) -> None:
    inner = world.middleware(_health)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        scope["user"] = _MethodFlag("gina", False)
        await inner(scope, receive, send)

    async with client(app) as http:
        assert (await http.get("/")).json() == {"user": None, "bound": False}
