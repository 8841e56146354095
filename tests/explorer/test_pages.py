"""The pages and the JSON API on every backend (in memory, SQLite, PostgreSQL, Redis)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lexigram.ai.session.explorer import ExplorerSettings
from lexigram.ai.session.stores.base import SessionStore
from tests.explorer.conftest import client_for
from tests.explorer.seed import Story, seed_story
from tests.stores.backends import BackendSpec, all_specs

SPECS = [s for s in all_specs() if s.name in {"in_memory", "sqlite", "postgres", "redis"}]


@pytest.fixture(params=[pytest.param(s, id=s.name, marks=s.marks) for s in SPECS])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    spec: BackendSpec = request.param
    async with spec.open() as factory:
        yield await factory()


def _turn_ids(page: str) -> list[str]:
    return re.findall(r'<article class="turn[^"]*"[^>]*data-turn-id="([^"]+)"', page)


async def test_every_page_and_api_on_the_backend(store: SessionStore) -> None:
    story: Story = await seed_story(store)
    trip = await store.load(story.trip)
    assert trip is not None
    async with client_for(store) as http:
        listing = await http.get("/", params={"user": "alice"})
        assert listing.status_code == 200
        for sid in (story.trip, story.budget, story.rainy):
            assert f'data-session="{sid}"' in listing.text

        page = await http.get("/session", params={"id": story.trip})
        assert page.status_code == 200
        assert _turn_ids(page.text) == [t.turn_id for t in trip.turns]
        assert 'class="branch-graph"' in page.text and 'data-merges="1"' in page.text
        assert 'id="rounds"' in page.text
        assert page.text.count('class="round-sep"') == 3  # opening, round 1, round 2
        assert "result of get_weather (call_1)" in page.text
        states = re.findall(r'class="meta cp-state"><summary>([^<]*)<', page.text)
        assert states == ["same as now", "changed since: turn_count, total_tokens, total_cost"]

        analytics = await http.get("/session/analytics", params={"id": story.trip})
        assert analytics.status_code == 200
        assert analytics.text.count('class="chart line') == 3

        api = (await http.get("/api/session", params={"id": story.trip})).json()
        assert api["turn_count"] == trip.turn_count == 9
        turns = (await http.get("/api/session/turns", params={"id": story.trip})).json()
        assert [t["turn_id"] for t in turns["turns"]] == [t.turn_id for t in trip.turns]
        assert turns["turns"][5]["tool_calls"][0]["function"]["name"] == "get_weather"
        tree = (await http.get("/api/session/tree", params={"id": story.rainy})).json()
        nodes = {n["session_id"]: n for n in tree["nodes"]}
        assert tree["root"] == story.trip and set(nodes) == {story.trip, story.budget, story.rainy}
        assert nodes[story.budget]["fork_point"] == 5
        assert nodes[story.budget]["merged"]["turns"] == 2
        assert nodes[story.rainy]["merged"] is None and nodes[story.rainy]["fork_point"] == 9
        checkpoints = (await http.get("/api/session/checkpoints",
                                      params={"id": story.trip})).json()["checkpoints"]
        assert [c["checkpoint_id"] for c in checkpoints] == [
            story.first_checkpoint, story.second_checkpoint
        ]
        assert [c["turn_count"] for c in checkpoints] == [5, 9]
        series = (await http.get("/api/session/analytics", params={"id": story.trip})).json()
        assert series["tokens"] == trip.total_tokens
        assert series["cost"] == pytest.approx(trip.total_cost)
        assert set(series["by_agent"]) == {"planner", "critic"}
        assert series["by_tool"] == {"get_weather": 1}


async def test_sessions_are_paged_with_the_store_cursor(store: SessionStore) -> None:
    from lexigram.ai.session.manager.core import SessionManagerImpl
    from tests.explorer.seed import CONFIG

    manager = SessionManagerImpl(store, CONFIG)
    made = [(await manager.create("paged")).session_id for _ in range(7)]
    await manager.close(made[0])
    settings = ExplorerSettings(page_size=3)
    seen: list[str] = []
    async with client_for(store, settings) as http:
        cursor = None
        for _ in range(5):
            params = {"user": "paged", **({"cursor": cursor} if cursor else {})}
            page = (await http.get("/api/sessions", params=params)).json()
            seen.extend(s["session_id"] for s in page["sessions"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        closed = (await http.get("/api/sessions",
                                 params={"user": "paged", "status": "closed"})).json()
        html = await http.get("/", params={"user": "paged", "status": "active"})
    assert sorted(seen) == sorted(made) and len(seen) == 7
    assert [s["session_id"] for s in closed["sessions"]] == [made[0]]
    assert made[0] not in html.text and 'id="next-page"' in html.text


async def test_transcript_pages_cover_every_turn_once(store: SessionStore) -> None:
    story = await seed_story(store)
    trip = await store.load(story.trip)
    assert trip is not None
    settings = ExplorerSettings(turns_per_page=4)
    shown: list[str] = []
    async with client_for(store, settings) as http:
        params: dict[str, object] = {"id": story.trip}
        for _ in range(5):
            page = await http.get("/session", params=params)
            assert page.status_code == 200
            shown.extend(_turn_ids(page.text))
            found = re.search(r'id="next-turns" rel="next" href="/session\?([^"#]+)', page.text)
            if found is None:
                break
            query = dict(p.split("=", 1) for p in found.group(1).replace("&amp;", "&").split("&"))
            params = {"id": story.trip, "after": query["after"], "pos": query["pos"]}
        newest = await http.get("/session", params={"id": story.trip, "view": "newest"})
    assert shown == [t.turn_id for t in trip.turns]
    assert _turn_ids(newest.text) == [t.turn_id for t in trip.turns[-4:]]
    assert 'id="turn-9"' in newest.text


async def test_unknown_session_and_bad_input_answer_with_the_error(store: SessionStore) -> None:
    async with client_for(store) as http:
        missing = await http.get("/session", params={"id": "no-such-session"})
        api_missing = await http.get("/api/session", params={"id": "no-such-session"})
        bad_after = await http.get("/api/session/turns", params={"id": "x", "after": "abc"})
        bad_status = await http.get("/api/sessions", params={"user": "u", "status": "odd"})
        no_user = await http.get("/api/sessions")
    assert missing.status_code == 404 and "no-such-session" in missing.text
    assert api_missing.status_code == 404
    assert api_missing.json()["error"]["code"] == "LEX_ERR_SES_101"
    assert bad_after.status_code == 400 and bad_after.json()["error"]["field"] == "after"
    assert bad_status.status_code == 400 and bad_status.json()["error"]["field"] == "status"
    assert no_user.status_code == 400 and no_user.json()["error"]["field"] == "user"


@pytest.mark.parametrize(
    "spec", [pytest.param(s, id=s.name, marks=s.marks) for s in SPECS if s.corrupt is not None]
)
async def test_damaged_sessions_are_named_in_a_warning(spec: BackendSpec) -> None:
    from lexigram.ai.session.manager.core import SessionManagerImpl
    from tests.explorer.seed import CONFIG

    async with spec.open() as factory:
        store = await factory()
        manager = SessionManagerImpl(store, CONFIG)
        good = await manager.create("dana")
        bad = await manager.create("dana")
        assert spec.corrupt is not None
        await spec.corrupt(store, bad.session_id)
        async with client_for(store) as http:
            page = await http.get("/", params={"user": "dana"})
            api = (await http.get("/api/sessions", params={"user": "dana"})).json()
            opened = await http.get("/session", params={"id": bad.session_id})
    assert page.status_code == 200
    assert 'id="damaged"' in page.text and bad.session_id in page.text
    assert f'data-session="{good.session_id}"' in page.text
    assert f'data-session="{bad.session_id}"' not in page.text
    assert api["damaged"] == [bad.session_id]
    assert [s["session_id"] for s in api["sessions"]] == [good.session_id]
    assert opened.status_code == 500 and "damaged" in opened.text


@pytest.mark.parametrize(
    "spec", [pytest.param(s, id=s.name, marks=s.marks) for s in SPECS if s.corrupt is not None]
)
async def test_a_damaged_branch_does_not_break_its_familys_pages(spec: BackendSpec) -> None:
    async with spec.open() as factory:
        store = await factory()
        story = await seed_story(store)
        assert spec.corrupt is not None
        await spec.corrupt(store, story.rainy)
        async with client_for(store) as http:
            page = await http.get("/session", params={"id": story.trip})
            tree = (await http.get("/api/session/tree", params={"id": story.budget})).json()
            await spec.corrupt(store, story.trip)  # now the root cannot be read either
            orphan = await http.get("/session", params={"id": story.budget})
            orphan_tree = (await http.get("/api/session/tree",
                                          params={"id": story.budget})).json()
    assert page.status_code == 200
    assert 'data-merges="1"' in page.text  # the merge of the readable branch is still shown
    assert {n["session_id"] for n in tree["nodes"]} == {story.trip, story.budget}
    assert orphan.status_code == 200
    assert 'id="tree-damaged"' in orphan.text and story.trip in orphan.text
    assert orphan_tree["damaged"] == [story.trip] and orphan_tree["root"] == story.budget


async def test_user_and_session_parameters_are_taken_as_given(store: SessionStore) -> None:
    """``" bob"`` and ``"bob"`` are two users: the list of one never shows the other's
    sessions (the parameters were stripped; an outside audit)."""
    from lexigram.ai.session.manager.core import SessionManagerImpl
    from tests.explorer.seed import CONFIG

    manager = SessionManagerImpl(store, CONFIG)
    padded = await manager.create(" bob", session_id=" padded ")
    plain = await manager.create("bob", session_id="padded")
    async with client_for(store) as http:
        listed = (await http.get("/api/sessions", params={"user": " bob"})).json()
        other = (await http.get("/api/sessions", params={"user": "bob"})).json()
        opened = await http.get("/", params={"session": " padded "}, follow_redirects=False)
    assert [s["session_id"] for s in listed["sessions"]] == [padded.session_id]
    assert [s["session_id"] for s in other["sessions"]] == [plain.session_id]
    assert opened.status_code == 303 and "id=+padded+" in opened.headers["location"]


async def test_a_damaged_checkpoint_leaves_the_session_page_readable(tmp_path: Any) -> None:
    """One damaged checkpoint row answered the whole session page with 500, so the
    transcript could not be reached (an outside audit)."""
    import sqlite3

    from lexigram.ai.session import SessionConfig
    from lexigram.ai.session.manager.core import SessionManagerImpl, new_turn
    from lexigram.ai.session.stores.database import DatabaseSessionStore

    db = tmp_path / "cp.db"
    config = SessionConfig(
        backend="sql", database_url=f"sqlite+aiosqlite:///{db}",
        auto_checkpoint_interval=None, session_ttl=0,
    )
    async with SessionManagerImpl.open(config) as manager:
        sid = (await manager.create("u", session_id="s1")).session_id
        await manager.add_turns(sid, [new_turn("user", "the transcript line")])
        damaged = (await manager.checkpoint(sid)).checkpoint_id
    raw = sqlite3.connect(db)
    raw.execute(
        f"UPDATE {config.table_prefix}checkpoints SET header = 'garbage' WHERE checkpoint_id = ?",
        (damaged,),
    )
    raw.commit()
    raw.close()
    store = DatabaseSessionStore(f"sqlite+aiosqlite:///{db}")
    await store.initialize()
    try:
        async with client_for(store) as http:
            page = await http.get("/session", params={"id": sid})
    finally:
        await store.close()
    assert page.status_code == 200
    assert "the transcript line" in page.text
    assert 'id="checkpoints-damaged"' in page.text and damaged in page.text


async def test_a_huge_turn_is_cut_on_the_page_and_whole_in_the_api() -> None:
    """A page of 200 turns of 100 KB each weighed 40 MB (10 s in a browser; an audit)."""
    from lexigram.ai.session import InMemorySessionStore
    from lexigram.ai.session.explorer.pages.transcript import SHOWN_CHARS
    from lexigram.ai.session.manager.core import SessionManagerImpl
    from tests.explorer.seed import CONFIG

    store = InMemorySessionStore()
    manager = SessionManagerImpl(store, CONFIG)
    sid = (await manager.create("u")).session_id
    text = "<b>" + "x" * (5 * SHOWN_CHARS) + "END-OF-TURN"
    await manager.add_message(sid, "tool", text)
    async with client_for(store) as http:
        page = await http.get("/session", params={"id": sid})
        api = (await http.get("/api/session/turns", params={"id": sid})).json()
    assert page.status_code == 200
    assert "END-OF-TURN" not in page.text and "more characters not shown" in page.text
    assert "&lt;b&gt;" in page.text and "<b>x" not in page.text
    assert len(page.text) < 3 * SHOWN_CHARS
    assert api["turns"][0]["content"] == text


async def test_bad_query_values_name_the_parameter_and_share_the_stores_bounds() -> None:
    """A bad ``user`` was named ``user_id`` and an ``after`` above 2**53 - 1 (allowed by the
    explorer up to 2**62) was refused by the store as ``after_seq`` (an outside audit)."""
    from lexigram.ai.session import InMemorySessionStore
    from lexigram.ai.session.manager.core import SessionManagerImpl
    from lexigram.ai.session.validation import MAX_SAFE_INT
    from tests.explorer.seed import CONFIG

    store = InMemorySessionStore()
    sid = (await SessionManagerImpl(store, CONFIG).create("u")).session_id
    async with client_for(store) as http:
        cases = {
            ("/api/sessions", "user", "u" * 300): "user",
            ("/api/sessions", "user", "a\tb"): "user",
            ("/api/session/turns", "after", str(MAX_SAFE_INT + 1)): "after",
            ("/api/session/turns", "after", "-1"): "after",
            ("/api/session", "id", "a\tb"): "id",
        }
        for (path, name, value), field in cases.items():
            params = {"id": sid, name: value} if name != "id" else {"id": value}
            answer = await http.get(path, params=params)
            assert answer.status_code == 400, (path, name, answer.text)
            error = answer.json()["error"]
            assert error["field"] == field, (path, name, error)
        top = await http.get("/api/session/turns", params={"id": sid, "after": MAX_SAFE_INT})
        assert top.status_code == 200 and top.json()["turns"] == []
        page = await http.get("/", params={"user": "a\tb"})
        assert page.status_code == 400 and "user" in page.text


async def test_a_turn_stamped_with_another_offset_is_shown_in_utc() -> None:
    """A turn stamped 12:00+05:30 showed "12:00:00" beside header times in UTC."""
    import dataclasses
    from datetime import datetime, timedelta, timezone

    from lexigram.ai.session import InMemorySessionStore
    from lexigram.ai.session.manager.core import SessionManagerImpl
    from lexigram.ai.session.testing import make_turn
    from tests.explorer.seed import CONFIG

    store = InMemorySessionStore()
    manager = SessionManagerImpl(store, CONFIG)
    sid = (await manager.create("u")).session_id
    stamped = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    turn = dataclasses.replace(make_turn(turn_id="t1", content="hi"), timestamp=stamped)
    await manager.add_turn(sid, turn)
    async with client_for(store) as http:
        page = (await http.get("/session", params={"id": sid})).text
    assert "2026-01-01 06:30:00" in page and "2026-01-01 12:00:00" not in page
    assert 'datetime="2026-01-01T12:00:00+05:30"' in page


async def test_huge_header_and_checkpoint_blocks_are_cut_on_the_page() -> None:
    """A 1 MB system prompt, variables and metadata with ten 100 KB checkpoints made a
    34 MB session page: only the transcript was cut (an outside audit)."""
    from lexigram.ai.session import InMemorySessionStore
    from lexigram.ai.session.explorer.pages.format import SHOWN_CHARS
    from lexigram.ai.session.manager.core import SessionManagerImpl
    from tests.explorer.seed import CONFIG

    store = InMemorySessionStore()
    manager = SessionManagerImpl(store, CONFIG)
    big = "y" * (10 * SHOWN_CHARS)
    sid = (await manager.create(
        "u", {"blob": big + "META-END"}, variables={"blob": big}, system_prompt=big + "P-END"
    )).session_id
    await manager.add_message(sid, "user", "hi")
    for _ in range(3):
        await manager.checkpoint(sid, {"note": big + "CP-END"})
    async with client_for(store) as http:
        page = await http.get("/session", params={"id": sid})
        api = (await http.get("/api/session", params={"id": sid})).json()
    assert page.status_code == 200
    for end in ("META-END", "P-END", "CP-END"):
        assert end not in page.text
    assert len(page.text) < 15 * SHOWN_CHARS
    assert page.text.count("more characters not shown") >= 5
    assert api["system_prompt"].endswith("P-END")
