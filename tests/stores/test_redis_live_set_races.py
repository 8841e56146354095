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

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionState, SessionStatus

from lexigram.ai.session.exceptions import SessionCapacityError, SessionValidationError
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


# --------------------------------------------------------------------------------------
# The same kind of late step in a delete, a refused create, a dead writer's entry and an
# erasure (a regression audit of the fix above): each removed the index entries of a
# session another process had just saved or created under the id, leaving a stored,
# live session in none of its user's indexes (not listed, not counted, not held under
# the cap, missed by erase_user).


async def _indexed(store: CacheSessionStore, user_id: str) -> tuple[list[str], list[str]]:
    """The ids in the user's sessions index and live set."""
    keys = store.keys
    every = await store.client.zrange(keys.user_sessions(user_id), 0, -1)
    live = await store.client.zrange(keys.user_live(user_id), 0, -1)
    return sorted(m.decode() for m in every), sorted(m.decode() for m in live)


async def test_a_delete_keeps_the_entries_of_the_session_saved_again_under_its_id(
    pair: tuple[CacheSessionStore, CacheSessionStore],
) -> None:
    first, second = pair
    for sid in ("X", "Y"):
        await first.create_session(_fresh(first, "dave", sid))

    async def step() -> None:  # after the delete's script, before its index step
        await second.save(_fresh(second, "dave", "X"))

    _before(first._core.index, "forget", step)
    await first.delete("X")
    assert await second.load("X") is not None
    assert await _indexed(second, "dave") == (["X", "Y"], ["X", "Y"])
    assert await second.count_live_sessions("dave") == 2
    with pytest.raises(SessionCapacityError):
        await second.create_session(_fresh(second, "dave", "Z"), max_live_per_user=2)


def _hold_create(store: CacheSessionStore, step: Callable[[], Awaitable[None]]) -> None:
    """Run ``step`` once when ``store``'s next create has reserved and not yet written."""
    original = store._core.run
    done = False

    async def run(name: str, *args: Any, **kwargs: Any) -> Any:
        nonlocal done
        if name == "create" and not done:
            done = True
            await step()
        return await original(name, *args, **kwargs)

    store._core.run = run  # type: ignore[method-assign]


async def test_a_refused_create_keeps_the_entries_of_the_session_saved_meanwhile(
    pair: tuple[CacheSessionStore, CacheSessionStore],
) -> None:
    """A create has reserved X; a save of X (finding it reserved but not stored) indexes
    it anew and writes it; the create is refused, and its undo leaves the save's entries,
    under the ordinal the header names."""
    first, second = pair

    async def step() -> None:
        await first.save(_fresh(first, "erin", "X"))

    _hold_create(second, step)
    with pytest.raises(SessionValidationError, match="already exists"):
        await second.create_session(_fresh(second, "erin", "X"))
    stored = await first.load("X")
    assert stored is not None and stored.user_id == "erin"
    assert await _indexed(first, "erin") == (["X"], ["X"])
    assert await first.count_live_sessions("erin") == 1
    ordinal = await first.client.hget(first.keys.header("X"), "o")
    held = await first.client.zscore(first.keys.user_sessions("erin"), "X")
    assert ordinal is not None and held is not None and int(ordinal) == int(held)


async def test_two_creates_over_a_dead_writers_entry_keep_the_winners_entries(
    pair: tuple[CacheSessionStore, CacheSessionStore],
) -> None:
    """X's index entry is a dead writer's (11 minutes old, no session); both instances
    create X: the one that drops the dead entry late must not drop the winner's."""
    first, second = pair
    keys = first.keys
    dead = time.time_ns() // 1000 - 11 * 60 * 1_000_000
    await first.client.zadd(keys.user_sessions("fred"), {"X": 7})
    await first.client.zadd(keys.user_live("fred"), {"X": dead})
    await first.client.set(keys.user("fred")[2], 7)

    async def step() -> None:
        await second.create_session(_fresh(second, "fred", "X"))

    _before(first._core.index, "release", step)
    with pytest.raises(SessionValidationError):
        await first.create_session(_fresh(first, "fred", "X"))
    assert await first.load("X") is not None
    assert await _indexed(first, "fred") == (["X"], ["X"])
    assert await first.count_live_sessions("fred") == 1


async def _erase_while_writing(
    first: CacheSessionStore,
    second: CacheSessionStore,
    user_id: str,
    write: Callable[[], Awaitable[Any]],
) -> None:
    """``first.erase_user(user_id)`` while ``second`` runs ``write`` (a create or save),
    caught between its reservation and its write, which it makes 20 ms into the
    erasure's forgetting of the user's keys (while the erasure looks again)."""
    reserved, go = asyncio.Event(), asyncio.Event()
    original_run = second._core.run

    async def run(name: str, *args: Any, **kwargs: Any) -> Any:
        if name in ("save", "create"):
            reserved.set()
            await go.wait()
        return await original_run(name, *args, **kwargs)

    second._core.run = run  # type: ignore[method-assign]
    original_forget = first.forget_user
    writing: list[asyncio.Future[Any]] = []

    async def forget_user(*args: Any, **kwargs: Any) -> Any:
        writing.append(asyncio.ensure_future(write()))
        await reserved.wait()
        asyncio.get_running_loop().call_later(0.02, go.set)
        try:
            return await original_forget(*args, **kwargs)
        finally:
            go.set()

    first.forget_user = forget_user  # type: ignore[method-assign]
    await first.erase_user(user_id)
    assert len(writing) == 1
    await writing[0]


async def test_erase_user_keeps_the_index_of_an_erased_id_being_created_again(
    pair: tuple[CacheSessionStore, CacheSessionStore],
) -> None:
    """While erase_user forgets the user's keys, another process has reserved the erased
    id X again and not yet written it: the new session keeps its index entries."""
    first, second = pair
    await first.create_session(_fresh(first, "gina", "X"))
    await _erase_while_writing(
        first, second, "gina", lambda: second.create_session(_fresh(second, "gina", "X"))
    )
    assert await first.load("X") is not None
    assert await _indexed(first, "gina") == (["X"], ["X"])
    assert await first.count_live_sessions("gina") == 1


async def test_a_new_users_ordinals_start_high_and_stay_whole_in_lua(
    pair: tuple[CacheSessionStore, CacheSessionStore],
) -> None:
    """A user's counter that starts over starts at the time (in 100 µs units): 14 digits,
    which Lua's ``tostring`` (the reserve script of earlier versions, still running in
    another process during an upgrade or after a rollback) gives whole."""
    first, _ = pair
    before = time.time_ns() // 100_000
    one = await first.create_session(_fresh(first, "hana", "A"))
    two = await first.create_session(_fresh(first, "hana", "B"))
    ordinals = [
        int(await first.client.hget(first.keys.header(r.state.session_id), "o")) for r in (one, two)
    ]
    assert ordinals[0] >= before and len(str(ordinals[0])) == 14
    assert ordinals[1] == ordinals[0] + 1
    scores = dict(
        await first.client.zrange(first.keys.user_sessions("hana"), 0, -1, withscores=True)
    )
    assert [int(scores[b"A"]), int(scores[b"B"])] == ordinals


# ---- a second regression audit: the whole-state save and erase_user against a create
# of the same id in progress in another process.


async def test_a_save_moving_a_session_to_a_user_creating_its_id_is_refused(
    pair: tuple[CacheSessionStore, CacheSessionStore],
) -> None:
    """The move would write a header naming an ordinal the new user's index does not
    hold (the create's entry is there): the session fell out of every index."""
    first, second = pair
    await first.create_session(_fresh(first, "ida", "S"))
    refused: list[Exception] = []

    async def step() -> None:
        try:
            await first.save(_fresh(first, "jon", "S"))
        except SessionValidationError as exc:
            refused.append(exc)

    _hold_create(second, step)
    with pytest.raises(SessionValidationError, match="already exists"):
        await second.create_session(_fresh(second, "jon", "S"))
    assert len(refused) == 1 and "in progress" in str(refused[0])
    stored = await first.load("S")
    assert stored is not None and stored.user_id == "ida"
    assert await _indexed(first, "ida") == (["S"], ["S"])
    assert await _indexed(first, "jon") == ([], [])


@pytest.mark.parametrize("write", ["save", "create"])
async def test_erase_user_keeps_the_index_of_a_closed_session_being_written(
    pair: tuple[CacheSessionStore, CacheSessionStore], write: str
) -> None:
    """A CLOSED session reserves in the user's sessions index only (no live entry): the
    erasure looks again while an entry has no session behind it."""
    first, second = pair
    await first.create_session(_fresh(first, "lea", "X"))
    closed = replace(_fresh(second, "lea", "NEW"), status=SessionStatus.CLOSED)

    def made() -> Awaitable[Any]:
        return second.save(closed) if write == "save" else second.create_session(closed)

    await _erase_while_writing(first, second, "lea", made)
    assert await first.load("NEW") is not None
    assert await _indexed(first, "lea") == (["NEW"], [])
    assert [s.session_id for s in await first.list_sessions("lea")] == ["NEW"]
