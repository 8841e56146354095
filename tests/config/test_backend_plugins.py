"""Backends by name: new names and aliases, options blocks, a plugin judging its own URL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram.ai.session import backends
from lexigram.ai.session.config import SessionConfig, known_backends
from lexigram.ai.session.stores.cache import CacheSessionStore
from lexigram.ai.session.stores.database import DatabaseSessionStore
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from lexigram.ai.session.stores.registry import create_store


@pytest.mark.parametrize(
    ("name", "store_type"),
    [
        ("memory", InMemorySessionStore),
        ("in_memory", InMemorySessionStore),
        ("sql", DatabaseSessionStore),
        ("database", DatabaseSessionStore),
        ("redis", CacheSessionStore),
        ("cache", CacheSessionStore),
    ],
)
def test_each_backend_has_one_name_and_the_old_one_as_alias(name: str, store_type: type) -> None:
    config = SessionConfig(backend=name)
    store = create_store(config)
    assert isinstance(store, store_type)
    assert store.backend_name == backends.canonical_name(name)  # telemetry labels, explorer
    found = backends.find_backend(name)
    assert found is not None and found.name == backends.canonical_name(name)


def test_options_blocks_fill_the_flat_fields() -> None:
    config = SessionConfig(
        backend="sql",
        sql={"url": "mysql://app:pw@127.0.0.1:3306/app", "table_prefix": "t_", "pool_size": 4},
    )
    assert (config.database_url, config.table_prefix, config.db_pool_size) == (
        "mysql://app:pw@127.0.0.1:3306/app",
        "t_",
        4,
    )
    store = create_store(config)
    assert isinstance(store, DatabaseSessionStore)
    assert store.url == "mysql+asyncmy://app:***@127.0.0.1:3306/app?charset=utf8mb4"
    redis = SessionConfig(redis={"url": "redis://h:6379/2", "cluster": False, "pool_size": 7})
    assert redis.backend == "redis" and redis.redis_url == "redis://h:6379/2"
    assert redis.redis_pool_size == 7


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"sql": {"ur": "sqlite://"}}, "sql.ur"),
        ({"sql": "sqlite://"}, "sql"),
        ({"sql": {"url": "postgresql://h/a"}, "database_url": "postgresql://h/b"}, "sql.url"),
        ({"redis": {"url": "http://h"}}, "redis.url"),
    ],
)
def test_bad_blocks_are_refused_naming_the_field(given: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(**given)
    assert f"ai_session.{field}" in str(info.value)


class MongoLike:
    """A plugin backend with its own URL scheme (built in code, not installed)."""

    name = "mongo_like"
    url_field: str | None = "database_url"
    persistent = True

    def url_problem(self, url: str) -> str | None:
        return None if url.startswith("mongodb://") else f"expected mongodb://host/db, got {url}"

    def from_config(self, config: Any) -> InMemorySessionStore:
        return InMemorySessionStore(session_ttl=config.session_ttl)

    async def setup(self, config: Any) -> str:
        return "ready"


@pytest.fixture
def mongo_like() -> Iterator[MongoLike]:
    backend = MongoLike()
    backends.register(backend)
    try:
        yield backend
    finally:
        backends.unregister(backend.name)


def test_a_plugin_judges_its_own_url(mongo_like: MongoLike) -> None:
    config = SessionConfig(backend="mongo_like", database_url="mongodb://u:pw@db.example/app")
    assert isinstance(create_store(config), InMemorySessionStore)
    assert "mongo_like" in known_backends()
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(backend="mongo_like", database_url="postgresql://u:s3cret@h/db")
    assert "ai_session.database_url" in str(info.value) and "s3cret" not in str(info.value)


def test_a_plugin_selected_without_its_url_is_told_it_is_not_set(mongo_like: MongoLike) -> None:
    """It was judged on the SQL default, a URL the user never wrote (an outside audit)."""
    with pytest.raises(ConfigurationError, match="is not set; backend 'mongo_like'"):
        SessionConfig(backend="mongo_like")


def test_a_plugin_url_in_a_block_is_named_as_written(mongo_like: MongoLike) -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(backend="mongo_like", sql={"url": "postgresql://u:s3cret@h/db"})
    assert "ai_session.sql.url" in str(info.value) and "s3cret" not in str(info.value)
    good = SessionConfig(backend="mongo_like", sql={"url": "mongodb://h/app"})
    assert good.database_url == "mongodb://h/app"


def test_an_unknown_backend_is_refused_naming_the_field() -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(backend="nosuch")
    assert "ai_session.backend" in str(info.value) and "'sql'" in str(info.value)


def test_the_entry_point_group_is_read() -> None:
    assert backends.BACKEND_GROUP == "lexigram.ai.session.backends"
    assert {"memory", "sql", "redis", "in_memory", "database", "cache"} <= (
        backends.backend_names()
    )


class ValkeyLike(MongoLike):
    """A plugin reading ``redis_url`` with a scheme of its own."""

    name = "valkey_like"
    url_field = "redis_url"

    def url_problem(self, url: str) -> str | None:
        return None if url.startswith("valkey://") else f"expected valkey://host, got {url}"


class NoUrl(MongoLike):
    """A plugin reading no URL field."""

    name = "no_url"
    url_field = None


@pytest.fixture
def url_plugins() -> Iterator[None]:
    for backend in (ValkeyLike(), NoUrl()):
        backends.register(backend)
    try:
        yield
    finally:
        backends.unregister("valkey_like")
        backends.unregister("no_url")


def test_a_plugin_reading_redis_url_is_judged_by_itself_not_by_the_redis_rules(
    url_plugins: None,
) -> None:
    assert SessionConfig(backend="valkey_like", redis_url="valkey://h:1/0").redis_url
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(backend="valkey_like", redis_url="redis://u:s3cret@h:6379/0")
    message = str(info.value)
    assert "ai_session.redis_url" in message and "expected valkey://" in message
    assert "s3cret" not in message


def test_a_url_field_the_plugin_does_not_read_is_not_checked(url_plugins: None) -> None:
    config = SessionConfig(backend="no_url", database_url="mongodb://h/db", redis_url="x:y")
    assert config.database_url == "mongodb://h/db"
    mongo = SessionConfig(
        backend="valkey_like", redis_url="valkey://h:1/0", database_url="mongodb://h/db"
    )
    assert mongo.database_url == "mongodb://h/db"


def test_registering_over_an_installed_plugin_needs_replace() -> None:
    installed = sorted(backends._plugins())
    if not installed:
        pytest.fail("the example plugin (examples/plugin_backend) is not installed")
    name = installed[0]
    with pytest.raises(ValueError, match="installed"):
        backends.register(NoUrl.__new__(type("Other", (NoUrl,), {"name": name})))
    assert backends.find_backend(name) is not None
    assert type(backends.find_backend(name)).__name__ != "Other"


def test_the_clis_database_url_sets_a_configured_plugins_url(
    mongo_like: MongoLike, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """``--database-url`` forced the ``sql`` backend and judged a configured plugin's URL
    by the SQL rules ("unsupported scheme"; an outside plugin audit)."""
    from lexigram.ai.session.cli.operations import build_config

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEX_AI_SESSION__BACKEND", "mongo_like")
    config = build_config(database_url="mongodb://db.example/app")
    assert (config.backend, config.database_url) == ("mongo_like", "mongodb://db.example/app")
    base = SessionConfig(backend="mongo_like", database_url="mongodb://a/b")
    again = build_config(database_url="mongodb://c/d", base=base)
    assert (again.backend, again.database_url) == ("mongo_like", "mongodb://c/d")
    moving = build_config(database_url=f"sqlite+aiosqlite:///{tmp_path}/s.db")
    assert moving.backend == "sql"  # a URL the plugin refuses: sql, as before
    monkeypatch.delenv("LEX_AI_SESSION__BACKEND")
    plain = build_config(database_url=f"sqlite+aiosqlite:///{tmp_path}/s.db")
    assert plain.backend == "sql"  # no plugin configured: the flag chooses sql
