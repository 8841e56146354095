"""Redis: a close, a turn-cap end or a delete is reported done when the index step
after its script cannot reach Redis (an outside audit, through a proxy cutting the
connection right after the script's reply: the caller got StoreUnavailableError for
a stored end, its retry was refused as closed -> closed, and a delete's retry
answered False). What the step leaves is what a process dying between the two steps
leaves (docs/backend-redis.md, "Limits and known behaviour")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionStatus

from lexigram.ai.session import SessionConfig
from lexigram.ai.session.events import SessionClosedEvent
from lexigram.ai.session.exceptions import StoreUnavailableError
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.stores.cache import CacheSessionStore
from lexigram.ai.session.testing.conformance import make_turn
from tests.manager.test_events_support import RecordingBus
from tests.stores.backends.redis import open_store

pytestmark = pytest.mark.redis


@pytest.fixture
async def store(cluster: bool) -> AsyncIterator[CacheSessionStore]:
    async with open_store(cluster=cluster, session_ttl=0) as factory:
        made = await factory()
        assert isinstance(made, CacheSessionStore)
        yield made


def _unreachable_index(store: CacheSessionStore, *names: str) -> list[str]:
    """The named index steps of ``store`` fail as when Redis cannot be reached."""
    failed: list[str] = []
    index: Any = store._core.index
    for name in names:

        async def fail(*_: Any, _name: str = name, **__: Any) -> None:
            failed.append(_name)
            raise StoreUnavailableError("Redis is unavailable (pipeline): test")

        setattr(index, name, fail)
    return failed


def _manager(store: CacheSessionStore, **config: Any) -> tuple[SessionManagerImpl, RecordingBus]:
    bus = RecordingBus()
    settings: dict[str, Any] = {"auto_checkpoint_interval": None, "session_ttl": 0}
    settings.update(config)
    return SessionManagerImpl(store, SessionConfig(**settings), event_bus=bus), bus


async def test_a_close_is_done_when_its_index_step_fails(store: CacheSessionStore) -> None:
    manager, bus = _manager(store)
    sid = (await manager.create("alice")).session_id
    failed = _unreachable_index(store, "ended")
    await manager.close(sid)
    assert failed == ["ended"]
    assert [e.session_id for e in bus.of(SessionClosedEvent)] == [sid]
    record = await store.load_record(sid)
    assert record is not None and record.state.status == SessionStatus.CLOSED


async def test_a_turn_cap_end_is_done_when_its_index_step_fails(
    store: CacheSessionStore,
) -> None:
    manager, bus = _manager(store, max_turns_per_session=2)
    sid = (await manager.create("alice")).session_id
    await manager.add_turn(sid, make_turn(1))
    failed = _unreachable_index(store, "ended")
    await manager.add_turn(sid, make_turn(2))
    assert failed == ["ended"]
    assert [e.reason for e in bus.of(SessionClosedEvent)] == ["max_turns"]
    record = await store.load_record(sid)
    assert record is not None and record.state.turn_count == 2


async def test_a_delete_is_done_when_its_index_step_fails(store: CacheSessionStore) -> None:
    manager, _ = _manager(store)
    sid = (await manager.create("alice")).session_id
    failed = _unreachable_index(store, "forget")
    assert await manager.delete(sid) is True
    assert failed == ["forget"]
    assert await store.load_record(sid) is None
    assert await manager.delete(sid) is False  # gone: the first call was the one
