"""The CLI names each backend once (``memory``, ``sql``, ``redis``); old names still work."""

from __future__ import annotations

import pytest

from lexigram.ai.session.cli.operations import build_config
from lexigram.ai.session.config import SessionConfig

BASE = SessionConfig()  # not read from the environment: the test sees only its options


def test_a_lone_url_selects_the_backend_by_its_one_name() -> None:
    sql = build_config(database_url="sqlite+aiosqlite:///x.db", base=BASE)
    redis = build_config(redis_url="redis://127.0.0.1:6379/0", base=BASE)
    assert (sql.backend, redis.backend) == ("sql", "redis")


@pytest.mark.parametrize(
    ("old", "url"),
    [("database", {"database_url": "sqlite+aiosqlite:///x.db"}),
     ("cache", {"redis_url": "redis://127.0.0.1:6379/0"}),
     ("in_memory", {})],
)
def test_an_old_name_given_with_backend_is_still_accepted(old: str, url: dict[str, str]) -> None:
    assert build_config(backend=old, base=BASE, **url).backend == old
