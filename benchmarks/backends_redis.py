"""The Redis backend of the store benchmarks, and a stand-alone runner.

``BACKENDS`` plugs ``CacheSessionStore`` into ``benchmarks/stores.py`` (see
``harness.py``), with the raw baseline :class:`RawRedisWriter`: one Lua script
(RPUSH + HINCRBY + EXPIRE of the same bytes, one round trip) per append, and LRANGE + orjson per
read (plus ``create`` and ``seed``, the optional extras of ``harness.py``). Run this
file directly to measure the issue's targets on its own::

    python benchmarks/backends_redis.py [--quick] [--url redis://127.0.0.1:6379/0]

Each measurement alternates our call and the raw one so that both see the same
machine load, and reports median / p99 in ms and the ratio of medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import BlockingConnectionPool, Redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import BenchBackend, median_ms, p99_ms
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.stores.base import SessionStore
from lexigram.ai.session.stores.cache import CacheSessionStore
from lexigram.ai.session.stores.redis.wire import encode_turn

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


#: The raw append: one round trip, one atomic step, like the store's append script.
_RAW_APPEND = """
redis.call('RPUSH', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[2], 'total_tokens', ARGV[2])
redis.call('HINCRBY', KEYS[2], 'turn_count', 1)
redis.call('EXPIRE', KEYS[1], 86400)
return 1
"""


class RawRedisWriter:
    """The raw driver doing what an append does, with nothing of ours in between."""

    def __init__(self, url: str = REDIS_URL) -> None:
        pool = BlockingConnectionPool.from_url(url, max_connections=50)
        self._client = Redis(connection_pool=pool)
        self._prefix = f"lxbench-raw:{uuid.uuid4().hex[:10]}"
        self._append = self._client.register_script(_RAW_APPEND)

    def _keys(self, session_key: str) -> tuple[str, str]:
        base = f"{self._prefix}:{{{session_key}}}"
        return base + ":t", base + ":h"

    async def append(self, session_key: str, payload: bytes, tokens: int) -> None:
        """One script (EVALSHA): RPUSH the turn, HINCRBY the counters, EXPIRE the list."""
        turns, header = self._keys(session_key)
        await self._append(keys=[turns, header], args=[payload, tokens])

    async def create(self, session_key: str) -> None:
        """A new session header: MULTI; HSET of ~20 header fields; ZADD to a user index; EXEC."""
        _, header = self._keys(session_key)
        fields = {f"field{i}": "x" * 12 for i in range(20)}
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hset(header, mapping=fields)
            pipe.zadd(f"{self._prefix}:{{users}}", {session_key: time.time()})
            await pipe.execute()

    async def seed(self, session_key: str, payloads: list[bytes], tokens: int) -> None:
        """Bulk-load history (RPUSH in batches) before a measurement."""
        turns, header = self._keys(session_key)
        for start in range(0, len(payloads), 500):
            await self._client.rpush(turns, *payloads[start : start + 500])
        await self._client.hincrby(header, "total_tokens", tokens * len(payloads))

    async def read_all(self, session_key: str) -> list[Any]:
        """LRANGE every turn and parse each one with orjson."""
        turns, _ = self._keys(session_key)
        return [orjson.loads(item) for item in await self._client.lrange(turns, 0, -1)]

    async def close(self) -> None:
        """Drop every key written and close the connection pool."""
        keys = [k async for k in self._client.scan_iter(match=self._prefix + ":*", count=1000)]
        if keys:
            await self._client.delete(*keys)
        await self._client.aclose()


async def _make_store() -> SessionStore:
    store = CacheSessionStore(REDIS_URL, key_prefix=f"lxbench:{uuid.uuid4().hex[:10]}")
    await store.initialize()
    return store


async def _drop_store(store: SessionStore) -> None:
    assert isinstance(store, CacheSessionStore)
    keys = [k async for k in store.client.scan_iter(match=store.keys.pattern, count=1000)]
    for start in range(0, len(keys), 500):
        await store.client.delete(*keys[start : start + 500])
    await store.close()


async def _make_raw() -> RawRedisWriter:
    return RawRedisWriter()


BACKENDS = [
    BenchBackend(
        name="redis",
        make_store=_make_store,
        drop_store=_drop_store,
        make_raw=_make_raw,
        notes={"url": REDIS_URL, "baseline": "script RPUSH+HINCRBY+EXPIRE / LRANGE+orjson"},
    )
]


# ------------------------------------------------------------------ stand-alone
def turn(n: int, size: int = 300) -> SessionTurn:
    """A realistic turn of about ``size`` bytes of content."""
    return SessionTurn(
        turn_id=f"t{n}-{uuid.uuid4().hex[:8]}",
        role="user" if n % 2 else "assistant",
        content=("lorem ipsum dolor sit amet " * (size // 27 + 1))[:size],
        timestamp=T0 + timedelta(seconds=n),
        metadata={"n": n},
        tokens_used=12,
        cost=0.0001,
        model="gpt-x",
    )


async def _session(store: SessionStore, turns: int) -> str:
    sid = "bench-" + uuid.uuid4().hex
    state = SessionState(
        session_id=sid, user_id="bench", status=SessionStatus.ACTIVE, created_at=T0, updated_at=T0
    )
    await store.create_session(state)
    for start in range(0, turns, 500):
        batch = [turn(i) for i in range(start, min(start + 500, turns))]
        await store.append_turns(sid, batch)
    return sid


async def _fill_raw(raw: RawRedisWriter, key: str, turns: int) -> None:
    for i in range(turns):
        await raw.append(key, encode_turn(turn(i)), 12)


def _line(label: str, ours: list[float], base: list[float]) -> str:
    ratio = median_ms(ours) / median_ms(base)
    return (
        f"{label:<34} ours {median_ms(ours):7.3f} / p99 {p99_ms(ours):7.3f} ms   "
        f"raw {median_ms(base):7.3f} / p99 {p99_ms(base):7.3f} ms   ratio {ratio:4.2f}x"
    )


async def bench_append(store: SessionStore, raw: RawRedisWriter, size: int, n: int) -> str:
    """add_turn (``append_turns`` of one turn) on a session already holding ``size`` turns."""
    sid = await _session(store, size)
    key = "raw-" + uuid.uuid4().hex
    await _fill_raw(raw, key, min(size, 1000))
    ours: list[float] = []
    base: list[float] = []
    for i in range(n):
        t = turn(size + i)
        payload = encode_turn(t)
        start = time.perf_counter()
        await store.append_turns(sid, [t])
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        await raw.append(key, payload, 12)
        base.append(time.perf_counter() - start)
    return _line(f"add_turn at {size:>5} turns", ours, base)


async def bench_flatness(store: SessionStore, small: int, big: int, n: int) -> str:
    """add_turn on a ``small`` and a ``big`` session, interleaved sample by sample.

    Measuring the two lengths one after the other lets a change of machine load
    between the two runs show up as a ratio; alternating them cancels it out.
    """
    sids = {small: await _session(store, small), big: await _session(store, big)}
    samples: dict[int, list[float]] = {small: [], big: []}
    for i in range(n):
        order = (small, big) if i % 2 else (big, small)
        for size in order:
            t = turn(1_000_000 + 2 * i + (size == big))
            start = time.perf_counter()
            await store.append_turns(sids[size], [t])
            samples[size].append(time.perf_counter() - start)
    ratio = median_ms(samples[big]) / median_ms(samples[small])
    return (
        f"add_turn flatness, interleaved      {big} turns {median_ms(samples[big]):6.3f} ms / "
        f"{small} turns {median_ms(samples[small]):6.3f} ms = {ratio:4.2f}x"
    )


async def bench_read(store: SessionStore, raw: RawRedisWriter, size: int, n: int) -> str:
    """get_state (``load``: header + every live turn, parsed) vs LRANGE + orjson."""
    sid = await _session(store, size)
    key = "raw-" + uuid.uuid4().hex
    await _fill_raw(raw, key, size)
    ours: list[float] = []
    base: list[float] = []
    for _ in range(n):
        start = time.perf_counter()
        state = await store.load(sid)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        items = await raw.read_all(key)
        base.append(time.perf_counter() - start)
        assert state is not None and len(state.turns) == len(items) == size
    return _line(f"get_state of {size} turns", ours, base)


async def bench_last(store: SessionStore, size: int, n: int) -> str:
    """get_turns(last=20) at ``size`` turns (reads 20 turns whatever the length)."""
    sid = await _session(store, size)
    samples: list[float] = []
    for _ in range(n):
        start = time.perf_counter()
        await store.get_turns(sid, last=20)
        samples.append(time.perf_counter() - start)
    return f"get_turns(last=20) at {size:>5} turns   {median_ms(samples):7.3f} ms"


async def bench_concurrent(store: SessionStore, raw: RawRedisWriter, count: int, runs: int) -> str:
    """``count`` concurrent appends to one session (wall time of the whole burst)."""
    ours: list[float] = []
    base: list[float] = []
    lost = 0
    for _ in range(runs):
        sid = await _session(store, 0)
        key = "raw-" + uuid.uuid4().hex
        turns = [turn(i) for i in range(count)]
        start = time.perf_counter()
        await asyncio.gather(*(store.append_turns(sid, [t]) for t in turns))
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        await asyncio.gather(*(raw.append(key, encode_turn(t), 12) for t in turns))
        base.append(time.perf_counter() - start)
        record = await store.load_record(sid)
        assert record is not None
        lost += count - record.state.turn_count
    return _line(f"{count} concurrent appends (burst)", ours, base) + f"   lost turns: {lost}"


async def bench_manager_append(store: SessionStore, sizes: tuple[int, ...], n: int) -> list[str]:
    """``SessionManagerImpl.add_turn`` with the default config (auto-checkpoint every
    10 turns, 50 kept) on sessions of each size: the whole add_turn path."""
    from lexigram.ai.session.manager.core import SessionManagerImpl

    manager = SessionManagerImpl(store, {"max_turns_per_session": 100_000, "session_ttl": 86_400})
    lines: list[str] = []
    medians: dict[int, float] = {}
    for size in sizes:
        sid = (await manager.create("bench-manager")).session_id
        for start in range(0, size, 500):
            await manager.add_turns(sid, [turn(i) for i in range(start, min(start + 500, size))])
        samples: list[float] = []
        for i in range(n):
            t = turn(size + i)
            start_t = time.perf_counter()
            await manager.add_turn(sid, t)
            samples.append(time.perf_counter() - start_t)
        medians[size] = median_ms(samples)
        lines.append(
            f"manager.add_turn at {size:>5} turns   {median_ms(samples):7.3f} / p99 "
            f"{p99_ms(samples):7.3f} ms"
        )
    store.session_ttl = 0  # the manager set its TTL on the store; the other benches use none
    first, last = sizes[0], sizes[-1]
    lines.append(
        f"manager.add_turn {last} vs {first} turns: {medians[last] / medians[first]:4.2f}x"
    )
    return lines


async def bench_paging(store: SessionStore, sessions: int, turns: int, n: int) -> list[str]:
    """A page of 50 of a user's sessions at 100 vs ``sessions`` sessions, and a page of
    50 turns (``get_turn_seqs``) in the middle of a ``turns``-turn session."""
    lines: list[str] = []
    for count in (100, sessions):
        user = "pager-" + uuid.uuid4().hex[:6]
        for start in range(0, count, 100):
            await asyncio.gather(
                *(
                    store.create_session(
                        SessionState(
                            session_id=f"pg-{uuid.uuid4().hex}",
                            user_id=user,
                            status=SessionStatus.ACTIVE,
                            created_at=T0,
                            updated_at=T0,
                        )
                    )
                    for _ in range(min(100, count - start))
                )
            )
        first = await store.list_user_sessions(user, limit=50)
        samples: list[float] = []
        for _ in range(n):
            start_t = time.perf_counter()
            page = await store.list_user_sessions(user, limit=50, cursor=first.next_cursor)
            samples.append(time.perf_counter() - start_t)
            assert len(page.items) == 50
        lines.append(
            f"list_user_sessions page of 50 at {count:>6} sessions {median_ms(samples):7.3f} ms"
        )
    for size in (100, turns):
        sid = await _session(store, size)
        samples = []
        for _ in range(n):
            start_t = time.perf_counter()
            await store.get_turn_seqs(sid, after_seq=size // 2, limit=50)
            samples.append(time.perf_counter() - start_t)
        lines.append(f"get_turn_seqs page of 50 at {size:>6} turns  {median_ms(samples):7.3f} ms")
    return lines


async def main(argv: list[str] | None = None) -> None:
    """Measure the issue's targets on Redis and print one line per measurement."""
    global REDIS_URL
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--url", default=REDIS_URL)
    args = parser.parse_args(argv)
    REDIS_URL = args.url
    n = 100 if args.quick else 400
    store = await _make_store()
    raw = RawRedisWriter(REDIS_URL)
    try:
        for _ in range(50):  # warm up connections and scripts
            await bench_append(store, raw, 0, 1)
        for size in (10, 100, 1_000, 5_000):
            print(await bench_append(store, raw, size, n), flush=True)
        print(await bench_flatness(store, 10, 5_000, n), flush=True)
        print(await bench_read(store, raw, 1_000, n // 4), flush=True)
        for size in (10, 10_000):
            print(await bench_last(store, size, n // 2), flush=True)
        print(await bench_concurrent(store, raw, 200, 5 if args.quick else 20), flush=True)
        for line in await bench_manager_append(store, (10, 5_000), n):
            print(line, flush=True)
        for line in await bench_paging(store, 10_000, 10_000, n // 4):
            print(line, flush=True)
    finally:
        await raw.close()
        await _drop_store(store)


if __name__ == "__main__":
    asyncio.run(main())
