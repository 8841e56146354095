"""A backend's own options block: ``ai_session.options`` or ``ai_session.<backend>``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram.ai.session import backends
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


def test_the_block_under_the_backend_name_reaches_from_config(tuned: Tuned) -> None:
    config = SessionConfig(backend="tuned_options", tuned_options={"shards": 4})
    assert config.options == {"shards": 4}
    create_store(config)
    assert tuned.seen == [{"shards": 4}]


def test_the_options_key_is_the_same_block(tuned: Tuned) -> None:
    config = SessionConfig(backend="tuned_options", options={"shards": 2})
    assert SessionConfig(**config.model_dump()).options == {"shards": 2}
    create_store(config)
    assert tuned.seen == [{"shards": 2}]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"shard": 2}, "tuned_options.shard"),
        ({"shards": 0}, "tuned_options.shards"),
        ({"shards": "many"}, "tuned_options.shards"),
    ],
)
def test_the_backend_judges_its_options_naming_the_key(
    tuned: Tuned, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(backend="tuned_options", tuned_options=options)
    assert f"ai_session.{field}:" in str(info.value)
    assert tuned.seen == []


def test_a_url_in_the_problem_is_shown_without_its_password(tuned: Tuned) -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(backend="tuned_options", options={"dsn": "http://u:s3cret@h/db"})
    assert "ai_session.tuned_options.dsn" in str(info.value)
    assert "s3cret" not in str(info.value)


def test_secret_options_are_masked_when_shown(tuned: Tuned) -> None:
    config = SessionConfig(
        backend="tuned_options", options={"api_token": "t0ken", "dsn": "tuned://u:pw@h"}
    )
    shown = repr(config)
    assert "t0ken" not in shown and ":pw@" not in shown
    assert config.options["api_token"] == "t0ken"  # the value itself is kept


def test_both_spellings_with_different_values_name_both(tuned: Tuned) -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(backend="tuned_options", options={"shards": 1}, tuned_options={"shards": 2})
    assert "ai_session.tuned_options / ai_session.options" in str(info.value)


def test_a_plugin_without_a_judge_gets_its_options_as_given() -> None:
    backends.register(Silent())
    try:
        config = SessionConfig(backend="silent_options", silent_options={"anything": [1]})
        assert config.options == {"anything": [1]}
    finally:
        backends.unregister("silent_options")


@pytest.mark.parametrize("bad", [["a"], "text", {1: "x"}])
def test_options_must_be_a_mapping_with_string_keys(tuned: Tuned, bad: Any) -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(backend="tuned_options", options=bad)
    assert "ai_session.tuned_options:" in str(info.value)


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
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(backend="sql", options={"ur": "x"})
    assert "ai_session.sql.ur" in str(info.value)
