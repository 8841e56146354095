"""Redis URL and key-prefix mistakes, refused by name in the config and in the store alike
(an outside day-one audit: the store built alone took ``/abc`` as db 0, a port out of
range raised a bare ValueError, ``/1?db=2`` used db 2 silently, and a prefix with ``{}``
broke every create on Redis Cluster)."""

from __future__ import annotations

import pytest
from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram.ai.session import SessionConfig
from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.stores.cache import CacheSessionStore


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("redis://127.0.0.1:6379/abc", "not a database number"),
        ("redis://:hunter2@127.0.0.1:99999/0", "Port out of range"),
        ("redis://127.0.0.1:6379/1?db=2", "selects db 1 and 2"),
    ],
)
def test_bad_redis_urls_are_refused_by_the_config_and_the_store(url: str, said: str) -> None:
    with pytest.raises(ConfigurationError, match=said) as in_config:
        SessionConfig(backend="redis", redis_url=url)
    assert "ai_session.redis_url" in str(in_config.value)
    with pytest.raises(SessionValidationError, match=said) as in_store:
        CacheSessionStore(url)
    assert in_store.value.field == "redis_url"
    assert "hunter2" not in str(in_config.value) + str(in_store.value)


def test_the_same_db_twice_is_accepted() -> None:
    assert SessionConfig(backend="redis", redis_url="redis://h:6379/1?db=1").redis_url


@pytest.mark.parametrize("prefix", ["app{}", "{app}", "a}b"])
def test_braces_in_the_key_prefix_are_refused_on_redis_cluster(prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="ai_session.key_prefix"):
        SessionConfig(
            backend="redis", redis_url="redis://h:7000/0", redis_cluster=True, key_prefix=prefix
        )
    with pytest.raises(SessionValidationError, match="Redis Cluster") as caught:
        CacheSessionStore("redis://127.0.0.1:7000/0", cluster=True, key_prefix=prefix)
    assert caught.value.field == "key_prefix"
    # On a single Redis a brace in the prefix is only text.
    assert SessionConfig(backend="redis", key_prefix=prefix).key_prefix == prefix
