"""Redis-specific tests of ``CacheSessionStore`` against real servers.

The shared behaviour is in the conformance suite; here: the key layout (one hash
slot per session), the storage shape (one element per turn, appends never rewrite),
many processes writing at once, a writer killed mid-stream, Redis down at boot,
health checks and reconnection after a server restart (on a server these tests
start on port 7109; the shared 6379 server is never restarted).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from lexigram.contracts.ai.session import SessionCheckpoint, SessionManagerProtocol
from lexigram.contracts.core.health import HealthStatus
from redis.crc import key_slot

from lexigram import Application
from lexigram.ai.session import SessionModule
from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.exceptions import (
    CorruptRecordError,
    SessionCapacityError,
    SessionValidationError,
    StoreUnavailableError,
)
from lexigram.ai.session.stores.cache import CacheSessionStore
from lexigram.ai.session.stores.registry import create_store
from lexigram.ai.session.testing.conformance import FakeClock, make_state
from tests.services import REDIS_URL, require_redis
from tests.stores.backends.redis import drop_prefix, open_store
from tests.stores.redis_cluster import (
    port_lock,
    release_lock,
    require_redis_binaries,
    start_server,
    stop_server,
)

from .test_cache_support import (
    append_forever,
    append_worker,
    assert_consistent,
    create_worker,
    turn,
)

SPARE_PORT = 7109

pytestmark = pytest.mark.redis

BACKENDS = [
    pytest.param(False, id="redis"),
    pytest.param(True, id="redis_cluster", marks=pytest.mark.cluster),
]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[CacheSessionStore]:
    """A store on a fresh key prefix (single Redis or the local cluster)."""
    async with open_store(cluster=request.param) as factory:
        made = await factory()
        assert isinstance(made, CacheSessionStore)
        yield made


@pytest.fixture
async def single() -> AsyncIterator[CacheSessionStore]:
    """A store on the shared single Redis, fresh key prefix."""
    async with open_store(cluster=False) as factory:
        made = await factory()
        assert isinstance(made, CacheSessionStore)
        yield made


async def _slot(store: CacheSessionStore, key: str) -> int:
    if store.cluster:
        return int(await store.client.execute_command("CLUSTER KEYSLOT", key))
    return key_slot(key.encode())


# ------------------------------------------------------------------ key layout
@pytest.mark.parametrize("sid", ["plain-id", "odd{id}with}braces=", "}"])
async def test_every_key_of_a_session_is_in_one_slot(store: CacheSessionStore, sid: str) -> None:
    state = replace(make_state("layout-user"), session_id=sid)
    await store.create_session(state)
    await store.append_turns(sid, [turn(f"t{i}", i) for i in range(4)])
    await store.create_checkpoint(sid, checkpoint_id="cp-" + uuid.uuid4().hex)
    await store.pop_turn(sid)  # the popped turn is kept in the archive for the checkpoint
    await store.fork_session(
        sid, make_state("layout-user", parent_session_id=sid, branch_name="b"), max_branches=3
    )
    keys = store.keys.session(sid)
    present = [k for k in keys if await store.client.exists(k)]
    suffixes = {k.rsplit(":", 1)[1] for k in present}
    assert {"h", "t", "r", "i", "a", "c", "d", "k", "b", "p"} <= suffixes
    slots = {await _slot(store, k) for k in present}
    assert len(slots) == 1, f"keys of one session span slots {slots}"
    user_slots = {await _slot(store, k) for k in store.keys.user("layout-user")}
    assert len(user_slots) == 1


async def test_one_list_element_per_turn_and_appends_never_rewrite(
    single: CacheSessionStore,
) -> None:
    store = single
    state = make_state("shape")
    await store.create_session(state)
    sid = state.session_id
    first = [turn(f"a{i}", i) for i in range(3)]
    await store.append_turns(sid, first[:1])
    await store.append_turns(sid, first[1:])
    live_key = store.keys.session(sid)[1]
    raw = await store.client.lrange(live_key, 0, -1)
    assert [orjson.loads(item)["turn_id"] for item in raw] == ["a0", "a1", "a2"]
    # Mark the stored first element behind the store's back: an append that
    # rewrote earlier turns would put the original back.
    marked = orjson.loads(raw[0])
    marked["content"] = "MARKED"
    await store.client.lset(live_key, 0, orjson.dumps(marked))
    await store.append_turns(sid, [turn("b0", 10), turn("b1", 11)])
    assert await store.client.llen(live_key) == 5
    assert orjson.loads(await store.client.lindex(live_key, 0))["content"] == "MARKED"
    loaded = await store.load(sid)
    assert loaded is not None
    assert [t.turn_id for t in loaded.turns] == ["a0", "a1", "a2", "b0", "b1"]
    assert loaded.turns[0].content == "MARKED"


async def test_unstorable_values_are_refused_naming_the_field(single: CacheSessionStore) -> None:
    store = single
    state = make_state("bad-values")
    await store.create_session(state)
    bad = replace(turn("bad"), metadata={"when": object()})
    with pytest.raises(SessionValidationError) as info:
        await store.append_turns(state.session_id, [bad])
    assert info.value.field == "turns[0].metadata.when"
    record = await store.load_record(state.session_id)
    assert record is not None and record.state.turn_count == 0
    with pytest.raises(SessionValidationError) as info:
        await store.create_session(make_state("bad-values", variables={"s": {1, 2}}))
    assert info.value.field == "state.variables.s"
    assert await store.count_live_sessions("bad-values") == 1


async def test_corrupt_status_is_refused_before_any_write(single: CacheSessionStore) -> None:
    store = single
    state = make_state("corrupt")
    await store.create_session(state)
    await store.append_turns(state.session_id, [turn("c0")])
    await store.client.hset(store.keys.header(state.session_id), "s", "bogus")
    with pytest.raises(CorruptRecordError) as info:
        await store.append_turns(state.session_id, [turn("c1")])
    assert state.session_id in str(info.value)
    assert await store.client.llen(store.keys.session(state.session_id)[1]) == 1


async def test_from_config_and_registry() -> None:
    config = SessionConfig(
        backend="cache",
        redis_url="redis://127.0.0.1:6379/0",
        key_prefix="cfg-test",
        redis_pool_size=3,
        session_ttl=5,
    )
    store = create_store(config)
    assert isinstance(store, CacheSessionStore)
    assert store.keys.prefix == "cfg-test" and store.session_ttl == 5 and not store.cluster
    await store.close()
    await store.close()  # idempotent


# ------------------------------------------------------------- cross-slot indexes
async def test_stale_reservations_stop_counting(single: CacheSessionStore) -> None:
    store = single
    live_key = store.keys.user("stale")[1]
    # A writer that died between reserving and writing, 10 minutes ago ...
    old = (time.time_ns() // 1000) - 600_000_000
    await store.client.zadd(live_key, {"ghost": old})
    await store.create_session(make_state("stale"), max_live_per_user=1)
    assert await store.client.zscore(live_key, "ghost") is None
    # ... but a reservation being written right now still counts.
    await store.client.zadd(live_key, {"in-flight": time.time_ns() // 1000})
    with pytest.raises(SessionCapacityError):
        await store.create_session(make_state("stale"), max_live_per_user=2)
    assert await store.count_live_sessions("stale") == 1


async def test_sweeper_reads_the_deadline_index(store: CacheSessionStore) -> None:
    clock = FakeClock()
    store.clock = clock
    store.session_ttl = 60
    states = [make_state(f"sweep{i}") for i in range(3)]
    for state in states:
        await store.create_session(state)
    pushed, plain, hidden = states
    clock.advance(50)
    await store.append_turns(pushed.session_id, [turn("p0")])
    # Take one session out of the index: a sweeper that scanned every session
    # would still find it; one that reads the index must not.
    await store.client.zrem(store.keys.deadlines, hidden.session_id)
    clock.advance(11)
    assert await store.find_expired() == [plain.session_id]
    # The extended session's entry was moved up to its real deadline.
    score = await store.client.zscore(store.keys.deadlines, pushed.session_id)
    expected = clock.now - timedelta(seconds=11) + timedelta(seconds=60)
    assert score == pytest.approx(expected.timestamp() * 1_000_000)
    marked = await store.mark_expired(plain.session_id)
    assert marked is not None
    assert await store.client.zscore(store.keys.deadlines, plain.session_id) is None
    assert await store.client.zscore(store.keys.ended, plain.session_id) is not None


# ------------------------------------------------------------------ processes
def _spawn() -> Any:
    return multiprocessing.get_context("spawn")


@pytest.mark.slow
async def test_four_processes_append_250_each_and_lose_nothing(store: CacheSessionStore) -> None:
    state = make_state("many-writers")
    await store.create_session(state)
    sid = state.session_id
    ctx = _spawn()
    start = ctx.Event()
    procs = [
        ctx.Process(
            target=append_worker,
            args=(store.url, store.keys.prefix, store.cluster, sid, w, 250, start),
        )
        for w in range(4)
    ]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    loaded = await assert_consistent(store, sid)
    assert loaded.turn_count == 1000
    ids = [t.turn_id for t in loaded.turns]
    for w in range(4):
        mine = [i for i in ids if i.startswith(f"w{w}-")]
        assert mine == [f"w{w}-{i:04d}" for i in range(250)]  # each writer's order kept


@pytest.mark.slow
async def test_user_cap_holds_across_processes(store: CacheSessionStore) -> None:
    ctx = _spawn()
    start = ctx.Event()
    out = ctx.Queue()
    procs = [
        ctx.Process(
            target=create_worker,
            args=(store.url, store.keys.prefix, store.cluster, "capped", 6, 5, start, out),
        )
        for _ in range(4)
    ]
    for proc in procs:
        proc.start()
    start.set()
    made = sum(out.get(timeout=120) for _ in procs)
    for proc in procs:
        proc.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert made == 5
    assert await store.count_live_sessions("capped") == 5
    assert len((await store.list_user_sessions("capped")).items) == 5


@pytest.mark.slow
async def test_writer_killed_mid_stream_leaves_a_consistent_session(
    store: CacheSessionStore,
) -> None:
    state = make_state("killed-writer")
    await store.create_session(state)
    sid = state.session_id
    proc = _spawn().Process(
        target=append_forever, args=(store.url, store.keys.prefix, store.cluster, sid)
    )
    proc.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        record = await store.load_record(sid)
        if record is not None and record.state.turn_count >= 150:
            break
        await asyncio.sleep(0.01)
    assert proc.pid is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    assert proc.exitcode == -signal.SIGKILL
    loaded = await assert_consistent(store, sid)
    assert loaded.turn_count >= 150
    # The session is still fully usable afterwards.
    await store.append_turns(sid, [turn("after-kill")])
    assert (await assert_consistent(store, sid)).turn_count == loaded.turn_count + 1


# ------------------------------------------------------------ availability
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _down_url(port: int) -> str:
    return f"redis://:s3cret-pw@127.0.0.1:{port}/0"


@pytest.mark.parametrize("cluster", [False, True], ids=["single", "cluster"])
async def test_store_reports_redis_down_at_boot(cluster: bool) -> None:
    """Also a Cluster none of whose nodes answers (redis-py's RedisClusterUnreachableError
    is no RedisError: it went through as a raw traceback)."""
    port = _free_port()  # nothing answers there
    store = CacheSessionStore(_down_url(port), key_prefix="down-test", cluster=cluster)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        await store.initialize()
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "unreachable" in message
    assert "s3cret-pw" not in message and "***" in message
    with pytest.raises(StoreUnavailableError):
        await store.ping()
    await store.close()
    await store.close()


async def test_app_boot_fails_clearly_when_redis_is_down() -> None:
    module = SessionModule.configure(
        {"backend": "cache", "redis_url": _down_url(_free_port())}, enable_cleanup_scheduler=False
    )
    with pytest.raises(StoreUnavailableError) as info:
        async with Application.boot(modules=[module]):
            pytest.fail("the application booted without its Redis")
    assert "unreachable" in str(info.value) and "s3cret-pw" not in str(info.value)
    app = Application()
    app.add_module(module)
    with pytest.raises(StoreUnavailableError):
        await app.start()
    health = await app.health_check()
    assert health.status == HealthStatus.UNHEALTHY


@pytest.fixture
def spare_server() -> Any:
    """A redis-server of these tests alone on port 7109 (stopped afterwards)."""
    require_redis_binaries()
    lock = port_lock(f"spare-{SPARE_PORT}", wait_s=300)
    assert lock is not None, f"port {SPARE_PORT} stayed locked by another test session"
    workdir = Path(tempfile.mkdtemp(prefix="lexigram-redis-spare-"))
    try:
        start_server(SPARE_PORT, workdir)
        yield workdir
    finally:
        stop_server(SPARE_PORT)
        shutil.rmtree(workdir, ignore_errors=True)
        release_lock(lock)


def _session_health(health: Any) -> Any:
    found = [c for c in health.components if c.component == "session"]
    assert found, f"no session component in {health.components}"
    return found[0]


async def test_health_check_and_reconnection_after_a_restart(spare_server: Path) -> None:
    prefix = f"lxtest:{uuid.uuid4().hex[:12]}"
    url = f"redis://127.0.0.1:{SPARE_PORT}/0"
    module = SessionModule.configure(
        {"backend": "cache", "redis_url": url, "key_prefix": prefix},
        enable_cleanup_scheduler=False,
    )
    async with Application.boot(modules=[module]) as app:
        manager: Any = await app.container.resolve(SessionManagerProtocol)
        state = await manager.create("restart-user")
        await manager.add_turn(state.session_id, turn("r0"))
        assert _session_health(await app.health_check()).status == HealthStatus.HEALTHY

        stop_server(SPARE_PORT)
        down = _session_health(await app.health_check())
        assert down.status == HealthStatus.UNHEALTHY
        assert "unreachable" in (down.message or "")
        with pytest.raises(StoreUnavailableError):
            await manager.add_turn(state.session_id, turn("r1"))

        start_server(SPARE_PORT, spare_server)  # empty again: no persistence
        assert _session_health(await app.health_check()).status == HealthStatus.HEALTHY
        again = await manager.create("restart-user")  # scripts reloaded after NOSCRIPT
        await manager.add_turn(again.session_id, turn("r2"))
        loaded = await manager.get_state(again.session_id)
        assert loaded is not None and [t.turn_id for t in loaded.turns] == ["r2"]
        # Listing reads headers through a pipelined script the restarted server
        # has never seen: NOSCRIPT is answered by loading the scripts again.
        page = await manager.list_sessions("restart-user")
        assert [s.session_id for s in page.items] == [again.session_id]


async def test_compat_checkpoint_survives_in_its_own_slot(store: CacheSessionStore) -> None:
    state = make_state("compat")
    await store.create_session(state)
    full = replace(
        state, turns=[turn("x0"), turn("x1")], turn_count=2, total_tokens=2, total_cost=0.5
    )
    checkpoint = SessionCheckpoint(
        checkpoint_id="odd{cp}id",
        session_id=state.session_id,
        state=full,
        created_at=state.created_at,
    )
    await store.save_checkpoint(checkpoint)
    restored = await store.restore_checkpoint("odd{cp}id")
    assert [t.turn_id for t in restored.turns] == ["x0", "x1"]
    assert (await assert_consistent(store, state.session_id)).turn_count == 2


async def test_cleanup_drops_every_key_of_a_prefix() -> None:
    require_redis()
    prefix = f"lxtest:{uuid.uuid4().hex[:12]}"
    store = CacheSessionStore(REDIS_URL, key_prefix=prefix)
    await store.initialize()
    try:
        state = make_state("cleanup")
        await store.create_session(state)
        await store.append_turns(state.session_id, [turn("z0")])
        assert await drop_prefix(store.client, store.keys.pattern) >= 4
        assert [k async for k in store.client.scan_iter(match=store.keys.pattern)] == []
    finally:
        await store.close()


async def test_two_sweepers_expire_and_purge_each_session_once(store: CacheSessionStore) -> None:
    from datetime import UTC, datetime

    from lexigram.ai.session.manager.cleanup import SessionCleanupScheduler
    from lexigram.ai.session.manager.core import SessionManagerImpl

    clock = FakeClock(datetime.now(UTC))
    store.clock = clock
    manager = SessionManagerImpl(store, {"session_ttl": 60, "purge_after_s": 100})
    ids = [(await manager.create(f"sweep-user-{i}")).session_id for i in range(6)]
    clock.advance(50)
    await manager.add_turn(ids[0], turn("keep-alive"))  # pushes only this one's deadline
    clock.advance(11)
    sweepers = [SessionCleanupScheduler(manager) for _ in range(2)]
    reports = await asyncio.gather(*(s.sweep(purge=False) for s in sweepers))
    assert sum(r.expired for r in reports) == 5
    for sid in ids[1:]:
        header = await store.client.hget(store.keys.header(sid), "s")
        assert header == b"expired"
    assert (await manager.get_header(ids[0])).status.value == "active"  # type: ignore[union-attr]
    clock.advance(101)
    reports = await asyncio.gather(*(s.sweep() for s in sweepers))
    assert sum(r.purged for r in reports) == 6  # ids[0] expired in the meantime too
    for sid in ids:
        assert await store.load(sid) is None
    assert await store.client.zcard(store.keys.deadlines) == 0
    assert await store.client.zcard(store.keys.ended) == 0


async def test_taken_id_is_reported_before_the_cap(single: CacheSessionStore) -> None:
    taken = make_state("owner-a")
    await single.create_session(taken)
    await single.create_session(make_state("owner-b"), max_live_per_user=1)
    # owner-b is at its cap and the id belongs to someone else: "exists" wins,
    # and neither user's index keeps a trace of the refused create.
    with pytest.raises(SessionValidationError):
        await single.create_session(replace(taken, user_id="owner-b"), max_live_per_user=1)
    with pytest.raises(SessionValidationError):
        await single.create_session(replace(taken, user_id="owner-c"), max_live_per_user=5)
    assert await single.count_live_sessions("owner-b") == 1
    assert await single.count_live_sessions("owner-c") == 0
    assert await single.client.zcard(single.keys.user("owner-c")[0]) == 0
    assert await single.count_live_sessions("owner-a") == 1
