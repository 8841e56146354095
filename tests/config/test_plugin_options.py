"""A backend's own options block: ``ai_session.options``, judged by the backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram import Application
from lexigram.ai.session import SessionModule, backends
from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from lexigram.ai.session.stores.registry import create_store


class Tuned:
    """A plugin that reads ``options`` and judges them itself."""

    name = "tuned_options"
    url_field: str | None = None
    persistent = False

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def url_problem(self, url: str) -> str | None:
        return None

    def options_problem(self, options: dict[str, Any]) -> tuple[str, str] | None:
        unknown = sorted(set(options) - {"shards", "dsn", "api_token"})
        if unknown:
            return unknown[0], "unknown option; expected shards, dsn, api_token"
        shards = options.get("shards", 1)
        if not isinstance(shards, int) or shards < 1:
            return "shards", f"must be a positive integer, got {shards!r}"
        dsn = options.get("dsn", "")
        if dsn and not str(dsn).startswith("tuned://"):
            return "dsn", f"expected tuned://host, got {dsn}"
        return None

    def from_config(self, config: Any) -> InMemorySessionStore:
        self.seen.append(dict(config.options))
        return InMemorySessionStore(session_ttl=config.session_ttl)

    async def setup(self, config: Any) -> str:
        return "ready"


class Silent:
    """A plugin without ``options_problem``: its options reach it unjudged."""

    name = "silent_options"
    url_field: str | None = None
    persistent = False

    def url_problem(self, url: str) -> str | None:
        return None

    def from_config(self, config: Any) -> InMemorySessionStore:
        return InMemorySessionStore()

    async def setup(self, config: Any) -> str:
        return "ready"


@pytest.fixture
def tuned() -> Iterator[Tuned]:
    backend = Tuned()
    backends.register(backend)
    try:
        yield backend
    finally:
        backends.unregister(backend.name)


def test_the_options_block_reaches_from_config(tuned: Tuned) -> None:
    config = SessionConfig(backend="tuned_options", options={"shards": 2})
    assert SessionConfig(**config.model_dump()).options == {"shards": 2}
    create_store(config)
    assert tuned.seen == [{"shards": 2}]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"shard": 2}, "options.shard"),
        ({"shards": 0}, "options.shards"),
        ({"shards": "many"}, "options.shards"),
    ],
)
def test_the_backend_judges_its_options_naming_the_key(
    tuned: Tuned, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(backend="tuned_options", options=options)
    assert f"ai_session.{field}:" in str(info.value)
    assert tuned.seen == []


def test_a_url_in_the_problem_is_shown_without_its_password(tuned: Tuned) -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(backend="tuned_options", options={"dsn": "http://u:s3cret@h/db"})
    assert "ai_session.options.dsn" in str(info.value)
    assert "s3cret" not in str(info.value)


def test_secret_options_are_masked_when_shown(tuned: Tuned) -> None:
    config = SessionConfig(
        backend="tuned_options", options={"api_token": "t0ken", "dsn": "tuned://u:pw@h"}
    )
    shown = repr(config)
    assert "t0ken" not in shown and ":pw@" not in shown
    assert config.options["api_token"] == "t0ken"  # the value itself is kept


def test_nested_secret_options_are_masked_when_shown() -> None:
    """Only the top level was masked (an outside audit)."""
    options = {"nested": {"password": "S7", "deeper": [{"token": "S8"}]},
               "list": ["redis://:S9@h/0"]}
    backends.register(Silent())
    try:
        shown = repr(SessionConfig(backend="silent_options", options=options))
    finally:
        backends.unregister("silent_options")
    assert not any(secret in shown for secret in ("S7", "S8", ":S9@"))


def test_a_plugin_without_a_judge_gets_its_options_as_given() -> None:
    backends.register(Silent())
    try:
        config = SessionConfig(backend="silent_options", options={"anything": [1]})
        assert config.options == {"anything": [1]}
    finally:
        backends.unregister("silent_options")


@pytest.mark.parametrize("bad", [["a"], "text", {1: "x"}])
def test_options_must_be_a_mapping_with_string_keys(tuned: Tuned, bad: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(backend="tuned_options", options=bad)
    assert "ai_session.options:" in str(info.value)


def test_the_memory_backend_takes_no_options() -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(backend="memory", options={"a": 1})
    assert "ai_session.options:" in str(info.value)
    assert SessionConfig(backend="memory").options == {}


def test_options_of_sql_and_redis_are_their_blocks() -> None:
    sql = SessionConfig(backend="sql", options={"table_prefix": "o_", "pool_size": 3})
    assert (sql.table_prefix, sql.db_pool_size, sql.options) == ("o_", 3, {})
    redis = SessionConfig(backend="redis", options={"pool_size": 9})
    assert (redis.redis_pool_size, redis.options) == (9, {})
    chosen = SessionConfig(database_url="postgresql://h/db", options={"pool_size": 6})
    assert (chosen.backend, chosen.db_pool_size, chosen.options) == ("sql", 6, {})
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(backend="sql", options={"ur": "x"})
    assert "ai_session.options.ur:" in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(backend="sql", options={"pool_size": 3}, sql={"pool_size": 4})
    assert "ai_session.sql / ai_session.options" in str(info.value)


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"backend": "sql", "sql": {"url": "ftp://h/db"}}, "ai_session.sql.url: unsupported"),
        ({"sql": {"url": "redis://h"}}, "ai_session.sql.url: unsupported scheme"),
        ({"backend": "sql", "options": {"url": "ftp://h/db"}}, "ai_session.options.url:"),
        ({"sql": {"url": "mysql+asyncmy://root@h"}}, "ai_session.sql.url: no database"),
        ({"backend": "redis", "redis": {"url": "http://h"}}, "ai_session.redis.url: unsupported"),
        ({"backend": "redis", "redis": {"url": "redis://h/x"}}, "ai_session.redis.url: db 'x'"),
        ({"backend": "sql", "sql": {"pool_size": 0}}, "ai_session.sql.pool_size: must be >= 1"),
        ({"backend": "redis", "options": {"pool_size": "many"}}, "ai_session.options.pool_size:"),
        ({"backend": "sql", "sql": "sqlite"}, "ai_session.sql: must be a mapping"),
    ],
)
def test_a_bad_block_value_is_named_as_written(given: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(**given)
    assert named in str(info.value)


def test_a_rule_across_fields_still_names_the_flat_fields() -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(backend="redis", redis={"url": "redis://h:6379/3", "cluster": True})
    assert "ai_session.redis_url / ai_session.redis_cluster" in str(info.value)


async def test_blocks_are_read_from_application_yaml(
    tuned: Tuned, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "application.yaml").write_text(
        "ai_session:\n  backend: tuned_options\n  options:\n    shards: 3\n"
        "  sql:\n    pool_size: 4\n  redis:\n    pool_size: 5\n"
    )
    async with Application.boot(modules=[SessionModule.configure()]) as app:
        config = await app.container.resolve(SessionConfig)
    assert (config.options, config.db_pool_size, config.redis_pool_size) == ({"shards": 3}, 4, 5)
    assert (config.sql, config.redis) == (None, None)
    assert tuned.seen == [{"shards": 3}]


def test_nested_secrets_never_appear_in_a_configuration_error(tuned: Tuned) -> None:
    """A plugin's message quoting a nested URL, and a block with a bad key, printed
    secrets (a regression audit)."""
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(
            backend="tuned_options",
            options={"shards": [{"dsn": "redis://admin:hunter22@db:6379"}], "api_token": "t0ken"},
        )
    assert "hunter22" not in str(info.value)
    with pytest.raises(ConfigurationError) as bad:
        SessionConfig(backend="tuned_options", options={"db_password": "hunter22", 1: "x"})
    assert "hunter22" not in str(bad.value) and "ai_session.options" in str(bad.value)
