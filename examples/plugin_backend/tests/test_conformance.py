"""The shipped conformance suite, run on the jsonfile backend, plus the plugin wiring."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

# Installed by .ci/run (where it must not skip); elsewhere: pip install -e examples/plugin_backend
if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
    pytest.importorskip("lexigram_jsonfile", reason="pip install -e examples/plugin_backend")
from lexigram_jsonfile import JsonFileSessionStore

from lexigram.ai.session.backends import find_backend
from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.stores.registry import create_store
from lexigram.ai.session.testing import StoreConformanceSuite

Factory = Callable[[], Awaitable[JsonFileSessionStore]]


class TestJsonFileConformance(StoreConformanceSuite):
    """Every test of the suite on one JsonFileSessionStore per test."""

    @pytest.fixture
    async def store_factory(self, tmp_path: Path) -> AsyncIterator[Factory]:
        # Like the in-memory store, one object is the namespace: hand out the same one.
        store = JsonFileSessionStore(tmp_path / "sessions.json")
        await store.initialize()

        async def make() -> JsonFileSessionStore:
            return store

        yield make
        await store.close()


def test_the_entry_point_makes_the_backend_selectable(tmp_path: Path) -> None:
    url = f"jsonfile://{tmp_path / 'app.json'}"
    config = SessionConfig(backend="jsonfile", database_url=url)
    backend = find_backend("jsonfile")
    assert backend is not None and backend.name == "jsonfile"
    store = create_store(config)
    assert isinstance(store, JsonFileSessionStore)
    assert store.path == tmp_path / "app.json"


def test_the_backend_checks_its_own_url() -> None:
    with pytest.raises(Exception, match="database_url"):
        SessionConfig(backend="jsonfile", database_url="postgresql://u@h/db")


async def test_sessions_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "sessions.json"
    store = JsonFileSessionStore(path)
    await store.initialize()
    now = datetime.now(UTC)
    state = SessionState(
        session_id="s1", user_id="u1", status=SessionStatus.ACTIVE, created_at=now,
        updated_at=now,
    )
    await store.create_session(state)
    turn = SessionTurn(turn_id="t1", role="user", content="hello", timestamp=now)
    await store.append_turns("s1", [turn])
    await store.close()
    again = JsonFileSessionStore(path)
    await again.initialize()
    loaded = await again.load("s1")
    assert loaded is not None and [t.content for t in loaded.turns] == ["hello"]
    await again.close()


async def test_its_options_block_is_read_and_judged(tmp_path: Path) -> None:
    url = f"jsonfile://{tmp_path / 'app.json'}"
    config = SessionConfig(backend="jsonfile", database_url=url, options={"keep_backup": True})
    store = create_store(config)
    assert isinstance(store, JsonFileSessionStore) and store.keep_backup is True
    await store.initialize()
    await store.close()  # the first save: nothing to back up yet
    assert not (tmp_path / "app.json.bak").exists()
    first = (tmp_path / "app.json").read_bytes()
    again = create_store(config)
    await again.initialize()
    await again.close()
    assert (tmp_path / "app.json.bak").read_bytes() == first
    bad = (({"keep_backups": True}, "keep_backups"), ({"keep_backup": "maybe"}, "keep_backup"))
    for options, key in bad:
        with pytest.raises(Exception, match=f"ai_session.options.{key}"):
            SessionConfig(backend="jsonfile", database_url=url, options=options)


@pytest.mark.parametrize(
    ("raw", "kept"), [("true", True), ("False", False), ("1", True), ("0", False), (1, True)]
)
def test_keep_backup_from_an_environment_variable(
    raw: str, kept: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An environment variable arrives as a string ("true"), or as a number for "1"/"0".
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEX_AI_SESSION__BACKEND", "jsonfile")
    monkeypatch.setenv("LEX_AI_SESSION__DATABASE_URL", f"jsonfile://{tmp_path / 'app.json'}")
    monkeypatch.setenv("LEX_AI_SESSION__OPTIONS__KEEP_BACKUP", str(raw))
    store = create_store(SessionConfig.from_env_profile())
    assert isinstance(store, JsonFileSessionStore) and store.keep_backup is kept


def test_a_bad_keep_backup_from_the_environment_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEX_AI_SESSION__BACKEND", "jsonfile")
    monkeypatch.setenv("LEX_AI_SESSION__DATABASE_URL", f"jsonfile://{tmp_path / 'app.json'}")
    monkeypatch.setenv("LEX_AI_SESSION__OPTIONS__KEEP_BACKUP", "sometimes")
    with pytest.raises(Exception, match="ai_session.options.keep_backup: must be true or false"):
        SessionConfig.from_env_profile()
