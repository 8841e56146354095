"""Who may use the explorer, and when it may write (in-process, no network traffic)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from lexigram.contracts.ai.session import SessionStatus

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.explorer import ExplorerSettings
from lexigram.ai.session.explorer.access import TOKEN_COOKIE
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from tests.explorer.conftest import client_for, csrf_of
from tests.explorer.seed import Story, seed_story

TOKEN = "s3cret-token-for-tests"
PATHS = ["/", "/?user=alice", "/session?id=trip", "/api/info", "/api/session?id=trip",
         "/static/explorer.css"]


@pytest.fixture
async def store() -> AsyncIterator[InMemorySessionStore]:
    store = InMemorySessionStore()
    await store.initialize()
    yield store
    await store.close()


@pytest.fixture
async def story(store: InMemorySessionStore) -> Story:
    return await seed_story(store)


# ------------------------------------------------------------------- addresses
@pytest.mark.parametrize("address", ["192.0.2.1", "10.0.0.5", "::ffff:192.0.2.1", "2001:db8::1"])
async def test_a_client_off_this_machine_is_refused_when_bound_to_loopback(
    store: InMemorySessionStore, story: Story, address: str
) -> None:
    async with client_for(store, client=(address, 40000)) as http:
        for path in PATHS:
            answer = await http.get(path)
            assert answer.status_code == 403, path
            assert "trip" not in answer.text and "Plan three days" not in answer.text


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"])
async def test_loopback_clients_are_served(
    store: InMemorySessionStore, story: Story, address: str
) -> None:
    async with client_for(store, client=(address, 40000)) as http:
        for path in PATHS:
            assert (await http.get(path)).status_code == 200, path


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "192.0.2.1:8765"])
async def test_a_host_header_naming_another_machine_is_refused(
    store: InMemorySessionStore, story: Story, host: str
) -> None:
    async with client_for(store) as http:
        answer = await http.get("/api/session?id=trip", headers={"host": host})
    assert answer.status_code == 403 and "trip" not in answer.text


async def test_localhost_names_are_accepted_as_host(
    store: InMemorySessionStore, story: Story
) -> None:
    async with client_for(store, base_url="http://localhost:8765") as http:
        assert (await http.get("/")).status_code == 200
    async with client_for(store, base_url="http://[::1]:8765") as http:
        assert (await http.get("/")).status_code == 200


def test_another_host_needs_a_token() -> None:
    with pytest.raises(SessionValidationError) as caught:
        ExplorerSettings(host="0.0.0.0")
    assert caught.value.field == "token"
    with pytest.raises(SessionValidationError) as short:
        ExplorerSettings(host="0.0.0.0", token="short")
    assert short.value.field == "token"
    with pytest.raises(SessionValidationError) as spaced:
        ExplorerSettings(token="has a space in it")
    assert spaced.value.field == "token"
    assert ExplorerSettings(host="0.0.0.0", token=TOKEN).loopback is False
    assert ExplorerSettings(host="localhost").loopback is True


def test_the_token_comes_from_the_environment_when_not_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AI_SESSION_EXPLORER_TOKEN", TOKEN)
    assert ExplorerSettings.from_options(host="0.0.0.0").token == TOKEN
    assert ExplorerSettings.from_options(token="other-token-123").token == "other-token-123"


# ----------------------------------------------------------------------- token
async def test_without_the_token_every_request_is_refused(
    store: InMemorySessionStore, story: Story
) -> None:
    settings = ExplorerSettings(host="0.0.0.0", token=TOKEN)
    async with client_for(store, settings, client=("192.0.2.1", 40000),
                          base_url="http://192.0.2.10:8765") as http:
        for path in PATHS:
            bare = await http.get(path)
            assert bare.status_code == 401, path
            assert "Plan three days" not in bare.text
            wrong = await http.get(path, headers={"authorization": "Bearer not-the-token-x"})
            assert wrong.status_code == 401, path
            assert (await http.get(path, headers={"authorization": f"Bearer {TOKEN}"})
                    ).status_code == 200
            assert (await http.get(path, headers={"x-explorer-token": TOKEN})).status_code == 200


async def test_token_in_the_url_sets_a_cookie_and_is_removed_from_the_url(
    store: InMemorySessionStore, story: Story
) -> None:
    settings = ExplorerSettings(host="0.0.0.0", token=TOKEN)
    async with client_for(store, settings, client=("192.0.2.1", 40000),
                          base_url="http://192.0.2.10:8765") as http:
        wrong = await http.get("/session", params={"id": "trip", "token": "wrong-token-xyz"})
        assert wrong.status_code == 401
        opened = await http.get("/session", params={"id": "trip", "token": TOKEN})
        assert opened.status_code == 303
        assert opened.headers["location"] == "/session?id=trip"
        cookie = opened.headers["set-cookie"]
        assert cookie.startswith(f"{TOKEN_COOKIE}=") and "HttpOnly" in cookie
        assert "path=/;" in cookie.lower() + ";"  # not mounted: the whole site is ours
        assert "samesite=strict" in cookie.lower()
        follow = await http.get("/session", params={"id": "trip"})  # cookie kept by httpx
        assert follow.status_code == 200 and "Plan three days" in follow.text


@pytest.mark.parametrize("path", ["//evil.example/login", "/\\evil.example/login", "///x"])
async def test_the_token_redirect_never_leaves_the_site(
    store: InMemorySessionStore, path: str
) -> None:
    """``//evil.example/login?token=…`` was redirected to ``//evil.example/login``, which a
    browser follows off-site (an outside audit)."""
    from lexigram.ai.session.explorer import create_app
    from lexigram.ai.session.manager.core import SessionManagerImpl
    from tests.explorer.seed import CONFIG

    app = create_app(SessionManagerImpl(store, CONFIG), ExplorerSettings(token=TOKEN))
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": f"token={TOKEN}".encode(), "headers": [(b"host", b"127.0.0.1:8765")],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8765),
    }
    await app(scope, receive, send)
    start = sent[0]
    assert start["status"] == 303
    location = dict(start["headers"])[b"location"].decode()  # type: ignore[arg-type]
    assert location.startswith("/") and not location.startswith(("//", "/\\"))


async def test_a_token_also_guards_a_loopback_explorer(
    store: InMemorySessionStore, story: Story
) -> None:
    async with client_for(store, ExplorerSettings(token=TOKEN)) as http:
        assert (await http.get("/api/info")).status_code == 401
        assert (await http.get("/api/info", headers={"x-explorer-token": TOKEN})
                ).status_code == 200


async def test_answers_carry_the_security_headers(
    store: InMemorySessionStore, story: Story
) -> None:
    async with client_for(store) as http:
        page = await http.get("/session", params={"id": "trip"})
        refused = await http.get("/", headers={"host": "evil.example"})
    for answer in (page, refused):
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert answer.headers["x-frame-options"] == "DENY"


# ---------------------------------------------------------------------- writes
async def _csrf(store: InMemorySessionStore, http: object) -> str:
    page = await http.get("/confirm/close", params={"id": "trip"})  # type: ignore[attr-defined]
    assert page.status_code == 200
    return csrf_of(page.text)


async def test_writes_are_refused_without_allow_writes(
    store: InMemorySessionStore, story: Story
) -> None:
    async with client_for(store) as http:
        page = await http.get("/session", params={"id": "trip"})
        assert "close-link" not in page.text and "restore-link" not in page.text
        for action, query in [("close", {}), ("restore", {"checkpoint": story.first_checkpoint}),
                              ("fork", {})]:
            confirm = await http.get(f"/confirm/{action}", params={"id": "trip", **query})
            assert confirm.status_code == 403
            done = await http.post(f"/actions/{action}", data={
                "id": "trip", "confirm": "yes", "csrf": "anything", "branch_name": "x", **query
            })
            assert done.status_code == 403
    trip = await store.load("trip")
    assert trip is not None and trip.status is SessionStatus.ACTIVE and trip.turn_count == 9
    assert trip.checkpoint_id == story.second_checkpoint
    assert [b.state.session_id for b in await store.list_branches("trip")] == [
        story.budget, story.rainy
    ]


async def test_a_write_needs_the_csrf_token_same_origin_and_the_confirmation(
    store: InMemorySessionStore, story: Story
) -> None:
    async with client_for(store, ExplorerSettings(allow_writes=True)) as http:
        csrf = await _csrf(store, http)
        no_csrf = await http.post("/actions/close", data={"id": "trip", "confirm": "yes"})
        bad_csrf = await http.post("/actions/close",
                                   data={"id": "trip", "confirm": "yes", "csrf": "forged"})
        foreign = await http.post("/actions/close",
                                  data={"id": "trip", "confirm": "yes", "csrf": csrf},
                                  headers={"origin": "http://evil.example"})
        sandboxed = await http.post("/actions/close",
                                    data={"id": "trip", "confirm": "yes", "csrf": csrf},
                                    headers={"origin": "null"})
        unconfirmed = await http.post("/actions/close", data={"id": "trip", "csrf": csrf})
        assert (no_csrf.status_code, bad_csrf.status_code, foreign.status_code,
                sandboxed.status_code) == (403, 403, 403, 403)
        assert unconfirmed.status_code == 400 and 'name="confirm"' in unconfirmed.text
        record = await store.load_record("trip")
        assert record is not None and record.state.status is SessionStatus.ACTIVE

        closed = await http.post("/actions/close", data={"id": "trip", "confirm": "yes",
                                                         "csrf": csrf},
                                 headers={"origin": "http://127.0.0.1:8765"})
        assert closed.status_code == 303
        assert closed.headers["location"] == "/session?id=trip&done=closed"
    record = await store.load_record("trip")
    assert record is not None and record.state.status is SessionStatus.CLOSED


async def test_restore_and_fork_with_allow_writes(
    store: InMemorySessionStore, story: Story
) -> None:
    async with client_for(store, ExplorerSettings(allow_writes=True)) as http:
        csrf = await _csrf(store, http)
        confirm = await http.get("/confirm/restore",
                                 params={"id": "trip", "checkpoint": story.first_checkpoint})
        assert confirm.status_code == 200 and story.first_checkpoint in confirm.text
        foreign_cp = await http.post("/actions/restore", data={
            "id": story.budget, "checkpoint": story.first_checkpoint, "confirm": "yes",
            "csrf": csrf})
        assert foreign_cp.status_code == 400
        unknown_cp = await http.post("/actions/restore", data={
            "id": "trip", "checkpoint": "cp-none", "confirm": "yes", "csrf": csrf})
        assert unknown_cp.status_code == 404 and "LEX_ERR_SES_104" in unknown_cp.text
        unknown_session = await http.post("/actions/restore", data={
            "id": "no-such-session", "checkpoint": story.first_checkpoint, "confirm": "yes",
            "csrf": csrf})
        assert unknown_session.status_code == 404 and "LEX_ERR_SES_101" in unknown_session.text
        restored = await http.post("/actions/restore", data={
            "id": "trip", "checkpoint": story.first_checkpoint, "confirm": "yes", "csrf": csrf})
        assert restored.status_code == 303
        trip = await store.load("trip")
        assert trip is not None and trip.turn_count == 5
        assert trip.checkpoint_id == story.first_checkpoint

        forked = await http.post("/actions/fork", data={
            "id": "trip", "checkpoint": story.second_checkpoint, "branch_name": "from-ui",
            "confirm": "yes", "csrf": csrf})
        assert forked.status_code == 303
        branches = await store.list_branches("trip")
        new = [b for b in branches if b.state.branch_name == "from-ui"]
        assert len(new) == 1 and new[0].state.turn_count == 9
        assert forked.headers["location"] == f"/session?id={new[0].state.session_id}&done=forked"
        budget = await store.load(story.budget)
        assert budget is not None and budget.turn_count == 7  # the other branch is untouched


# -------------------------------------------------------------------- escaping
async def test_stored_text_is_escaped_everywhere(store: InMemorySessionStore) -> None:
    from lexigram.ai.session.branching import BranchManager
    from lexigram.ai.session.manager.core import SessionManagerImpl
    from tests.explorer.seed import CONFIG

    evil = '<script>alert("x")</script>'
    manager = SessionManagerImpl(store, CONFIG)
    state = await manager.create('u"><img src=x onerror=alert(1)>', {"k": evil},
                                 session_id='s"><b>id')
    await manager.add_message(state.session_id, evil, evil, model=evil,
                              metadata={"agent": evil, "round": 1}, tool_calls=[{"name": evil}])
    await BranchManager(store).fork(state.session_id, '<i>branch</i>')
    async with client_for(store) as http:
        pages = [
            await http.get("/session", params={"id": state.session_id}),
            await http.get("/session/analytics", params={"id": state.session_id}),
            await http.get("/", params={"user": state.user_id}),
        ]
    for page in pages:
        assert page.status_code == 200
        assert "<script>alert" not in page.text
        assert "<img src=x" not in page.text and "<i>branch" not in page.text
        assert '<b>id' not in page.text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in pages[0].text


async def test_mounted_under_a_prefix_links_stay_under_it(
    store: InMemorySessionStore, story: Story
) -> None:
    import httpx
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from lexigram.ai.session.explorer import create_app
    from lexigram.ai.session.manager.core import SessionManagerImpl
    from tests.explorer.seed import CONFIG

    explorer = create_app(SessionManagerImpl(store, CONFIG), ExplorerSettings(token=TOKEN))
    outer = Starlette(routes=[Mount("/explorer", app=explorer)])
    transport = httpx.ASGITransport(app=outer, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        opened = await http.get("/explorer/session", params={"id": "trip", "token": TOKEN})
        assert opened.status_code == 303
        assert opened.headers["location"] == "/explorer/session?id=trip"
        # The token cookie stays under the mount: with Path=/ it went to every route of
        # the host application (an outside audit).
        assert "path=/explorer;" in opened.headers["set-cookie"].lower() + ";"
        page = await http.get("/explorer/session", params={"id": "trip"})
        css = await http.get("/explorer/static/explorer.css")
    assert page.status_code == 200
    assert 'href="/explorer/static/explorer.css"' in page.text
    assert f'href="/explorer/session?id={story.budget}"' in page.text
    assert css.status_code == 200 and "branch-graph" in css.text


async def test_unknown_actions_are_not_found(store: InMemorySessionStore, story: Story) -> None:
    async with client_for(store, ExplorerSettings(allow_writes=True)) as http:
        csrf = await _csrf(store, http)
        page = await http.get("/confirm/delete", params={"id": "trip"})
        done = await http.post("/actions/delete",
                               data={"id": "trip", "confirm": "yes", "csrf": csrf})
    assert (page.status_code, done.status_code) == (404, 404)
    assert await store.load_record("trip") is not None
