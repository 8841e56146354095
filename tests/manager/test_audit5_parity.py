"""Found by a manager-level audit comparing every backend with the in-memory one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session.branching.branch_manager import BranchManager
from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.events import SessionClosedEvent
from lexigram.ai.session.hooks import HOOK_SESSION_CLOSED
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.manager.notifier import SessionNotifier
from lexigram.ai.session.stores.cache import CacheSessionStore
from lexigram.ai.session.stores.database import DatabaseSessionStore
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from tests.services import REDIS_URL, drop_redis_keys, require_redis


class _Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


class _Recorder(SessionNotifier):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[Any, str | None]] = []

    async def notify(self, event: Any = None, hook: str | None = None, payload: Any = None) -> None:
        self.sent.append((event, hook))


def _turn(n: int) -> SessionTurn:
    return SessionTurn(turn_id=f"t{n}", role="user", content=f"m{n}", timestamp=datetime.now(UTC))


async def test_store_times_are_utc_whatever_the_clocks_offset(tmp_path: Path) -> None:
    clock = _Clock(datetime(2030, 6, 1, 8, 0, tzinfo=timezone(timedelta(hours=2))))
    for store in (
        InMemorySessionStore(clock=clock),
        DatabaseSessionStore(f"sqlite+aiosqlite:///{tmp_path / 's.db'}", clock=clock),
    ):
        await store.initialize()
        manager = SessionManagerImpl(store, SessionConfig(auto_checkpoint_interval=None))
        state = await manager.create("u", session_id="s")
        await manager.add_turns("s", [_turn(1)])
        checkpoint = await manager.checkpoint("s")
        record = await store.load_record("s")
        assert record is not None
        for stamp in (state.created_at, record.state.updated_at, checkpoint.created_at):
            assert stamp == datetime(2030, 6, 1, 6, 0, tzinfo=UTC)
            assert stamp.utcoffset() == timedelta(0), type(store).__name__
        await store.close()


async def test_find_expired_is_earliest_deadline_first(tmp_path: Path) -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    for make in (
        lambda c: InMemorySessionStore(session_ttl=3600, clock=c),
        lambda c: DatabaseSessionStore(
            f"sqlite+aiosqlite:///{tmp_path / uuid.uuid4().hex}.db", session_ttl=3600, clock=c
        ),
    ):
        clock = _Clock(start)
        store = make(clock)
        await store.initialize()
        manager = SessionManagerImpl(store, SessionConfig(session_ttl=3600))
        await manager.create("u", session_id="a")
        await manager.create("u", session_id="b")
        clock.at = start + timedelta(seconds=10)
        await manager.add_message("a", "user", "later")  # a's deadline is now the later one
        clock.at = start + timedelta(seconds=4000)
        assert await store.find_expired(limit=10) == ["b", "a"], type(store).__name__
        await store.close()


async def test_redis_key_expiry_follows_the_managers_ttl() -> None:
    require_redis()
    prefix = f"a5{uuid.uuid4().hex[:6]}"
    store = CacheSessionStore(REDIS_URL, key_prefix=prefix, session_ttl=0)
    await store.initialize()
    client = aioredis.from_url(REDIS_URL)
    try:
        manager = SessionManagerImpl(store, SessionConfig(session_ttl=3600))
        await manager.create("u", session_id="s")
        await manager.add_turns("s", [_turn(1)])
        header = store.keys.header("s")
        assert await client.pttl(header) > 3600 * 1000  # the safety net is set
    finally:
        await drop_redis_keys(client, prefix)
        await client.aclose()
        await store.close()


async def test_a_merge_that_reaches_the_turn_cap_sends_the_close() -> None:
    store = InMemorySessionStore()
    manager = SessionManagerImpl(store, SessionConfig(max_turns_per_session=3))
    await manager.create("u", session_id="p")
    await manager.add_turns("p", [_turn(1)])
    recorder = _Recorder()
    branches = BranchManager(store, max_turns_per_session=3, notifier=recorder)
    branch = await branches.fork("p", "b")
    await store.append_turns(branch.session_id, [_turn(2), _turn(3)])
    merged = await branches.merge("p", branch.session_id)
    assert merged.status.value == "closed"
    closes = [e for e, hook in recorder.sent if hook == HOOK_SESSION_CLOSED]
    assert len(closes) == 1 and isinstance(closes[0], SessionClosedEvent)
    assert closes[0].reason == "max_turns" and closes[0].session_id == "p"
