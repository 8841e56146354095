"""``export --user`` and ``list`` with one damaged record, on real SQLite and Redis.

The healthy sessions are exported (listed), each damaged id is named on stderr and
the exit code is 1.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from lexigram.ai.session import SessionManagerImpl
from lexigram.ai.session.stores.base import SessionStore
from lexigram.ai.session.stores.cache import CacheSessionStore
from lexigram.ai.session.stores.database import DatabaseSessionStore
from tests.services import REDIS_URL, require_redis
from tests.stores.backends.redis import corrupt_header, drop_prefix
from tests.stores.backends.sql import corrupt

from .conftest import run, sqlite_url

pytestmark = pytest.mark.usefixtures("no_env_config")


async def _seed(
    store: SessionStore, damage: Callable[[SessionStore, str], Awaitable[None]]
) -> tuple[list[str], str]:
    """Three sessions of alice with a turn each; the middle one damaged."""
    manager = SessionManagerImpl(store, {"auto_checkpoint_interval": None, "session_ttl": 0})
    ids = []
    for text in ("one", "two", "three"):
        state = await manager.create("alice")
        await manager.add_message(state.session_id, "user", text)
        ids.append(state.session_id)
    await damage(store, ids[1])
    return [ids[0], ids[2]], ids[1]


@pytest.fixture
def sqlite_case(tmp_path: Path) -> tuple[list[str], list[str], str]:
    url = sqlite_url(tmp_path / "damaged.db")

    async def seed() -> tuple[list[str], str]:
        store = DatabaseSessionStore(url)
        await store.initialize()
        try:
            return await _seed(store, corrupt)
        finally:
            await store.close()

    healthy, damaged = asyncio.run(seed())
    return ["--database-url", url], healthy, damaged


@pytest.fixture
def redis_case() -> Iterator[tuple[list[str], list[str], str]]:
    require_redis()
    prefix = f"lxtest:{uuid.uuid4().hex[:12]}"

    async def seed() -> tuple[list[str], str]:
        store = CacheSessionStore(REDIS_URL, key_prefix=prefix)
        await store.initialize()
        try:
            return await _seed(store, corrupt_header)
        finally:
            await store.close()

    async def drop() -> None:
        store = CacheSessionStore(REDIS_URL, key_prefix=prefix)
        await store.initialize()
        try:
            await drop_prefix(store.client, store.keys.pattern)
        finally:
            await store.close()

    healthy, damaged = asyncio.run(seed())
    try:
        yield ["--redis-url", REDIS_URL, "--key-prefix", prefix], healthy, damaged
    finally:
        asyncio.run(drop())


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def case(
    request: pytest.FixtureRequest,
) -> tuple[list[str], list[str], str]:
    value: tuple[list[str], list[str], str] = request.getfixturevalue(f"{request.param}_case")
    return value


def test_export_of_a_user_exports_the_healthy_sessions_and_names_the_damaged(
    case: tuple[list[str], list[str], str], tmp_path: Path
) -> None:
    options, healthy, damaged = case
    code, out, err = run(*options, "export", "--user", "alice")
    assert code == 1
    doc = json.loads(out)
    exported = sorted(s["header"]["session_id"] for s in doc["sessions"])
    assert exported == sorted(healthy)
    assert damaged in err and "damaged" in err
    # the healthy part imports on its own
    target = sqlite_url(tmp_path / "copy.db")
    path = tmp_path / "healthy.json"
    path.write_text(out)
    code, out, _ = run("--database-url", target, "import", str(path))
    assert code == 0 and "imported 2" in out


def test_list_shows_the_healthy_sessions_and_names_the_damaged(
    case: tuple[list[str], list[str], str],
) -> None:
    options, healthy, damaged = case
    code, out, err = run(*options, "list", "alice", "--json")
    assert code == 1
    assert sorted(s["session_id"] for s in json.loads(out)) == sorted(healthy)
    assert damaged in err


def test_export_of_a_named_damaged_session_exports_the_others(
    case: tuple[list[str], list[str], str],
) -> None:
    options, healthy, damaged = case
    code, out, err = run(*options, "export", "--", healthy[0], damaged)
    assert code == 1
    assert [s["header"]["session_id"] for s in json.loads(out)["sessions"]] == [healthy[0]]
    assert damaged in err


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("redis", marks=pytest.mark.redis)])
def test_sweep_names_the_damaged_records_it_quarantined(backend: str, tmp_path: Path) -> None:
    """The sweep quarantined a damaged due session and printed nothing of it, exit 0."""
    prefix = f"lxtest:{uuid.uuid4().hex[:12]}"
    if backend == "redis":
        require_redis()
        options = ["--redis-url", REDIS_URL, "--key-prefix", prefix]
    else:
        url = sqlite_url(tmp_path / "due.db")
        options = ["--database-url", url]

    def make() -> SessionStore:
        if backend == "redis":
            return CacheSessionStore(REDIS_URL, key_prefix=prefix, session_ttl=1)
        return DatabaseSessionStore(url, session_ttl=1)

    async def seed() -> str:
        store = make()
        await store.initialize()
        try:
            config = {"auto_checkpoint_interval": None, "session_ttl": 1}
            manager = SessionManagerImpl(store, config)
            state = await manager.create("dora")
            await manager.add_message(state.session_id, "user", "hello")
            await (corrupt_header if backend == "redis" else corrupt)(store, state.session_id)
            return state.session_id
        finally:
            await store.close()

    async def drop() -> None:
        store = make()
        await store.initialize()
        try:
            if isinstance(store, CacheSessionStore):
                await drop_prefix(store.client, store.keys.pattern)
        finally:
            await store.close()

    session_id = asyncio.run(seed())
    try:
        time.sleep(1.2)  # past the session's deadline
        code, out, err = run(*options, "sweep")
        assert code == 1 and "expired 0" in out, (out, err)
        assert "1 damaged session record(s)" in err and "quarantined" in err
        # Named on stderr without -v (the WARNING log line is not shown by default, and a
        # quarantined record is not met again by a later sweep run with -v).
        assert f"damaged: {session_id}" in err.splitlines()
    finally:
        asyncio.run(drop())


def test_a_sweep_whose_batches_fail_says_so_and_exits_1(tmp_path: Path) -> None:
    """Every batch of the sweep failed (a trigger refusing each UPDATE stands for a store
    that refuses the write) and the CLI printed "skipped 3", no error, exit 0; the report
    had no failure field at all (an outside audit)."""
    import sqlite3

    from lexigram.ai.session.manager.cleanup import SessionCleanupScheduler

    db = tmp_path / "failing.db"
    url = sqlite_url(db)

    async def seed() -> list[str]:
        store = DatabaseSessionStore(url, session_ttl=1)
        await store.initialize()
        try:
            config = {"auto_checkpoint_interval": None, "session_ttl": 1}
            manager = SessionManagerImpl(store, config)
            return [(await manager.create("dora")).session_id for _ in range(3)]
        finally:
            await store.close()

    ids = asyncio.run(seed())
    raw = sqlite3.connect(db)
    raw.execute(
        "CREATE TRIGGER refuse BEFORE UPDATE ON ai_session_sessions "
        "BEGIN SELECT RAISE(ABORT, 'simulated refusal'); END"
    )
    raw.commit()
    raw.close()
    time.sleep(1.2)  # past the deadlines

    async def sweep_report() -> object:
        store = DatabaseSessionStore(url, session_ttl=1)
        await store.initialize()
        try:
            config = {"auto_checkpoint_interval": None, "session_ttl": 1}
            manager = SessionManagerImpl(store, config)
            return await SessionCleanupScheduler(manager).sweep()
        finally:
            await store.close()

    report = asyncio.run(sweep_report())
    assert report.failed == 3 and report.skipped == 0 and report.expired == 0  # type: ignore[attr-defined]
    assert report.failed_ids == tuple(sorted(ids))  # type: ignore[attr-defined]
    assert "simulated refusal" in (report.error or "")  # type: ignore[attr-defined]
    code, out, err = run("--database-url", url, "sweep")
    assert code == 1, (out, err)
    assert "failed 3" in out and "skipped 0" in out
    assert "error: the store failed for 3 session(s)" in err and "simulated refusal" in err
