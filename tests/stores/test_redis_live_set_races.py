"""A user's live set on Redis keeps a session created again under an ended one's id.

The end of a session (a close, an append that reached the turn cap, the sweeper's
expiry) is written in the session's slot; its removal from the user's live set (the
per-user count and cap) follows in the user's slot. Another process could delete the
ended session and create it again under the same id (live) in between, and the late
removal took the *new* session out of the live set: listed live, not counted, and
not held against ``max_sessions_per_user`` (a landing CI run of the random stress
test found ``bob: 3 live listed, 2 counted``). The same happened when the cap check's
prune read an entry as dead and the id was created again before it was removed.
A removal now takes an entry only while it is still the one the remover saw (the
ordinal of the ended header, or the reservation time read).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionState, SessionStatus

from lexigram.ai.session.exceptions import SessionCapacityError
from lexigram.ai.session.stores.cache import CacheSessionStore
from lexigram.ai.session.testing.conformance import FakeClock, make_state
from tests.stores.backends.redis import open_store

pytestmark = pytest.mark.redis

_TTL = 60
_LIVE = frozenset({SessionStatus.ACTIVE, SessionStatus.SUSPENDED})


@pytest.fixture
async def pair(cluster: bool) -> AsyncIterator[tuple[CacheSessionStore, CacheSessionStore]]:
    """Two store instances ("two processes") of one namespace on one test clock."""
    async with open_store(cluster=cluster, session_ttl=_TTL, clock=FakeClock()) as factory:
        first, second = await factory(), await factory()
        assert isinstance(first, CacheSessionStore) and isinstance(second, CacheSessionStore)
        yield first, second


def _before(target: Any, name: str, step: Callable[[], Awaitable[None]]) -> None:
    """Run ``step`` (the other process) once, just before ``target.name`` runs (the
    index update that follows the end written in the session's slot)."""
    original = getattr(target, name)
    done = False

    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        nonlocal done
        if not done:
            done = True
            await step()
        return await original(*args, **kwargs)

    setattr(target, name, wrapped)


def _after(target: Any, name: str, step: Callable[[], Awaitable[None]]) -> None:
    """Run ``step`` (the other process) once, just after ``target.name`` has run."""
    original = getattr(target, name)
    done = False

    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        nonlocal done
        result = await original(*args, **kwargs)
        if not done:
            done = True
            await step()
        return result

    setattr(target, name, wrapped)


def _fresh(store: CacheSessionStore, user_id: str, session_id: str) -> SessionState:
    """A new session of ``user_id`` created at the store clock's present."""
    now = store.clock()
    return make_state(user_id, session_id=session_id, created_at=now, updated_at=now)


def _recreate(other: CacheSessionStore, session_id: str, user_id: str) -> Callable[[], Any]:
    async def step() -> None:
        await other.delete(session_id)
        await other.create_session(_fresh(other, user_id, session_id))

    return step


async def _live_listed(store: CacheSessionStore, user_id: str) -> int:
    return sum(s.status in _LIVE for s in await store.list_sessions(user_id))


async def test_a_close_does_not_uncount_the_session_created_again_under_its_id(
    pair: tuple[CacheSessionStore, CacheSessionStore],
) -> None:
    first, second = pair
    await first.create_session(make_state("alice", session_id="s1"))
    _before(first._core.index, "pipe", _recreate(second, "s1", "alice"))
    await first.transition(
        "s1", SessionStatus.CLOSED, allowed_from=frozenset({SessionStatus.ACTIVE})
    )
    state = await second.load("s1")
    assert state is not None and state.status is SessionStatus.ACTIVE  # the new session
    assert await second.count_live_sessions("alice") == 1
    assert await _live_listed(second, "alice") == 1


async def test_the_sweeper_does_not_uncount_the_session_created_again_under_its_id(
    pair: tuple[CacheSessionStore, CacheSessionStore],
) -> None:
    first, second = pair
    for sid in ("s1", "s2"):
        await first.create_session(make_state("bob", session_id=sid))
    clock = first.clock
    assert isinstance(clock, FakeClock)
    clock.advance(_TTL + 1)
    _before(first._core.index, "pipe", _recreate(second, "s1", "bob"))
    outcome = await first.mark_expired_batch(["s1", "s2"])
    assert sorted(r.state.session_id for r in outcome.done) == ["s1", "s2"]
    assert await second.count_live_sessions("bob") == 1  # s1, created again
    assert await _live_listed(second, "bob") == 1


async def test_one_expiry_does_not_uncount_the_session_created_again_under_its_id(
    pair: tuple[CacheSessionStore, CacheSessionStore],
) -> None:
    first, second = pair
    await first.create_session(make_state("bob", session_id="s1"))
    clock = first.clock
    assert isinstance(clock, FakeClock)
    clock.advance(_TTL + 1)
    _before(first._core.index, "pipe", _recreate(second, "s1", "bob"))
    assert await first.mark_expired("s1") is not None
    assert await second.count_live_sessions("bob") == 1
    assert await _live_listed(second, "bob") == 1


async def test_the_cap_check_does_not_drop_the_entry_of_an_id_created_again(
    pair: tuple[CacheSessionStore, CacheSessionStore],
) -> None:
    """The cap check reads s1 and s2 as expired (dead entries); before it removes them
    the other process creates s1 again: its entry stays, and the cap holds."""
    first, second = pair
    for sid in ("s1", "s2"):
        await first.create_session(make_state("carol", session_id=sid), max_live_per_user=2)
    clock = first.clock
    assert isinstance(clock, FakeClock)
    clock.advance(_TTL + 1)  # both past their deadline, not yet swept: dead entries

    async def step() -> None:
        await second.mark_expired("s1")
        await second.delete("s1")
        await second.create_session(_fresh(second, "carol", "s1"), max_live_per_user=2)

    _after(first._core.index, "probe", step)  # the cap check's read of the live set
    await first.create_session(_fresh(first, "carol", "s3"), max_live_per_user=2)
    assert await second.count_live_sessions("carol") == 2  # s1 (new) and s3
    assert await _live_listed(second, "carol") == 2
    with pytest.raises(SessionCapacityError, match="max_sessions_per_user=2"):
        await second.create_session(_fresh(second, "carol", "s4"), max_live_per_user=2)
