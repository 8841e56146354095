"""SessionConfig: defaults, validation naming the field, YAML/env binding through the framework."""

from __future__ import annotations

from pathlib import Path

import pytest
from lexigram.contracts.core.config import Environment
from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram import Application
from lexigram.ai.session import SessionConfig, SessionModule
from lexigram.ai.session.config import coerce_config
from lexigram.ai.session.stores.registry import register_backend, unregister_backend

DOCUMENTED_DEFAULTS = {
    "enabled": True,
    "backend": "memory",
    "session_ttl": 86400,
    "cleanup_interval_s": 600,
    "max_turns_per_session": 1000,
    "max_sessions_per_user": 100,
    "auto_checkpoint_interval": 10,
    "max_checkpoints_per_session": 50,
    "max_branches_per_session": 10,
    "max_agents_per_group": 10,
    "default_turn_strategy": "round_robin",
    "consolidate_on_close": True,
    "name": "ai-session",
    "default_system_prompt": None,
    "cookie_name": "lexigram_session",
    "header_name": "X-Session-ID",
}


def test_documented_defaults() -> None:
    config = SessionConfig()
    for name, value in DOCUMENTED_DEFAULTS.items():
        assert getattr(config, name) == value, name
    assert SessionConfig.config_section == "ai_session"


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("session_ttl", -1, "session_ttl"),
        ("backend", "mongo", "backend"),
        ("default_turn_strategy", "chaos", "default_turn_strategy"),
        ("redis_url", "http://x", "redis_url"),
        ("redis_url", "redis://", "redis_url"),
        ("database_url", "oracle://x/y", "database_url"),
        ("database_url", "sqlite+aiosqlite:/relative", "database_url"),
        ("database_url", "sqlite+aiosqlite:///", "database_url"),  # no file: in memory
        ("database_url", "sqlite:///", "database_url"),
        ("database_url", "sqlite+aiosqlite:////tmp/sessions/", "database_url"),  # a directory
        ("max_turns_per_session", 0, "max_turns_per_session"),
        ("max_sessions_per_user", "abc", "max_sessions_per_user"),
        ("cleanup_interval_s", 0, "cleanup_interval_s"),
        # Past a thousand years a purge cutoff or deadline is no date (OverflowError).
        ("purge_after_s", 100_000_000_000, "purge_after_s"),
        ("session_ttl", 10**12, "session_ttl"),
        ("cleanup_interval_s", 10**20, "cleanup_interval_s"),
        ("auto_checkpoint_interval", -5, "auto_checkpoint_interval"),
        ("enabled", "maybe", "enabled"),
        ("cookie_samesite", "sometimes", "cookie_samesite"),
        ("header_name", "", "header_name"),
        ("table_prefix", "drop table;", "table_prefix"),
    ],
)
def test_invalid_values_name_the_field(field: str, value: object, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=f"ai_session.{fragment}"):
        SessionConfig(**{field: value})


def test_env_style_strings_are_coerced() -> None:
    config = SessionConfig(session_ttl="60", enabled="false", auto_checkpoint_interval="0")  # type: ignore[arg-type]
    assert (
        config.session_ttl == 60
        and config.enabled is False
        and config.auto_checkpoint_interval == 0
    )


def test_dicts_are_accepted_and_unknown_keys_refused() -> None:
    assert coerce_config({"backend": "database", "session_ttl": 5}).backend == "database"
    with pytest.raises(ConfigurationError, match="sesion_ttl"):
        coerce_config({"sesion_ttl": 5})
    with pytest.raises(ConfigurationError):
        coerce_config(["backend"])  # type: ignore[arg-type]


def test_production_rejects_in_memory() -> None:
    issues = SessionConfig(backend="in_memory").validate_for_environment(Environment.PRODUCTION)
    assert any(i.field == "ai_session.backend" for i in issues)
    assert (
        SessionConfig(backend="in_memory").validate_for_environment(Environment.DEVELOPMENT) == []
    )
    ok = SessionConfig(backend="database", cookie_secret="s" * 32)
    assert ok.validate_for_environment(Environment.PRODUCTION) == []


def test_production_rejects_an_in_memory_sqlite_database() -> None:
    config = SessionConfig(database_url="sqlite+aiosqlite:///:memory:", cookie_secret="s" * 32)
    assert config.backend == "sql" and config.keeps_nothing()
    issues = config.validate_for_environment(Environment.PRODUCTION)
    assert [i.field for i in issues] == ["ai_session.database_url"]
    assert config.validate_for_environment(Environment.DEVELOPMENT) == []
    on_file = SessionConfig(
        database_url="sqlite+aiosqlite:///s.db?mode=rwc", cookie_secret="s" * 32
    )
    assert not on_file.keeps_nothing()
    assert on_file.validate_for_environment(Environment.PRODUCTION) == []


async def test_provider_refuses_to_boot_in_production() -> None:
    with pytest.raises(ConfigurationError, match="ai_session.backend"):
        async with Application.boot(
            modules=[SessionModule.configure(SessionConfig(backend="in_memory", env="production"))]
        ):
            pass


def test_user_registered_backend_is_accepted() -> None:
    from lexigram.ai.session import InMemorySessionStore

    register_backend("custom_test", lambda cfg: InMemorySessionStore())
    try:
        assert SessionConfig(backend="custom_test").backend == "custom_test"
    finally:
        unregister_backend("custom_test")
    with pytest.raises(ConfigurationError):
        SessionConfig(backend="custom_test")


def _write_yaml(tmp_path: Path) -> None:
    (tmp_path / "application.yaml").write_text(
        "ai_session:\n  backend: in_memory\n  session_ttl: 60\n  max_turns_per_session: 7\n"
    )
    (tmp_path / "application.test.yaml").write_text("ai_session:\n  session_ttl: 5\n")


async def _booted_config(module: object) -> SessionConfig:
    async with Application.boot(modules=[module]) as app:
        config: SessionConfig = await app.container.resolve(SessionConfig)
        return config


async def test_yaml_binding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_yaml(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LEX_PROFILE", raising=False)
    config = await _booted_config(SessionModule.configure())
    assert (config.session_ttl, config.max_turns_per_session) == (60, 7)


async def test_profile_and_env_override_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_yaml(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEX_PROFILE", "test")
    config = await _booted_config(SessionModule.configure())
    assert config.session_ttl == 5
    monkeypatch.setenv("LEX_AI_SESSION__SESSION_TTL", "9")
    monkeypatch.setenv("LEX_AI_SESSION__MAX_SESSIONS_PER_USER", "3")
    config = await _booted_config(SessionModule.configure())
    assert (config.session_ttl, config.max_sessions_per_user, config.max_turns_per_session) == (
        9,
        3,
        7,
    )


async def test_explicit_config_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_yaml(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEX_AI_SESSION__SESSION_TTL", "9")
    config = await _booted_config(SessionModule.configure({"session_ttl": 123}))
    assert config.session_ttl == 123


async def test_bad_env_value_fails_boot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEX_AI_SESSION__BACKEND", "mongo")
    with pytest.raises(ConfigurationError, match="ai_session.backend"):
        await _booted_config(SessionModule.configure())
