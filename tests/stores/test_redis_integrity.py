"""Redis store: numbers it cannot store, damaged records, key expiry, checkpoint order.

Against the real Redis on 127.0.0.1:6379 and the local Redis Cluster. Each test
asserts what is stored afterwards, not only the error raised.
"""

from __future__ import annotations

import gc
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from lexigram.contracts.ai.session import SessionCheckpoint, SessionStatus

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.exceptions import (
    CorruptRecordError,
    SessionCapacityError,
    SessionValidationError,
)
from lexigram.ai.session.manager.cleanup import SessionCleanupScheduler
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.stores.base import SessionPatch, SessionStore
from lexigram.ai.session.stores.cache import CacheSessionStore
from lexigram.ai.session.stores.redis.core import KEY_EXPIRY_MARGIN_S
from lexigram.ai.session.testing.conformance import FakeClock, make_state, make_turn
from lexigram.ai.session.validation import MAX_SAFE_INT
from tests.stores.backends.redis import corrupt_header, open_store, wrong_type_header

pytestmark = pytest.mark.redis

_A, _C = SessionStatus.ACTIVE, SessionStatus.CLOSED
_TTL = 60
_PURGE = 100
_GRACE_MS = (_PURGE + KEY_EXPIRY_MARGIN_S) * 1000


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(cluster: bool, clock: FakeClock) -> AsyncIterator[CacheSessionStore]:
    async with open_store(
        cluster=cluster, session_ttl=_TTL, purge_after_s=_PURGE, clock=clock
    ) as factory:
        made = await factory()
        assert isinstance(made, CacheSessionStore)
        yield made


async def new_session(store: SessionStore, turns: int = 0, user_id: str = "alice") -> str:
    state = make_state(user_id)
    await store.create_session(state)
    if turns:
        await store.append_turns(state.session_id, [make_turn(n) for n in range(turns)])
    return state.session_id


async def totals(store: SessionStore, sid: str) -> tuple[int, int, float]:
    record = await store.load_record(sid)
    assert record is not None
    return record.state.turn_count, record.state.total_tokens, record.state.total_cost


# ------------------------------------------------------------------ numbers
@pytest.mark.parametrize("tokens", [2**53, 2**63 - 1, 2**70, -1])
async def test_turn_tokens_past_the_limit_are_refused_naming_the_turn(
    store: CacheSessionStore, tokens: int
) -> None:
    sid = await new_session(store, 1)
    with pytest.raises(SessionValidationError) as err:
        await store.append_turns(sid, [make_turn(1), make_turn(2, tokens=tokens)])
    assert err.value.field == "turns[1].tokens_used"
    assert await totals(store, sid) == (1, 1, 0.5)
    assert len(await store.get_turns(sid)) == 1


@pytest.mark.parametrize("cost", [math.inf, -math.inf, math.nan, -0.5])
async def test_turn_costs_that_are_not_finite_and_non_negative_are_refused(
    store: CacheSessionStore, cost: float
) -> None:
    sid = await new_session(store, 1)
    with pytest.raises(SessionValidationError) as err:
        await store.append_turns(sid, [make_turn(1, cost=cost)])
    assert err.value.field == "turns[0].cost"
    assert await totals(store, sid) == (1, 1, 0.5)


async def test_a_total_past_the_limit_is_refused_before_anything_is_written(
    store: CacheSessionStore,
) -> None:
    sid = await new_session(store)
    await store.append_turns(sid, [make_turn(1, tokens=MAX_SAFE_INT - 1)])
    with pytest.raises(SessionValidationError) as err:
        await store.append_turns(sid, [make_turn(2, tokens=2)])
    assert err.value.field == "total_tokens"
    assert await totals(store, sid) == (1, MAX_SAFE_INT - 1, 0.5)
    # Up to the limit exactly: stored as the exact integer sum.
    await store.append_turns(sid, [make_turn(3, tokens=1)])
    assert await totals(store, sid) == (2, MAX_SAFE_INT, 1.0)


async def test_a_batch_whose_tokens_sum_past_the_limit_is_refused(
    store: CacheSessionStore,
) -> None:
    sid = await new_session(store)
    batch = [make_turn(1, tokens=MAX_SAFE_INT), make_turn(2, tokens=MAX_SAFE_INT)]
    with pytest.raises(SessionValidationError) as err:
        await store.append_turns(sid, batch)
    assert err.value.field == "total_tokens"
    assert await totals(store, sid) == (0, 0, 0.0)


async def test_a_cost_total_that_overflows_is_refused(store: CacheSessionStore) -> None:
    sid = await new_session(store)
    await store.append_turns(sid, [make_turn(1, cost=1e308)])
    with pytest.raises(SessionValidationError) as err:
        await store.append_turns(sid, [make_turn(2, cost=1e308)])
    assert err.value.field == "total_cost"
    assert await totals(store, sid) == (1, 1, 1e308)


async def test_a_session_created_with_totals_past_the_limit_is_not_stored(
    store: CacheSessionStore,
) -> None:
    state = make_state("alice", total_tokens=2**53)
    with pytest.raises(SessionValidationError) as err:
        await store.create_session(state)
    assert err.value.field == "state.total_tokens"
    assert await store.load(state.session_id) is None
    assert (await store.list_user_sessions("alice")).items == []


async def test_totals_stay_the_sums_over_the_live_turns(store: CacheSessionStore) -> None:
    sid = await new_session(store)
    costs = [0.1, 0.2, 0.3, 1e-9, 7.7]
    # "cost" keys inside a turn's own JSON values must not be taken for its cost
    decoy = {"cost": 99, "note": '"cost":5,'}
    turns = [
        make_turn(n, tokens=n + 1, cost=c, metadata=decoy, model='m,"cost":7')
        for n, c in enumerate(costs)
    ]
    await store.append_turns(sid, turns[:2])
    await store.append_turns(sid, turns[2:])
    await store.create_checkpoint(sid, checkpoint_id=f"cp-{sid}")

    def in_order(values: list[float]) -> float:
        total = 0.0
        for value in values:
            total += value
        return total

    assert await totals(store, sid) == (5, 15, in_order(costs))
    await store.pop_turn(sid)
    assert await totals(store, sid) == (4, 10, in_order(costs[:4]))
    await store.pop_turn(sid)
    assert await totals(store, sid) == (3, 6, in_order(costs[:3]))
    await store.restore_checkpoint(f"cp-{sid}")
    assert await totals(store, sid) == (5, 15, in_order(costs))
    await store.clear_turns(sid)
    assert await totals(store, sid) == (0, 0, 0.0)


# ---------------------------------------------------------- damaged records
async def test_a_header_of_the_wrong_type_fails_only_its_own_session(
    store: CacheSessionStore, clock: FakeClock
) -> None:
    good = await new_session(store)
    bad = await new_session(store)
    await wrong_type_header(store, bad)
    clock.advance(_TTL + 1)

    assert sorted(await store.find_expired()) == sorted([good, bad])
    expired = await store.mark_expired(good)
    assert expired is not None
    assert expired.state.status is SessionStatus.EXPIRED
    with pytest.raises(CorruptRecordError):
        await store.mark_expired(bad)
    with pytest.raises(CorruptRecordError):
        await store.load(bad)
    with pytest.raises(CorruptRecordError):
        await store.load_record(bad)

    await store.quarantine(bad)
    await store.quarantine(bad)  # idempotent
    assert await store.find_expired() == []
    assert await store.client.zscore(store.keys.deadlines, bad) is None
    assert await store.client.type(store.keys.header(bad)) == b"string"  # left for an operator

    page = await store.list_user_sessions("alice")
    assert [s.session_id for s in page.items] == [good]
    assert page.damaged == [bad]
    assert [s.session_id for s in await store.list_sessions("alice")] == [good]


async def test_an_undecodable_header_is_reported_not_expired(
    store: CacheSessionStore, clock: FakeClock
) -> None:
    good = await new_session(store)
    bad = await new_session(store)
    await corrupt_header(store, bad)
    clock.advance(_TTL + 1)
    assert sorted(await store.find_expired()) == sorted([good, bad])
    with pytest.raises(CorruptRecordError):
        await store.mark_expired(bad)
    assert await store.client.hget(store.keys.header(bad), "s") == b"active"  # untouched
    assert await store.mark_expired(good) is not None
    page = await store.list_user_sessions("alice")
    assert [s.session_id for s in page.items] == [good]
    assert page.damaged == [bad]
    assert [s.session_id for s in await store.list_sessions("alice")] == [good]


@pytest.mark.parametrize(
    "damage",
    [
        b"not json",
        b'{"turn_id":"x"}',  # a JSON object without the turn's other fields
        b"TWICE",  # two whole turn documents in one element: never two turns
    ],
)
async def test_a_damaged_turn_document_is_named_on_every_read(
    store: CacheSessionStore, damage: bytes
) -> None:
    sid = await new_session(store, turns=3)
    key = store.keys.turns(sid)
    if damage == b"TWICE":
        first = await store.client.lindex(key, 0)
        assert isinstance(first, bytes)
        damage = first + b"," + first
    await store.client.lset(key, 1, damage.decode())
    with pytest.raises(CorruptRecordError, match=sid):
        await store.load(sid)
    with pytest.raises(CorruptRecordError, match=sid):
        await store.get_turns(sid, last=3)
    with pytest.raises(CorruptRecordError, match=sid):
        await store.get_turns(sid)


async def test_a_long_session_reads_whole_with_the_collector_running_after(
    store: CacheSessionStore,
) -> None:
    sid = await new_session(store)
    turns = [make_turn(n) for n in range(300)]
    await store.append_turns(sid, turns)
    state = await store.load(sid)
    assert state is not None
    assert state.turns == turns
    assert gc.isenabled()


async def test_a_damaged_ended_session_fails_only_its_own_purge(
    store: CacheSessionStore, clock: FakeClock
) -> None:
    good = await new_session(store)
    bad = await new_session(store)
    for sid in (good, bad):
        await store.transition(sid, _C, allowed_from=frozenset({_A}))
    await wrong_type_header(store, bad)
    clock.advance(3600)
    cutoff = clock.now - timedelta(seconds=60)
    assert sorted(await store.find_purgeable(older_than=cutoff)) == sorted([good, bad])
    until = clock.now + timedelta(hours=1)
    assert await store.purge(good, tombstone_until=until) is True
    with pytest.raises(CorruptRecordError):
        await store.purge(bad, tombstone_until=until)
    await store.quarantine(bad)
    assert await store.find_purgeable(older_than=cutoff) == []
    assert await store.client.exists(store.keys.header(bad)) == 1
    assert await store.load(good) is None


async def test_pages_skip_damaged_sessions_without_losing_healthy_ones(
    store: CacheSessionStore,
) -> None:
    ids = [await new_session(store) for _ in range(5)]
    await wrong_type_header(store, ids[3])
    await corrupt_header(store, ids[1])
    seen: list[str] = []
    damaged: list[str] = []
    cursor = None
    for _ in range(10):
        page = await store.list_user_sessions("alice", limit=2, cursor=cursor)
        seen += [s.session_id for s in page.items]
        damaged += page.damaged
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [ids[4], ids[2], ids[0]]
    assert damaged == [ids[3], ids[1]]


@pytest.mark.parametrize("lost", ["missing", "empty"])
async def test_a_header_without_its_user_is_named_damaged_and_erased(
    store: CacheSessionStore, lost: str
) -> None:
    # Before: a header whose user field was lost (or emptied) was taken for a stale
    # index entry, left out of listings and exports unnamed, and erase_user said
    # complete with the session's turns still stored; an empty one loaded as user ''.
    kept = await new_session(store, turns=1)
    bad = await new_session(store, turns=2)
    if lost == "missing":
        await store.client.hdel(store.keys.header(bad), "u")
    else:
        await store.client.hset(store.keys.header(bad), "u", "")
        with pytest.raises(CorruptRecordError, match="user_id"):
            await store.load_record(bad)
    page = await store.list_user_sessions("alice")
    assert [s.session_id for s in page.items] == [kept]
    assert page.damaged == [bad]
    erased = await store.erase_user("alice")
    assert sorted(erased.sessions) == sorted([kept, bad])
    assert erased.complete
    assert await store.client.exists(store.keys.header(bad), store.keys.turns(bad)) == 0
    # The user's own keys go too (the erased session's live entry held them back).
    assert await store.client.exists(*store.keys.user("alice")) == 0


async def test_a_damaged_header_does_not_hold_a_place_under_the_cap(
    store: CacheSessionStore,
) -> None:
    bad = await new_session(store)
    await wrong_type_header(store, bad)
    await store.create_session(make_state("alice"), max_live_per_user=1)
    assert await store.count_live_sessions("alice") == 1


# ------------------------------------------------------- storage-level expiry
async def session_keys(store: CacheSessionStore, sid: str) -> list[str]:
    keys = store.keys.session(sid)[:10]
    return [k for k in keys if await store.client.exists(k)]


async def test_every_key_of_a_session_with_a_ttl_expires_after_its_purge_time(
    store: CacheSessionStore,
) -> None:
    sid = await new_session(store, 2)
    await store.create_checkpoint(sid, checkpoint_id=f"cp-{sid}")
    await store.pop_turn(sid)  # archives a turn the checkpoint names
    await store.fork_session(sid, make_state("alice"))
    keys = await session_keys(store, sid)
    assert len(keys) >= 8
    for key in keys:
        ttl = await store.client.pttl(key)
        assert _GRACE_MS < ttl <= _TTL * 1000 + _GRACE_MS, key


async def test_a_write_moves_the_key_expiry(store: CacheSessionStore, clock: FakeClock) -> None:
    sid = await new_session(store, 1)
    for key in await session_keys(store, sid):
        await store.client.pexpire(key, 5_000)
    clock.advance(30)
    await store.append_turns(sid, [make_turn(2)])
    for key in await session_keys(store, sid):
        assert await store.client.pttl(key) > _GRACE_MS, key


async def test_keys_a_write_creates_get_the_expiry_too(store: CacheSessionStore) -> None:
    sid = await new_session(store)
    await store.update_session(sid, SessionPatch(metadata={"k": 1}))  # refresh-only path
    await store.append_turns(sid, [make_turn(1)])  # creates the turn list
    await store.clear_turns(sid)
    await store.append_turns(sid, [make_turn(2)])  # creates it again
    await store.append_turns(sid, [make_turn(3)])  # refresh-only path
    keys = await session_keys(store, sid)
    assert store.keys.session(sid)[1] in keys
    for key in keys:
        assert await store.client.pttl(key) > _GRACE_MS, key


async def test_an_ended_session_keeps_its_keys_for_the_purge_grace(
    store: CacheSessionStore,
) -> None:
    sid = await new_session(store, 1)
    await store.transition(sid, _C, allowed_from=frozenset({_A}))
    for key in await session_keys(store, sid):
        ttl = await store.client.pttl(key)
        assert _GRACE_MS - 60_000 < ttl <= _GRACE_MS, key
    until = store.now() + timedelta(hours=2)
    assert await store.purge(sid, tombstone_until=until) is True
    assert await session_keys(store, sid) == []
    tomb = store.keys.session(sid)[10]
    assert await store.client.pttl(tomb) > 2 * 3600 * 1000 - 60_000  # the tombstone's own
    with pytest.raises(SessionValidationError):
        await store.create_session(make_state("alice", session_id=sid))


async def test_without_a_ttl_keys_never_expire(cluster: bool) -> None:
    async with open_store(cluster=cluster) as factory:
        made = await factory()
        assert isinstance(made, CacheSessionStore)
        sid = await new_session(made, 1)
        await made.transition(sid, _C, allowed_from=frozenset({_A}))
        for key in await session_keys(made, sid):
            assert await made.client.pttl(key) == -1


# -------------------------------------------------------- checkpoint order
async def test_checkpoints_are_listed_by_creation_time_then_insertion(
    store: CacheSessionStore, clock: FakeClock
) -> None:
    sid = await new_session(store, 1)
    state = await store.load(sid)
    assert state is not None
    t0 = clock.now

    def checkpoint(cpid: str, seconds: int) -> SessionCheckpoint:
        return SessionCheckpoint(
            checkpoint_id=f"{cpid}-{sid}",
            session_id=sid,
            state=state,
            created_at=t0 + timedelta(seconds=seconds),
        )

    for cpid, seconds in (("late", 10), ("early", 5), ("tie", 5), ("first", 1)):
        await store.save_checkpoint(checkpoint(cpid, seconds))
    clock.advance(7)
    await store.create_checkpoint(sid, checkpoint_id=f"made-{sid}")
    expected = [f"{c}-{sid}" for c in ("first", "early", "tie", "made", "late")]
    headers = await store.list_checkpoint_headers(sid)
    assert [c.checkpoint_id for c in headers] == expected
    full = await store.list_checkpoints(sid)
    assert [c.checkpoint_id for c in full] == expected
    assert all(len(c.state.turns) == 1 for c in full)


# ------------------------------------------------------- clocks that disagree
async def test_a_writer_behind_never_moves_updated_at_or_the_deadline_back(cluster: bool) -> None:
    async with open_store(cluster=cluster, session_ttl=_TTL) as factory:
        ahead, behind = await factory(), await factory()
        start = FakeClock()
        ahead.clock = FakeClock(start.now + timedelta(seconds=30))
        behind.clock = start
        sid = await new_session(ahead)
        await ahead.append_turns(sid, [make_turn(1)])
        before = await ahead.load_record(sid)
        assert before is not None
        result = await behind.append_turns(sid, [make_turn(2)])
        assert result.record.state.updated_at == before.state.updated_at
        assert result.record.expires_at == before.expires_at
        after = await ahead.load_record(sid)
        assert after is not None
        assert (after.state.updated_at, after.expires_at) == (
            before.state.updated_at,
            before.expires_at,
        )
        assert after.state.turn_count == 2


async def test_a_sweep_goes_on_past_headers_of_the_wrong_type(cluster: bool) -> None:
    async with open_store(cluster=cluster) as factory:
        store = await factory()
        assert isinstance(store, CacheSessionStore)
        clock = FakeClock(datetime.now(UTC))
        store.clock = clock
        manager = SessionManagerImpl(
            store, SessionConfig(session_ttl=60, auto_checkpoint_interval=None)
        )
        ended = [await manager.create(f"ended-{i}") for i in range(2)]
        for state in ended:
            await manager.close(state.session_id)
        clock.advance(200)
        live = [await manager.create(f"live-{i}") for i in range(3)]
        for state in (ended[1], live[0]):
            await wrong_type_header(store, state.session_id)
        clock.advance(70)

        scheduler = SessionCleanupScheduler(manager, purge_after_s=100, batch_size=1)
        report = await scheduler.sweep()
        assert (report.expired, report.purged, report.damaged) == (2, 1, 2)
        for state in live[1:]:
            record = await store.load_record(state.session_id)
            assert record is not None and record.state.status is SessionStatus.EXPIRED
        assert await store.load_record(ended[0].session_id) is None
        for state in (ended[1], live[0]):
            assert await store.client.type(store.keys.header(state.session_id)) == b"string"
        again = await scheduler.sweep()
        assert (again.damaged, again.skipped) == (0, 0)


@pytest.mark.parametrize(("field", "value"), [("s", "bogus"), ("ex", "soon"), ("m", "{")])
async def test_a_damaged_header_field_is_reported_by_find_expired_not_dropped(
    store: CacheSessionStore, clock: FakeClock, field: str, value: str
) -> None:
    bad = await new_session(store)
    await store.client.hset(store.keys.header(bad), field, value)
    clock.advance(_TTL + 1)
    assert await store.find_expired() == [bad]
    with pytest.raises(CorruptRecordError) as err:
        await store.mark_expired(bad)
    assert bad in str(err.value)
    assert await store.client.hget(store.keys.header(bad), "s") == (
        b"bogus" if field == "s" else b"active"
    )
    await store.quarantine(bad)
    assert await store.find_expired() == []


async def test_a_timestamp_out_of_range_or_a_nan_cost_is_a_damaged_record(
    store: CacheSessionStore,
) -> None:
    """A microsecond count past year 9999 raised a raw ``OverflowError`` from every read
    and from the user's whole listing; a NaN total was served as a cost (an outside
    audit). Both are damage: named, and left out of listings."""
    far = await new_session(store)
    nan = await new_session(store)
    fine = await new_session(store)
    await store.client.hset(store.keys.header(far), "ca", str(2**62))
    await store.client.hset(store.keys.header(nan), "tc", "nan")
    with pytest.raises(CorruptRecordError, match="created_at"):
        await store.load_record(far)
    with pytest.raises(CorruptRecordError, match="total_cost"):
        await store.load_record(nan)
    page = await store.list_user_sessions("alice")
    assert sorted(page.damaged) == sorted([far, nan])
    assert [s.session_id for s in page.items] == [fine]


async def test_a_status_filter_reads_only_what_may_match_and_still_names_damage(
    store: CacheSessionStore, clock: FakeClock
) -> None:
    """A filtered listing reads the status fields first and leaves out the sessions
    whose effective status is another (pages of 10,000 sessions took seconds); a header
    whose deadline is damaged is still read whole and named."""
    closed = [await new_session(store) for _ in range(5)]
    for sid in closed:
        await store.transition(sid, SessionStatus.CLOSED, allowed_from=frozenset({_A}))
    live = [await new_session(store) for _ in range(3)]
    odd = await new_session(store)
    await store.client.hset(store.keys.header(odd), "ex", "abc")
    seen: list[str] = []
    damaged: list[str] = []
    cursor = None
    for _ in range(10):
        page = await store.list_user_sessions(
            "alice", status=SessionStatus.ACTIVE, limit=2, cursor=cursor
        )
        seen += [s.session_id for s in page.items]
        damaged += page.damaged
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted(live) and damaged == [odd]
    page = await store.list_user_sessions("alice", status=SessionStatus.CLOSED)
    assert sorted(s.session_id for s in page.items) == sorted(closed)


async def test_a_checkpoint_time_out_of_range_is_a_damaged_record(
    store: CacheSessionStore,
) -> None:
    """``list_checkpoints`` raised a raw ``OverflowError`` (a regression audit)."""
    import orjson

    sid = await new_session(store, turns=1)
    made, _ = await store.create_checkpoint(sid, checkpoint_id="cp-far")
    key = store.keys.checkpoint_docs(sid)
    raw = await store.client.hget(key, made.checkpoint_id)
    data = orjson.loads(raw)
    data["ca"] = str(2**62)
    await store.client.hset(key, made.checkpoint_id, orjson.dumps(data))
    with pytest.raises(CorruptRecordError, match="created_at"):
        await store.load_checkpoint(made.checkpoint_id)


async def test_a_checkpoint_id_left_by_expired_keys_is_taken_over_by_save(
    store: CacheSessionStore,
) -> None:
    """Redis expiry removes a session's keys but may leave its checkpoint-id entry: a
    save of that id for another session was refused naming the gone session."""
    from dataclasses import replace as _replace

    gone = await new_session(store, turns=1)
    await store.create_checkpoint(gone, checkpoint_id="cp-left")
    # What the keys' expiry does to the session (its checkpoint-id entry may stay).
    await store.client.delete(store.keys.header(gone))
    await store.client.delete(store.keys.checkpoint_docs(gone))
    other = make_state("bob")
    await store.create_session(other)
    copy = SessionCheckpoint(
        checkpoint_id="cp-left", session_id=other.session_id,
        state=_replace(other, turns=[]), created_at=other.created_at,
    )
    await store.save_checkpoint(copy)
    held = await store.load_checkpoint("cp-left")
    assert held is not None and held.session_id == other.session_id


async def test_cancelled_checkpoint_saves_leave_no_claim_behind(store: CacheSessionStore) -> None:
    """A save cut by the caller's timeout after claiming the id kept the claim: every
    later save of the id for another session was refused (a regression audit)."""
    import asyncio
    import contextlib
    from dataclasses import replace as _replace

    alice = make_state("alice")
    bob = make_state("bob")
    for state in (alice, bob):
        await store.create_session(state)
    for i in range(60):
        cpid = f"cut-{i}"
        copy = SessionCheckpoint(
            checkpoint_id=cpid, session_id=alice.session_id,
            state=_replace(alice, turns=[]), created_at=alice.created_at,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(store.save_checkpoint(copy), timeout=0.0002 * (i % 8))
        # Once the cancelled write has settled (in the background), the id's entry is
        # alice's with her checkpoint stored, or gone: never a claim without one.
        for _ in range(200):
            entry = await store.client.get(store.keys.checkpoint(cpid))
            listed = [c.checkpoint_id for c in await store.list_checkpoint_headers(
                alice.session_id
            )]
            if (entry is None) == (cpid not in listed):
                break
            await asyncio.sleep(0.01)
        assert (entry is None) == (cpid not in listed), (cpid, entry, listed)
        assert entry in (None, alice.session_id.encode())
        if entry is None:  # not saved: the id is free for another session
            await store.save_checkpoint(
                _replace(copy, session_id=bob.session_id, state=_replace(bob, turns=[]))
            )


async def test_two_writers_taking_over_one_stale_checkpoint_id_leave_one_owner(
    store: CacheSessionStore,
) -> None:
    """A stale entry was taken over with a plain SET: two writers both won the id, which
    was then listed under both sessions (a regression audit)."""
    import asyncio
    from dataclasses import replace as _replace

    for round_ in range(10):
        cpid = f"stale-{round_}"
        gone = await new_session(store, turns=1)
        await store.create_checkpoint(gone, checkpoint_id=cpid)
        await store.client.delete(store.keys.header(gone))
        await store.client.delete(store.keys.checkpoint_docs(gone))
        bob, carol = make_state("bob"), make_state("carol")
        for state in (bob, carol):
            await store.create_session(state)
        copies = [
            SessionCheckpoint(
                checkpoint_id=cpid, session_id=s.session_id,
                state=_replace(s, turns=[]), created_at=s.created_at,
            )
            for s in (bob, carol)
        ]
        results = await asyncio.gather(
            store.save_checkpoint(copies[0]),
            store.create_checkpoint(carol.session_id, checkpoint_id=cpid),
            return_exceptions=True,
        )
        assert sum(isinstance(r, SessionValidationError) for r in results) == 1, results
        listed = [
            s.session_id
            for s in (bob, carol)
            if cpid in [c.checkpoint_id for c in await store.list_checkpoint_headers(s.session_id)]
        ]
        held = await store.load_checkpoint(cpid)
        assert held is not None and listed == [held.session_id]


async def test_a_fork_whose_branch_never_appeared_stops_counting_against_the_cap(
    store: CacheSessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The branch write fails with its outcome unknown (a slot being resharded answered
    # TRYAGAIN): the reservation is kept in case the branch was written. Past the grace
    # with no branch, it no longer holds the place (it did, forever).
    from lexigram.ai.session.exceptions import StoreUnavailableError
    from lexigram.ai.session.stores.redis import store as redis_store

    sid = await new_session(store, 1)
    real_insert = store._insert

    async def unreachable(*args: object, **kwargs: object) -> object:
        raise StoreUnavailableError("TRYAGAIN (a slot being resharded)")

    monkeypatch.setattr(store, "_insert", unreachable)
    with pytest.raises(StoreUnavailableError):
        await store.fork_session(sid, make_state("bob"), max_branches=1)
    monkeypatch.setattr(store, "_insert", real_insert)
    with pytest.raises(SessionCapacityError):  # within the grace: the place is held
        await store.fork_session(sid, make_state("bob"), max_branches=1)
    assert await store.list_branches(sid) == []

    monkeypatch.setattr(redis_store, "DEAD_FORK_US", 0)  # the fork is long dead
    branch = await store.fork_session(sid, make_state("bob"), max_branches=1)
    listed = [r.state.session_id for r in await store.list_branches(sid)]
    assert listed == [branch.state.session_id]
    with pytest.raises(SessionCapacityError):  # a branch that exists still counts
        await store.fork_session(sid, make_state("bob"), max_branches=1)


async def test_an_id_a_killed_create_left_indexed_can_be_created_again(
    store: CacheSessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process killed between a create's reservation and its write left the id in the
    # user's index with no session: every later create of that id was refused as
    # existing (an import re-run said "purged recently"), for good.
    from lexigram.ai.session.stores.redis import store as redis_store
    from lexigram.ai.session.stores.redis.core import new_op

    state = make_state("alice")
    sid = state.session_id
    _, now_us = store._core.clock()
    await store._core.index.reserve("alice", sid, cap=None, live=True, now_us=now_us, op=new_op())
    with pytest.raises(SessionValidationError):  # young: a create may still be writing it
        await store.create_session(state)
    monkeypatch.setattr(redis_store, "DEAD_FORK_US", 0)  # the create is long dead
    await store.create_session(state)
    page = await store.list_user_sessions("alice")
    assert [s.session_id for s in page.items] == [sid]
    with pytest.raises(SessionValidationError):  # a session holds it now
        await store.create_session(state)
