"""``redis_url`` names a real database number; Redis Cluster only has db 0."""

from __future__ import annotations

import pytest
from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram.ai.session import SessionConfig
from lexigram.ai.session.config_urls import redis_db


@pytest.mark.parametrize(
    ("url", "db"),
    [
        ("redis://127.0.0.1:6379", 0),
        ("redis://127.0.0.1:6379/", 0),
        ("redis://127.0.0.1:6379/7", 7),
        ("rediss://h:6380/15", 15),
        ("redis://h/3?db=3", 3),  # the same db twice; two different ones are refused
        ("unix:///tmp/redis.sock?db=2", 2),
        ("unix:///tmp/redis.sock", 0),
    ],
)
def test_valid_urls_and_their_db(url: str, db: int) -> None:
    assert redis_db(url) == db
    assert SessionConfig(redis_url=url).redis_url == url


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/abc",
        "redis://h/-1",
        "redis://h/1?db=x",
        "unix:///s.sock?db=one",
    ],
)
def test_a_db_that_is_not_a_number_names_redis_url(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"ai_session\.redis_url: db '.*' in .* is not"):
        SessionConfig(redis_url=url)


def test_cluster_with_a_db_other_than_0_names_both_fields() -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(redis_url="redis://127.0.0.1:7101/2", redis_cluster=True)
    assert "ai_session.redis_url / ai_session.redis_cluster" in str(info.value)
    config = SessionConfig(redis_url="redis://127.0.0.1:7101/0", redis_cluster="true")
    assert config.redis_cluster is True and config.backend == "redis"


def test_a_store_built_directly_names_redis_url_too() -> None:
    from lexigram.ai.session.exceptions import SessionValidationError
    from lexigram.ai.session.stores.cache import CacheSessionStore

    with pytest.raises(SessionValidationError) as info:
        CacheSessionStore("redis://127.0.0.1:7101/2", cluster=True)  # no connection is made
    assert info.value.field == "redis_url"
