"""Options blocks: bad values named as written, blocks of another backend, env over YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram.ai.session.config import SessionConfig

PG = "postgresql://app@db1/app"


def _error(**given: Any) -> str:
    """The first line of the error ``SessionConfig(**given)`` raises."""
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(**given)
    return str(info.value).splitlines()[0]


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"backend": "sql", "sql": {"url": 5}}, "ai_session.sql.url: must be a non-empty"),
        ({"backend": "sql", "sql": {"url": ""}}, "ai_session.sql.url: must be a non-empty"),
        (
            {"backend": "sql", "sql": {"table_prefix": "bad-prefix"}},
            "ai_session.sql.table_prefix: must start with a letter",
        ),
        (
            {"backend": "sql", "options": {"table_prefix": "bad-prefix"}},
            "ai_session.options.table_prefix: must start with a letter",
        ),
        (
            {"backend": "redis", "redis": {"key_prefix": ""}},
            "ai_session.redis.key_prefix: must be a non-empty",
        ),
        (
            {"backend": "redis", "redis": {"cluster": "maybe"}},
            "ai_session.redis.cluster: must be a boolean",
        ),
        (
            {"backend": "redis", "options": {"cluster": "maybe"}},
            "ai_session.options.cluster: must be a boolean",
        ),
        ({"backend": "redis", "redis": {"url": 7}}, "ai_session.redis.url: must be a non-empty"),
        ({"redis": {"url": 7}}, "ai_session.redis.url: must be a non-empty"),
    ],
)
def test_a_bad_value_in_a_block_is_named_as_written(given: dict[str, Any], named: str) -> None:
    assert _error(**given).startswith(f"[LEX_ERR_CFG_001] {named}")


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"backend": "sql", "database_url": 5}, "ai_session.database_url: must be a non-empty"),
        ({"backend": "sql", "table_prefix": "bad-prefix"}, "ai_session.table_prefix: must start"),
        ({"backend": "redis", "key_prefix": ""}, "ai_session.key_prefix: must be a non-empty"),
        ({"backend": "redis", "redis_cluster": "maybe"}, "ai_session.redis_cluster: must be"),
    ],
)
def test_the_same_bad_value_as_a_flat_field_keeps_the_flat_name(
    given: dict[str, Any], named: str
) -> None:
    assert _error(**given).startswith(f"[LEX_ERR_CFG_001] {named}")


def test_good_block_values_are_converted() -> None:
    config = SessionConfig(backend="redis", redis={"cluster": "true", "key_prefix": "k"})
    assert (config.redis_cluster, config.key_prefix) == (True, "k")


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"backend": "memory", "sql": {"pool_size": 3}}, "sql: backend 'memory'"),
        ({"backend": "in_memory", "redis": {"key_prefix": "x"}}, "redis: backend 'in_memory'"),
        ({"backend": "redis", "sql": {"pool_size": 3}}, "sql: backend 'redis'"),
        ({"backend": "cache", "sql": {"table_prefix": "t_"}}, "sql: backend 'cache'"),
        ({"backend": "sql", "redis": {"key_prefix": "x"}}, "redis: backend 'sql'"),
        ({"backend": "database", "redis": {"pool_size": 7}}, "redis: backend 'database'"),
        ({"backend": "sql", "redis": {"url": "redis://h/1"}}, "redis: backend 'sql'"),
        ({"sql": {"pool_size": 3}}, "sql: backend 'memory'"),
        ({"database_url": PG, "redis": {"pool_size": 3}}, "redis: backend 'sql'"),
        ({"sql": {"url": PG}, "redis": {"key_prefix": "x"}}, "redis: backend 'sql'"),
    ],
)
def test_a_block_of_another_backend_is_refused_naming_it(
    given: dict[str, Any], named: str
) -> None:
    message = _error(**given)
    assert f"ai_session.{named}" in message and "does not use the" in message


@pytest.mark.parametrize(
    "given",
    [
        {"backend": "redis", "sql": {}},
        {"backend": "memory", "redis": {}},
        {"backend": "memory", "sql": None},
        {"backend": "sql", "sql": {"pool_size": 3}, "redis": {}},
    ],
)
def test_an_empty_block_of_another_backend_is_accepted(given: dict[str, Any]) -> None:
    assert SessionConfig(**given).sql is None


def test_a_url_in_a_block_still_selects_the_backend() -> None:
    config = SessionConfig(sql={"url": PG, "pool_size": 3})
    assert (config.backend, config.database_url, config.db_pool_size) == ("sql", PG, 3)
    redis = SessionConfig(redis={"url": "redis://h:6379/2", "pool_size": 4})
    assert (redis.backend, redis.redis_pool_size) == ("redis", 4)
    both = _error(sql={"url": PG}, redis={"url": "redis://h:6379/2"})
    assert "ai_session.backend" in both and "database_url" in both and "redis_url" in both


def _yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "application.yaml").write_text("ai_session:\n" + text)


def test_the_block_env_var_overrides_a_yaml_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _yaml(tmp_path, monkeypatch, f"  backend: sql\n  sql:\n    url: {PG}\n    pool_size: 5\n")
    monkeypatch.setenv("LEX_AI_SESSION__SQL__URL", "postgresql://app@db2/app")
    monkeypatch.setenv("LEX_AI_SESSION__SQL__POOL_SIZE", "7")
    config = SessionConfig.from_env_profile()
    assert (config.database_url, config.db_pool_size) == ("postgresql://app@db2/app", 7)


def test_a_flat_env_var_over_a_yaml_block_is_refused_naming_the_block_env_var(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The framework merges YAML and the environment into one dict before validation,
    # so a flat variable over a block key is a conflict; the message says what works.
    _yaml(tmp_path, monkeypatch, f"  backend: sql\n  sql:\n    url: {PG}\n")
    monkeypatch.setenv("LEX_AI_SESSION__DATABASE_URL", "postgresql://app@db2/app")
    with pytest.raises(ConfigurationError) as info:
        SessionConfig.from_env_profile()
    message = str(info.value)
    assert "ai_session.sql.url / ai_session.database_url: both are set" in message
    assert "LEX_AI_SESSION__SQL__URL for sql.url" in message


def test_a_conflict_in_one_source_is_refused_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _yaml(tmp_path, monkeypatch, "  backend: sql\n  db_pool_size: 4\n  sql:\n    pool_size: 5\n")
    with pytest.raises(ConfigurationError, match=r"sql\.pool_size / ai_session\.db_pool_size"):
        SessionConfig.from_env_profile()
    in_code = _error(backend="sql", sql={"url": PG}, database_url="postgresql://app@db2/app")
    assert "ai_session.sql.url / ai_session.database_url: both are set" in in_code


def test_a_wrong_block_from_the_environment_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _yaml(tmp_path, monkeypatch, "  backend: redis\n")
    monkeypatch.setenv("LEX_AI_SESSION__SQL__POOL_SIZE", "4")
    with pytest.raises(ConfigurationError, match="ai_session.sql: backend 'redis' does not use"):
        SessionConfig.from_env_profile()


@pytest.mark.parametrize("prefix", ["a" * 32, "1abc", "bad-prefix", ""])
def test_a_table_prefix_the_sql_store_refuses_is_refused_when_the_config_is_built(
    prefix: str,
) -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(table_prefix=prefix)
    assert "ai_session.table_prefix: must start with a letter" in str(info.value)
    assert SessionConfig(table_prefix="a" * 31).table_prefix == "a" * 31
