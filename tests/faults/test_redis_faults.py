"""Every Redis write applied exactly once when its reply is lost, through a fault proxy.

The store talks to the real Redis on 127.0.0.1:6379 through :class:`FaultProxy`.
Each test lets one script run on the server, drops its reply (the client sees a
dropped connection, reconnects and re-sends the same call), and asserts both what
the caller was told and what is stored afterwards: the operation took effect once
and the caller got its real outcome.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionCheckpoint, SessionStatus
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from lexigram.ai.session.events import SessionClosedEvent
from lexigram.ai.session.exceptions import (
    SessionValidationError,
    StoreUnavailableError,
    WriteOutcomeUnknownError,
)
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.stores.base import SessionPatch
from lexigram.ai.session.stores.cache import CacheSessionStore
from lexigram.ai.session.stores.redis.scripts import SCRIPTS
from lexigram.ai.session.testing.conformance import FakeClock, make_state, make_turn
from tests.faults.proxy import FaultProxy
from tests.manager.test_events_support import RecordingBus
from tests.services import REDIS_URL, require_redis
from tests.stores.backends.redis import drop_prefix
from tests.stores.redis_cluster import shared_cluster

pytestmark = pytest.mark.redis

_A, _S, _C, _E = (
    SessionStatus.ACTIVE,
    SessionStatus.SUSPENDED,
    SessionStatus.CLOSED,
    SessionStatus.EXPIRED,
)
_LIVE = frozenset({_A, _S})
_TTL = 3600


def script(name: str) -> Callable[[bytes], bool]:
    """Matches a request that runs the store's script ``name`` (by its SHA)."""
    sha = hashlib.sha1(SCRIPTS[name].encode()).hexdigest().encode()

    def matches(data: bytes) -> bool:
        return sha in data

    return matches


@dataclass
class Rig:
    """A store behind a fault proxy, and a direct client to inspect what is stored."""

    proxy: FaultProxy
    store: CacheSessionStore
    direct: Redis
    clock: FakeClock

    def drop(self, name: str) -> None:
        """Drop the reply of the next run of script ``name``."""
        self.proxy.drop_next_reply(match=script(name))

    def assert_dropped(self, count: int = 1) -> None:
        """The armed faults fired (otherwise the test proved nothing)."""
        assert self.proxy.armed == 0
        assert self.proxy.replies_dropped == count

    async def zscore(self, key: str, member: str) -> float | None:
        score: float | None = await self.direct.zscore(key, member)
        return score

    async def user_index(self, user_id: str, session_id: str) -> tuple[bool, bool]:
        """(in the user's sessions, in the user's live set)."""
        keys = self.store.keys.user(user_id)
        return (
            await self.zscore(keys[0], session_id) is not None,
            await self.zscore(keys[1], session_id) is not None,
        )


@asynccontextmanager
async def rig(**options: Any) -> AsyncIterator[Rig]:
    """A fresh key prefix, a proxy in front of Redis, a store through it."""
    require_redis()
    prefix = f"lxfault:{uuid.uuid4().hex[:12]}"
    clock = FakeClock()
    direct = Redis.from_url(REDIS_URL)
    async with FaultProxy("127.0.0.1", 6379) as proxy:
        store = CacheSessionStore(
            f"redis://127.0.0.1:{proxy.port}/0",
            key_prefix=prefix,
            session_ttl=options.pop("session_ttl", _TTL),
            clock=clock,
            **options,
        )
        await store.initialize()
        try:
            yield Rig(proxy=proxy, store=store, direct=direct, clock=clock)
        finally:
            await store.close()
            await drop_prefix(direct, store.keys.pattern)
            await direct.aclose()


async def session_with(r: Rig, turns: int = 0, user_id: str = "alice") -> str:
    state = make_state(user_id)
    await r.store.create_session(state)
    if turns:
        await r.store.append_turns(state.session_id, [make_turn(n) for n in range(turns)])
    return state.session_id


# ------------------------------------------------------------------- create
@pytest.mark.parametrize("step", ["reserve", "create"])
async def test_create_with_a_lost_reply_returns_the_record_and_indexes_it_once(step: str) -> None:
    async with rig() as r:
        state = make_state("alice")
        r.drop(step)
        record = await r.store.create_session(state, max_live_per_user=1)
        r.assert_dropped()
        assert record.state.session_id == state.session_id
        assert record.state.status is _A
        sid = state.session_id
        assert await r.user_index("alice", sid) == (True, True)
        assert await r.zscore(r.store.keys.deadlines, sid) is not None
        assert await r.store.count_live_sessions("alice") == 1
        page = await r.store.list_user_sessions("alice")
        assert [s.session_id for s in page.items] == [sid]
        # The cap counts it: a second session is refused.
        with pytest.raises(Exception, match="live sessions"):
            await r.store.create_session(make_state("alice"), max_live_per_user=1)


async def test_save_with_a_lost_reply_stores_once_with_its_ordinal() -> None:
    async with rig() as r:
        turns = [make_turn(n) for n in range(2)]
        state = make_state("alice", turns=turns, turn_count=2, total_tokens=2, total_cost=1.0)
        r.drop("save")
        await r.store.save(state)
        r.assert_dropped()
        loaded = await r.store.load(state.session_id)
        assert loaded is not None
        assert [t.turn_id for t in loaded.turns] == [t.turn_id for t in turns]
        assert await r.direct.hget(r.store.keys.header(state.session_id), "o") is not None
        assert await r.user_index("alice", state.session_id) == (True, True)


# ------------------------------------------------------------------- turns
async def test_append_with_a_lost_reply_is_applied_once_without_duplicate_error() -> None:
    async with rig() as r:
        sid = await session_with(r, 1)
        turn = make_turn(5, tokens=7, cost=0.25)
        r.drop("append")
        result = await r.store.append_turns(sid, [turn])
        r.assert_dropped()
        assert result.first_seq == 2
        assert result.record.state.turn_count == 2
        stored = await r.store.get_turns(sid)
        assert [t.turn_id for t in stored][-1] == turn.turn_id
        assert len(stored) == 2
        record = await r.store.load_record(sid)
        assert record is not None
        assert record.state.total_tokens == 8
        assert record.state.total_cost == 0.75


async def test_pop_with_a_lost_reply_pops_exactly_one_turn_and_returns_it() -> None:
    async with rig() as r:
        sid = await session_with(r, 3)
        before = await r.store.get_turns(sid)
        r.drop("pop")
        popped = await r.store.pop_turn(sid)
        r.assert_dropped()
        assert popped is not None
        assert popped.turn_id == before[-1].turn_id
        after = await r.store.get_turns(sid)
        assert [t.turn_id for t in after] == [t.turn_id for t in before[:2]]
        record = await r.store.load_record(sid)
        assert record is not None
        assert (record.state.turn_count, record.state.total_tokens) == (2, 2)


async def test_clear_with_a_lost_reply_reports_the_turns_it_cleared() -> None:
    async with rig() as r:
        sid = await session_with(r, 3)
        r.drop("clear")
        assert await r.store.clear_turns(sid) == 3
        r.assert_dropped()
        assert await r.store.get_turns(sid) == []
        record = await r.store.load_record(sid)
        assert record is not None
        assert (record.state.turn_count, record.state.total_tokens) == (0, 0)


async def test_update_with_a_lost_reply_returns_the_updated_record() -> None:
    async with rig() as r:
        sid = await session_with(r)
        r.drop("update")
        record = await r.store.update_session(sid, SessionPatch(metadata={"k": 1}))
        r.assert_dropped()
        assert record.state.metadata == {"k": 1}
        stored = await r.store.load_record(sid)
        assert stored is not None
        assert stored.state.metadata == {"k": 1}


# ------------------------------------------------------------- transitions
@pytest.mark.parametrize(
    ("start", "target"),
    [(_A, _S), (_S, _A), (_A, _C), (_S, _C), (_A, _E)],
)
async def test_transition_with_a_lost_reply_returns_the_new_state(
    start: SessionStatus, target: SessionStatus
) -> None:
    async with rig() as r:
        sid = await session_with(r)
        if start is _S:
            await r.store.transition(sid, _S, allowed_from=frozenset({_A}))
        r.drop("transition")
        allowed = frozenset({start})
        record = await r.store.transition(sid, target, allowed_from=allowed)
        r.assert_dropped()
        assert record.state.status is target
        stored = await r.store.load_record(sid)
        assert stored is not None
        assert stored.state.status is target
        ended = await r.zscore(r.store.keys.ended, sid)
        live = await r.user_index("alice", sid)
        if target in _LIVE:
            assert ended is None
            assert live == (True, True)
        else:
            assert ended is not None
            assert live == (True, False)
            assert await r.zscore(r.store.keys.deadlines, sid) is None


async def test_manager_close_with_a_lost_reply_fires_the_close_event_once() -> None:
    async with rig() as r:
        bus = RecordingBus()
        manager = SessionManagerImpl(r.store, {"session_ttl": _TTL}, event_bus=bus)
        state = await manager.create("alice")
        r.drop("transition")
        await manager.close(state.session_id)
        r.assert_dropped()
        closed = bus.of(SessionClosedEvent)
        assert [e.session_id for e in closed] == [state.session_id]
        stored = await r.store.load_record(state.session_id)
        assert stored is not None
        assert stored.state.status is _C


# -------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("include_turns", [True, False])
async def test_checkpoint_with_a_lost_reply_returns_it_and_stores_one(include_turns: bool) -> None:
    async with rig() as r:
        sid = await session_with(r, 2)
        r.drop("cp_create")
        checkpoint, pruned = await r.store.create_checkpoint(
            sid, checkpoint_id="cp-1", include_turns=include_turns
        )
        r.assert_dropped()
        assert checkpoint.checkpoint_id == "cp-1"
        assert pruned == []
        assert len(checkpoint.state.turns) == (2 if include_turns else 0)
        listed = await r.store.list_checkpoint_headers(sid)
        assert [c.checkpoint_id for c in listed] == ["cp-1"]
        loaded = await r.store.load_checkpoint("cp-1")
        assert loaded is not None
        assert len(loaded.state.turns) == 2


async def test_checkpoint_whose_id_claim_reply_is_lost_is_created() -> None:
    async with rig() as r:
        sid = await session_with(r, 1)
        claim = r.store.keys.checkpoint("cp-claim").encode()
        r.proxy.drop_next_reply(match=lambda data: claim in data and b"NX" in data)
        checkpoint, _ = await r.store.create_checkpoint(sid, checkpoint_id="cp-claim")
        r.assert_dropped()
        assert checkpoint.session_id == sid
        assert await r.direct.get(claim) == sid.encode()
        assert [c.checkpoint_id for c in await r.store.list_checkpoint_headers(sid)] == ["cp-claim"]


async def test_create_whose_deadline_index_reply_is_lost_is_indexed_once() -> None:
    async with rig() as r:
        state = make_state("alice")
        deadlines = r.store.keys.deadlines.encode()
        r.proxy.drop_next_reply(match=lambda data: deadlines in data and b"ZADD" in data)
        await r.store.create_session(state)
        r.assert_dropped()
        assert await r.zscore(r.store.keys.deadlines, state.session_id) is not None
        assert await r.user_index("alice", state.session_id) == (True, True)


async def test_save_checkpoint_with_a_lost_reply_stores_one() -> None:
    async with rig() as r:
        sid = await session_with(r, 1)
        state = await r.store.load(sid)
        assert state is not None
        checkpoint = SessionCheckpoint(
            checkpoint_id="cp-x", session_id=sid, state=state, created_at=r.clock.now
        )
        r.drop("cp_save")
        await r.store.save_checkpoint(checkpoint)
        r.assert_dropped()
        listed = await r.store.list_checkpoints(sid)
        assert [c.checkpoint_id for c in listed] == ["cp-x"]
        assert len(listed[0].state.turns) == 1


async def test_restore_with_a_lost_reply_returns_the_restored_state() -> None:
    async with rig() as r:
        sid = await session_with(r, 2)
        await r.store.create_checkpoint(sid, checkpoint_id="cp-r")
        await r.store.append_turns(sid, [make_turn(9)])
        r.drop("cp_restore")
        state = await r.store.restore_checkpoint("cp-r")
        r.assert_dropped()
        assert len(state.turns) == 2
        assert state.turn_count == 2
        stored = await r.store.get_turns(sid)
        assert [t.turn_id for t in stored] == [t.turn_id for t in state.turns]
        record = await r.store.load_record(sid)
        assert record is not None
        assert (record.state.turn_count, record.state.total_tokens) == (2, 2)


async def test_delete_checkpoint_with_a_lost_reply_reports_true() -> None:
    async with rig() as r:
        sid = await session_with(r, 1)
        await r.store.create_checkpoint(sid, checkpoint_id="cp-d")
        r.drop("cp_delete")
        assert await r.store.delete_checkpoint("cp-d") is True
        r.assert_dropped()
        assert await r.store.list_checkpoint_headers(sid) == []
        assert await r.store.load_checkpoint("cp-d") is None


# ----------------------------------------------------------------- branches
@pytest.mark.parametrize("step", ["fork_source", "reserve", "create"])
async def test_fork_with_a_lost_reply_creates_one_branch(step: str) -> None:
    async with rig() as r:
        sid = await session_with(r, 2)
        branch = make_state("alice", branch_name="b")
        r.drop(step)
        record = await r.store.fork_session(sid, branch, max_branches=1, max_live_per_user=5)
        r.assert_dropped()
        bid = branch.session_id
        assert record.state.session_id == bid
        assert record.state.parent_session_id == sid
        assert [b.state.session_id for b in await r.store.list_branches(sid)] == [bid]
        assert len(await r.store.get_turns(bid)) == 2
        assert await r.user_index("alice", bid) == (True, True)
        assert await r.store.count_live_sessions("alice") == 2


async def test_branch_index_steps_are_idempotent_when_replayed() -> None:
    async with rig() as r:
        parent = await session_with(r)
        child = make_state("alice", parent_session_id=parent)
        r.drop("branch_add")
        await r.store.save(child)
        r.assert_dropped()
        assert [b.state.session_id for b in await r.store.list_branches(parent)] == [
            child.session_id
        ]
        r.drop("delete")
        await r.store.delete(child.session_id)
        r.assert_dropped(2)
        assert await r.store.list_branches(parent) == []
        assert await r.direct.zcard(r.store.keys.session(parent)[8]) == 0


# ------------------------------------------------------------ delete, sweep
async def test_delete_with_a_lost_reply_forgets_every_index_entry() -> None:
    async with rig() as r:
        sid = await session_with(r, 1)
        await r.store.create_checkpoint(sid, checkpoint_id="cp-del")
        r.drop("delete")
        await r.store.delete(sid)
        r.assert_dropped()
        assert await r.store.load(sid) is None
        assert await r.user_index("alice", sid) == (False, False)
        assert await r.zscore(r.store.keys.deadlines, sid) is None
        assert await r.direct.exists(r.store.keys.checkpoint("cp-del")) == 0


async def test_mark_expired_with_a_lost_reply_returns_the_expired_record() -> None:
    async with rig() as r:
        sid = await session_with(r)
        r.clock.advance(_TTL + 1)
        assert await r.store.find_expired() == [sid]
        r.drop("mark_expired")
        record = await r.store.mark_expired(sid)
        r.assert_dropped()
        assert record is not None
        assert record.state.status is _E
        assert await r.zscore(r.store.keys.ended, sid) is not None
        assert await r.zscore(r.store.keys.deadlines, sid) is None
        assert await r.store.find_expired() == []


async def test_purge_with_a_lost_reply_reports_true_and_forgets_the_indexes() -> None:
    async with rig() as r:
        sid = await session_with(r)
        await r.store.transition(sid, _C, allowed_from=frozenset({_A}))
        r.clock.advance(60)
        r.drop("purge")
        until = r.clock.now + timedelta(hours=1)
        assert await r.store.purge(sid, tombstone_until=until) is True
        r.assert_dropped()
        assert await r.store.load(sid) is None
        assert await r.zscore(r.store.keys.ended, sid) is None
        assert await r.user_index("alice", sid) == (False, False)
        with pytest.raises(SessionValidationError):
            await r.store.create_session(make_state("alice", session_id=sid))


# ------------------------------------------------------------ outcome unknown
async def test_a_write_whose_every_reply_is_lost_reports_an_unknown_outcome() -> None:
    async with rig() as r:
        sid = await session_with(r)
        for _ in range(20):  # more than the client's retries
            r.drop("append")
        with pytest.raises(WriteOutcomeUnknownError) as err:
            await r.store.append_turns(sid, [make_turn(1)])
        assert sid in str(err.value)
        assert r.proxy.replies_dropped >= 2
        r.proxy.reset()
        # It was applied, once: reading the session tells the caller so.
        assert len(await r.store.get_turns(sid)) == 1
        record = await r.store.load_record(sid)
        assert record is not None
        assert record.state.turn_count == 1


async def test_a_write_that_never_reached_redis_is_unavailable_not_unknown() -> None:
    async with rig() as r:
        sid = await session_with(r)
        await r.proxy.close()  # nothing listens on the port any more
        with pytest.raises(StoreUnavailableError) as err:
            await r.store.append_turns(sid, [make_turn(1)])
        assert not isinstance(err.value, WriteOutcomeUnknownError)
        assert await r.direct.llen(r.store.keys.session(sid)[1]) == 0


# ------------------------------------------------------------- the proxy itself
async def test_the_proxy_makes_the_client_resend_an_applied_command() -> None:
    """Why the store needs operation ids: a plain INCR through the fault runs twice."""
    require_redis()
    key = f"lxfault:{uuid.uuid4().hex}"
    async with FaultProxy("127.0.0.1", 6379) as proxy:
        client = Redis(port=proxy.port, retry=Retry(NoBackoff(), 3))
        try:
            proxy.drop_next_reply(match=b"INCR")
            assert await client.incr(key) == 2  # the reply of the first INCR was lost
            assert (proxy.replies_dropped, proxy.armed) == (1, 0)
            assert proxy.connections_total == 2  # the client reconnected once
        finally:
            await client.delete(key)
            await client.aclose()
    assert proxy.connections_open == 0


async def test_the_proxy_bounds_its_connections() -> None:
    require_redis()
    async with FaultProxy("127.0.0.1", 6379, max_connections=1) as proxy:
        first = Redis(port=proxy.port)
        second = Redis(port=proxy.port, retry=Retry(NoBackoff(), 0))
        try:
            assert await first.ping()
            with pytest.raises(RedisConnectionError):
                await second.ping()
            assert proxy.connections_open == 1
        finally:
            await first.aclose()
            await second.aclose()


# ----------------------------------------------------- other kinds of fault
async def test_a_request_cut_before_the_server_saw_it_is_applied_once() -> None:
    async with rig() as r:
        sid = await session_with(r)
        r.proxy.cut_before_request(match=script("append"))
        await r.store.append_turns(sid, [make_turn(1)])
        assert r.proxy.cuts == 1
        assert len(await r.store.get_turns(sid)) == 1


async def test_a_transaction_cut_before_exec_is_run_again_whole() -> None:
    async with rig() as r:
        sid = await session_with(r, 2)
        r.proxy.cut_mid_transaction(b"EXEC")
        state = await r.store.load(sid)
        assert r.proxy.cuts == 1
        assert state is not None
        assert len(state.turns) == 2


async def test_a_slow_link_changes_nothing() -> None:
    async with rig() as r:
        sid = await session_with(r)
        r.proxy.delay(0.01)
        await r.store.append_turns(sid, [make_turn(1), make_turn(2)])
        r.proxy.reset()
        assert len(await r.store.get_turns(sid)) == 2


async def test_the_op_record_expires_and_is_kept_in_the_session_slot() -> None:
    async with rig() as r:
        sid = await session_with(r)
        await r.store.append_turns(sid, [make_turn(1)])
        keys = [
            k async for k in r.direct.scan_iter(match=f"{r.store.keys.prefix}:s:*:o:*", count=500)
        ]
        assert keys, "each write leaves its reply record"
        for key in keys:
            assert b"{" + sid.encode() + b"}" in key
            ttl = await r.direct.pttl(key)
            assert 0 < ttl <= 300_000


async def test_a_whole_life_with_every_reply_lost_ends_where_it_would() -> None:
    """Every step of a short life, each with its reply dropped, ends where it would."""
    async with rig() as r:
        state = make_state("alice")
        steps: list[tuple[str, Any]] = [
            ("create", lambda: r.store.create_session(state)),
            ("append", lambda: r.store.append_turns(state.session_id, [make_turn(1)])),
            ("append", lambda: r.store.append_turns(state.session_id, [make_turn(2)])),
            ("pop", lambda: r.store.pop_turn(state.session_id)),
            ("transition", lambda: r.store.transition(state.session_id, _C, allowed_from=_LIVE)),
        ]
        for name, call in steps:
            r.drop(name)
            await call()
        r.assert_dropped(len(steps))
        record = await r.store.load_record(state.session_id)
        assert record is not None
        assert (record.state.turn_count, record.state.total_tokens) == (1, 1)
        assert record.state.status is _C
        assert len(await r.store.get_turns(state.session_id)) == 1


# ------------------------------------------------------------ Redis Cluster
@dataclass
class ClusterRig:
    """A store on the local Redis Cluster, every node behind its own fault proxy."""

    proxies: list[FaultProxy]
    store: CacheSessionStore
    direct: RedisCluster

    def drop(self, name: str) -> None:
        """Drop the reply of the next run of script ``name``, whichever node runs it."""
        for proxy in self.proxies:
            proxy.drop_next_reply(match=script(name))

    def assert_dropped(self) -> None:
        """Exactly one reply was dropped since the last call; disarm the other nodes."""
        dropped = sum(p.replies_dropped for p in self.proxies)
        for proxy in self.proxies:
            proxy.reset()
            proxy.replies_dropped = 0
        assert dropped == 1


@asynccontextmanager
async def cluster_rig() -> AsyncIterator[ClusterRig]:
    """The shared local cluster (started on first use), reached through proxies."""
    cluster = shared_cluster()
    prefix = f"lxfault:{uuid.uuid4().hex[:12]}"
    async with AsyncExitStack() as stack:
        by_port: dict[int, FaultProxy] = {}
        for port in cluster.ports:
            by_port[port] = await stack.enter_async_context(FaultProxy("127.0.0.1", port))

        def remap(address: tuple[str, int]) -> tuple[str, int]:
            proxy = by_port.get(address[1])
            return address if proxy is None else ("127.0.0.1", proxy.port)

        client = RedisCluster(
            host="127.0.0.1",
            port=by_port[cluster.ports[0]].port,
            address_remap=remap,
            retry=Retry(NoBackoff(), 4),
        )
        direct = RedisCluster.from_url(cluster.url)
        store = CacheSessionStore(
            client=client, key_prefix=prefix, session_ttl=_TTL, clock=FakeClock()
        )
        try:
            await store.initialize()
            yield ClusterRig(proxies=list(by_port.values()), store=store, direct=direct)
        finally:
            await store.close()
            await drop_prefix(direct, store.keys.pattern)
            await direct.aclose()
            await client.aclose()


@pytest.mark.cluster
async def test_on_a_cluster_every_write_with_a_lost_reply_is_applied_once() -> None:
    async with cluster_rig() as r:
        store = r.store
        users = store.keys.user("alice")

        state = make_state("alice")
        r.drop("create")
        assert (await store.create_session(state)).state.session_id == state.session_id
        r.assert_dropped()
        sid = state.session_id
        other = make_state("alice")
        r.drop("reserve")
        await store.create_session(other, max_live_per_user=2)
        r.assert_dropped()
        assert await store.count_live_sessions("alice") == 2
        assert await r.direct.zcard(users[0]) == 2

        r.drop("append")
        assert (await store.append_turns(sid, [make_turn(1)])).first_seq == 1
        r.assert_dropped()
        await store.append_turns(sid, [make_turn(2), make_turn(3)])
        r.drop("pop")
        popped = await store.pop_turn(sid)
        r.assert_dropped()
        assert popped is not None and popped.content == "message 3"
        assert len(await store.get_turns(sid)) == 2

        r.drop("cp_create")
        checkpoint, _ = await store.create_checkpoint(sid, checkpoint_id=f"cp-{sid}")
        r.assert_dropped()
        assert len(checkpoint.state.turns) == 2
        r.drop("clear")
        assert await store.clear_turns(sid) == 2
        r.assert_dropped()
        r.drop("cp_restore")
        restored = await store.restore_checkpoint(f"cp-{sid}")
        r.assert_dropped()
        assert len(restored.turns) == len(await store.get_turns(sid)) == 2

        branch = make_state("alice")
        r.drop("create")
        forked = await store.fork_session(sid, branch, max_branches=1, max_live_per_user=3)
        r.assert_dropped()
        assert forked.state.parent_session_id == sid
        assert [b.state.session_id for b in await store.list_branches(sid)] == [branch.session_id]

        r.drop("update")
        assert (await store.update_session(sid, SessionPatch(metadata={"k": 1}))).state.metadata
        r.assert_dropped()
        r.drop("transition")
        closed = await store.transition(sid, _C, allowed_from=_LIVE)
        r.assert_dropped()
        assert closed.state.status is _C
        assert await r.direct.zscore(store.keys.ended, sid) is not None
        r.drop("delete")
        await store.delete(sid)
        r.assert_dropped()
        assert await store.load(sid) is None
        assert await r.direct.zscore(users[0], sid) is None


async def test_a_stalled_server_fails_calls_within_the_socket_timeout() -> None:
    """A server that stops answering is given up on after ``socket_timeout`` (redis-py's
    read timeout, from the URL) on the direct lane too, then on the full path: the call
    fails in bounded time (it waited for the whole stall) and is applied at most once."""
    require_redis()
    prefix = f"lxfault:{uuid.uuid4().hex[:12]}"
    direct = Redis.from_url(REDIS_URL)
    async with FaultProxy("127.0.0.1", 6379) as proxy:
        store = CacheSessionStore(
            f"redis://127.0.0.1:{proxy.port}/0?socket_timeout=0.5", key_prefix=prefix
        )
        await store.initialize()
        try:
            state = make_state("alice")
            await store.create_session(state)
            first, late = make_turn(0), make_turn(1)
            await store.append_turns(state.session_id, [first])  # the lane is open
            proxy.delay(8.0)
            started = time.monotonic()
            with pytest.raises(StoreUnavailableError):
                await store.append_turns(state.session_id, [late])
            assert time.monotonic() - started < 7.0
            proxy.reset()
            stored = [t.turn_id for t in await store.get_turns(state.session_id)]
            assert stored in ([first.turn_id], [first.turn_id, late.turn_id])
        finally:
            await store.close()
            await drop_prefix(direct, store.keys.pattern)
            await direct.aclose()
