"""The pages in a real headless Chromium: transcript, branch tree, clicks, charts.

Screenshots are saved to ``$EXPLORER_ARTIFACTS`` (default: a directory under the
temp dir). With ``EXPLORER_DOCS_SCREENSHOT=1`` the session page's screenshot is also
written to ``docs/images/explorer-session.png``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.explorer import ExplorerSettings
from lexigram.ai.session.stores.database import DatabaseSessionStore
from tests.explorer.browser import artifacts_dir, chromium, live_server, require_browser
from tests.explorer.seed import Story, seed_story

DOCS_IMAGE = Path(__file__).resolve().parents[2] / "docs" / "images" / "explorer-session.png"


async def _seed(url: str) -> tuple[Story, list[str], dict[str, int]]:
    store = DatabaseSessionStore(url)
    await store.initialize()
    try:
        story = await seed_story(store)
        trip = await store.load(story.trip)
        assert trip is not None
        counts = {}
        for sid in (story.trip, story.budget, story.rainy):
            record = await store.load_record(sid)
            assert record is not None
            counts[sid] = record.state.turn_count
        return story, [t.turn_id for t in trip.turns], counts
    finally:
        await store.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Story, list[str],
                                                                      dict[str, int]]]:
    require_browser()
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('explorer') / 'sessions.db'}"
    story, turn_ids, counts = asyncio.run(_seed(url))
    config = SessionConfig(backend="database", database_url=url, session_ttl=0)
    with live_server(config, ExplorerSettings()) as base:
        yield base, story, turn_ids, counts


@pytest.fixture(scope="module")
def browser(site: Any) -> Iterator[Any]:
    with chromium() as driver:
        yield driver


def _wait_for(driver: Any, css: str, text: str | None = None) -> Any:
    """The element ``css`` once the page navigated to it (and it shows ``text``)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d: Any) -> Any:
        found = d.find_elements(By.CSS_SELECTOR, css)
        if found and (text is None or found[0].text == text):
            return found[0]
        return False

    return WebDriverWait(driver, 15).until(ready)


def _shot(driver: Any, name: str, *, full: bool = True) -> Path:
    driver.execute_script("window.scrollTo(0, 0)")
    if full:
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1360, min(max(int(height) + 120, 800), 6000))
    path = artifacts_dir() / name
    assert driver.save_screenshot(str(path)), f"screenshot {name} failed"
    driver.set_window_size(1360, 1000)
    return path


def test_sessions_page_lists_the_users_sessions(site: Any, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    base, story, _, counts = site
    browser.get(f"{base}/")
    browser.find_element(By.ID, "user").send_keys("alice")
    browser.find_element(By.CSS_SELECTOR, "form.filters button").click()
    _wait_for(browser, "#sessions")
    rows = browser.find_elements(By.CSS_SELECTOR, "#sessions tbody tr")
    shown = {r.get_attribute("data-session"): r for r in rows}
    assert set(shown) == {story.trip, story.budget, story.rainy}
    assert shown[story.trip].find_elements(By.TAG_NAME, "td")[2].text == str(counts[story.trip])
    _shot(browser, "sessions.png")


def test_session_page_shows_transcript_tree_and_checkpoints(site: Any, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    base, story, turn_ids, _ = site
    browser.get(f"{base}/session?id={story.trip}")
    turns = browser.find_elements(By.CSS_SELECTOR, "#transcript article.turn")
    assert [t.get_attribute("data-turn-id") for t in turns] == turn_ids
    assert all(t.is_displayed() for t in turns)
    assert "Plan three days in Lisbon" in turns[0].text
    agents = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#transcript .agent")]
    assert agents[:4] == ["planner", "critic", "planner", "critic"]
    separators = [s.text for s in browser.find_elements(By.CSS_SELECTOR, ".round-sep")]
    assert separators == ["opening", "Round 1", "Round 2"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#rounds tbody tr")) == 2

    graph = browser.find_element(By.CSS_SELECTOR, "svg.branch-graph")
    nodes = graph.find_elements(By.CSS_SELECTOR, "a.node-link")
    assert {n.get_attribute("data-session") for n in nodes} == {
        story.trip, story.budget, story.rainy
    }
    forks = graph.find_elements(By.CSS_SELECTOR, "path.edge.fork")
    merges = graph.find_elements(By.CSS_SELECTOR, "path.edge.merge")
    assert sorted(f.get_attribute("data-to") for f in forks) == sorted([story.budget, story.rainy])
    assert [(m.get_attribute("data-from"), m.get_attribute("data-to")) for m in merges] == [
        (story.budget, story.trip)
    ]
    labels = [t.text for t in graph.find_elements(By.CSS_SELECTOR, "text.edge-label")]
    assert "fork @ 5" in labels and "fork @ 9" in labels and "merged 2" in labels

    dots = browser.find_elements(By.CSS_SELECTOR, "svg.timeline g.cp")
    assert [d.get_attribute("data-checkpoint") for d in dots] == [
        story.first_checkpoint, story.second_checkpoint
    ]
    # Metadata is shown on demand.
    meta = turns[5].find_element(By.CSS_SELECTOR, "details.meta")
    assert not meta.find_element(By.TAG_NAME, "pre").is_displayed()
    meta.find_element(By.TAG_NAME, "summary").click()
    assert turn_ids[5] in meta.find_element(By.TAG_NAME, "pre").text
    tool = turns[5].find_element(By.CSS_SELECTOR, ".tool-call summary")
    assert tool.text == "get_weather"
    _shot(browser, "session.png")
    if os.environ.get("EXPLORER_DOCS_SCREENSHOT") == "1":
        browser.set_window_size(1360, 1500)
        path = _shot(browser, "docs-session.png", full=False)
        DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMAGE)


def test_clicking_a_branch_in_the_tree_opens_it(site: Any, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    base, story, _, counts = site
    browser.get(f"{base}/session?id={story.trip}")
    node = browser.find_element(By.CSS_SELECTOR, f'a.node-link[data-session="{story.budget}"]')
    node.find_element(By.TAG_NAME, "rect").click()
    _wait_for(browser, "#session-id", story.budget)
    assert f"id={story.budget}" in browser.current_url
    turns = browser.find_elements(By.CSS_SELECTOR, "#transcript article.turn")
    assert len(turns) == counts[story.budget]
    focus = browser.find_element(By.CSS_SELECTOR, "svg.branch-graph g.node.focus")
    assert "budget" in focus.text
    _shot(browser, "branch.png")
    # ... and back to the source through its node.
    browser.find_element(
        By.CSS_SELECTOR, f'a.node-link[data-session="{story.trip}"] rect'
    ).click()
    assert _wait_for(browser, "#session-id", story.trip).text == story.trip


def test_analytics_charts_render(site: Any, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    base, story, _, _ = site
    browser.get(f"{base}/session?id={story.trip}")
    browser.find_element(By.ID, "analytics-link").click()
    _wait_for(browser, "#charts")
    lines = browser.find_elements(By.CSS_SELECTOR, "#charts svg.chart.line")
    assert len(lines) == 3
    for chart in lines:
        assert int(chart.get_attribute("data-points")) == 9
        points = chart.find_element(By.CSS_SELECTOR, "polyline.stroke").get_attribute("points")
        assert len(points.split()) == 9
        assert chart.size["width"] > 200 and chart.size["height"] > 50
    bars = {
        b.get_attribute("data-label")
        for b in browser.find_elements(By.CSS_SELECTOR, "#charts svg.chart.bars g.bar")
    }
    assert {"planner", "critic", "gpt-small", "claude-mini", "get_weather"} <= bars
    drawn = [
        (float(b.get_attribute("data-value")),
         float(b.find_element(By.TAG_NAME, "rect").get_attribute("width")))
        for b in browser.find_elements(By.CSS_SELECTOR, "#charts svg.chart.bars g.bar")
    ]
    assert drawn and all((width > 0) == (value > 0) for value, width in drawn)
    _shot(browser, "analytics.png")


def test_status_filter_lists_on_change(site: Any, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    base, _, _, _ = site
    browser.get(f"{base}/?user=alice")
    Select(browser.find_element(By.ID, "status")).select_by_value("closed")
    _wait_for(browser, "#no-sessions")  # the script submitted the form: no closed session
    assert "status=closed" in browser.current_url


@pytest.fixture(scope="module")
def writable_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Story]]:
    require_browser()
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('writable') / 'sessions.db'}"
    story, _, _ = asyncio.run(_seed(url))
    config = SessionConfig(backend="database", database_url=url, session_ttl=0)
    with live_server(config, ExplorerSettings(allow_writes=True)) as base:
        yield base, url, story


async def _branch_names(url: str, session_id: str) -> list[str | None]:
    store = DatabaseSessionStore(url)
    await store.initialize()
    try:
        return [b.state.branch_name for b in await store.list_branches(session_id)]
    finally:
        await store.close()


def test_fork_through_the_confirmation_page(writable_site: Any, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    base, url, story = writable_site
    browser.get(f"{base}/session?id={story.trip}")
    browser.find_element(By.ID, "fork-link").click()
    name = _wait_for(browser, "#branch_name")
    name.send_keys("from-browser")
    browser.find_element(By.ID, "do-it").click()  # the box is not ticked: nothing is sent
    assert browser.find_elements(By.ID, "branch_name")
    assert asyncio.run(_branch_names(url, story.trip)) == ["budget", "rainy-day"]
    browser.find_element(By.ID, "confirm").click()
    browser.find_element(By.ID, "do-it").click()
    try:
        _wait_for(browser, ".notice", "Branch created.")
    except Exception:
        _shot(browser, "fork-failed.png")
        raise
    new_id = browser.find_element(By.ID, "session-id").text
    assert new_id not in (story.trip, story.budget, story.rainy)
    graph = browser.find_element(By.CSS_SELECTOR, "svg.branch-graph")
    assert graph.get_attribute("data-nodes") == "4"
    assert asyncio.run(_branch_names(url, story.trip)) == ["budget", "rainy-day", "from-browser"]
    _shot(browser, "forked.png")
