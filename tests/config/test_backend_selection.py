"""A URL without its backend selects it; a backend that would ignore the URL is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram import Application
from lexigram.ai.session import InMemorySessionStore, SessionConfig, SessionModule, SessionStore
from lexigram.ai.session.config import coerce_config
from lexigram.ai.session.stores.registry import register_backend, unregister_backend

DB = "sqlite+aiosqlite:///./sel.db"
REDIS = "redis://127.0.0.1:6379/5"


@pytest.mark.parametrize(
    ("settings", "backend"),
    [
        ({"database_url": DB}, "sql"),
        ({"database_url": "postgresql://u@h/db"}, "sql"),
        ({"redis_url": REDIS}, "redis"),
        ({}, "memory"),
        ({"backend": "sql", "database_url": DB}, "sql"),
        ({"backend": "redis", "redis_url": REDIS, "database_url": DB}, "redis"),
        ({"backend": "memory", "database_url": SessionConfig().database_url}, "memory"),
        ({"backend": "database", "database_url": DB}, "database"),
        ({"backend": "cache", "redis_url": REDIS, "database_url": DB}, "cache"),
        ({"backend": "in_memory", "database_url": SessionConfig().database_url}, "in_memory"),
    ],
)
def test_backend_from_keywords_and_dicts(settings: dict[str, Any], backend: str) -> None:
    assert SessionConfig(**settings).backend == backend
    assert coerce_config(settings).backend == backend


@pytest.mark.parametrize(
    ("settings", "fields"),
    [
        ({"backend": "cache", "database_url": DB}, ("backend", "database_url")),
        ({"backend": "database", "redis_url": REDIS}, ("backend", "redis_url")),
        ({"backend": "in_memory", "database_url": DB}, ("backend", "database_url")),
        ({"backend": "in_memory", "redis_url": REDIS}, ("backend", "redis_url")),
        ({"backend": "redis", "database_url": DB}, ("backend", "database_url")),
        ({"backend": "sql", "redis_url": REDIS}, ("backend", "redis_url")),
        ({"backend": "memory", "database_url": DB}, ("backend", "database_url")),
        ({"database_url": DB, "redis_url": REDIS}, ("backend", "database_url", "redis_url")),
    ],
)
def test_contradictions_name_both_fields(settings: dict[str, Any], fields: tuple[str, ...]) -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(**settings)
    for name in fields:
        assert f"ai_session.{name}" in str(info.value)


def test_a_user_backend_may_use_any_url() -> None:
    register_backend("url_user_test", lambda cfg: InMemorySessionStore())
    try:
        config = SessionConfig(backend="url_user_test", database_url=DB, redis_url=REDIS)
        assert (config.backend, config.database_url) == ("url_user_test", DB)
    finally:
        unregister_backend("url_user_test")


def test_round_trip_of_every_field_keeps_the_backend() -> None:
    config = SessionConfig(database_url=DB)
    again = SessionConfig(**config.model_dump())
    assert (again.backend, again.database_url) == ("sql", DB)


async def _booted(tmp_path: Path) -> tuple[str, type[SessionStore]]:
    async with Application.boot(modules=[SessionModule.configure()]) as app:
        config = await app.container.resolve(SessionConfig)
        store = await app.container.resolve(SessionStore)
        return config.backend, type(store)


async def test_only_the_database_url_env_var_selects_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lexigram.ai.session.stores.database import DatabaseSessionStore

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEX_AI_SESSION__DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'e.db'}")
    backend, store_type = await _booted(tmp_path)
    assert (backend, store_type) == ("sql", DatabaseSessionStore)
    assert (tmp_path / "e.db").exists()  # the tables were created there, not in memory


async def test_yaml_backend_and_env_url_that_contradict_fail_at_boot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "application.yaml").write_text("ai_session:\n  backend: in_memory\n")
    monkeypatch.setenv("LEX_AI_SESSION__DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'e.db'}")
    with pytest.raises(ConfigurationError) as info:
        await _booted(tmp_path)
    assert "ai_session.backend" in str(info.value)
    assert "ai_session.database_url" in str(info.value)
    assert not (tmp_path / "e.db").exists()


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"backend": ["database"]}, "backend"),
        ({"backend": {"x": 1}}, "backend"),
        ({"database_url": 5}, "database_url"),
        ({"redis_url": ["redis://h/0"]}, "redis_url"),
        ({"backend": "cache", "redis_url": None}, "redis_url"),
    ],
)
def test_wrong_types_name_the_field(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"ai_session\.{field}: must be"):
        SessionConfig(**settings)


@pytest.mark.parametrize("section", ["sql", "5", "\n  - backend: sql"])
async def test_a_section_that_is_no_mapping_is_refused_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, section: str
) -> None:
    """``ai_session: sql`` booted the application on the in-memory defaults, silently,
    and ``from_env_profile()`` failed with a bare TypeError (outside day-one audit)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "application.yaml").write_text(f"ai_session: {section}\n")
    with pytest.raises(ConfigurationError, match="ai_session: must be a mapping"):
        SessionConfig.from_env_profile()
    with pytest.raises(ConfigurationError, match="ai_session: must be a mapping"):
        await _booted(tmp_path)
