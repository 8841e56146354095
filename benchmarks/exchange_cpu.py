"""The CPU a PostgreSQL chat exchange costs the whole machine, ours beside raw, in one process.

Run::

    python benchmarks/exchange_cpu.py [--pairs 2] [--ttl 0] [--duration 4] [--freeze]

The workload of ``scale.py`` (every task owns a session of 200 turns and repeats: read
the newest 20 turns, append a user and an assistant turn) in **one** process of 32
tasks, ours and raw alternated ``--pairs`` times, each on fresh tables. Printed per
run: exchanges/s; the CPU time of the whole machine per exchange (``/proc/stat``:
this client, the PostgreSQL server and the kernel), and of this process alone; the
collector's share of the time (``gc.callbacks``); and, for ours, how many updates of
the sessions table PostgreSQL made in place (HOT) out of all of them
(``pg_stat_user_tables``, read once the server has published them).

``--ttl``: the sessions' TTL in seconds (0: none; the library's default is 86,400).
``--freeze``: ``gc.collect(); gc.freeze()`` after the warm-up, on both sides, so that
full collections do not walk the start-up heap and the rest shows.
See docs/performance.md, "PostgreSQL appends as HOT updates".
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("LEX_QUIET", "1")
os.environ.setdefault("LEX_LOGGING__LEVEL", "WARNING")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scale

TASKS = 32


def _machine_cpu() -> float:
    """Seconds of CPU time the whole machine has spent (all but idle and I/O wait)."""
    with open("/proc/stat") as stat:
        ticks = list(map(int, stat.readline().split()[1:]))
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


async def _timed(stack: Any, sids: list[str], duration: float, freeze: bool) -> dict[str, float]:
    """Exchanges of ``TASKS`` tasks for ``duration`` seconds, after one warm-up each."""
    await asyncio.gather(*(stack.exchange(sid, 0, "w") for sid in sids))
    if freeze:
        gc.collect()
        gc.freeze()
    collected = [0.0]
    started = [0.0]

    def clock(phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            collected[0] += time.perf_counter() - started[0]

    gc.callbacks.append(clock)
    machine, process, wall = _machine_cpu(), time.process_time(), time.perf_counter()
    end = wall + duration

    async def task(sid: str) -> int:
        done = 0
        while time.perf_counter() < end:
            done += 1
            await stack.exchange(sid, done, f"t{done}")
        return done

    try:
        total = sum(await asyncio.gather(*(task(sid) for sid in sids)))
    finally:
        gc.callbacks.remove(clock)
        if freeze:
            gc.unfreeze()
    wall = time.perf_counter() - wall
    return {
        "rate": total / wall,
        "machine_us": (_machine_cpu() - machine) / total * 1e6,
        "process_us": (time.process_time() - process) / total * 1e6,
        "gc_share": collected[0] / wall,
    }


async def _hot(prefix: str, at_least: int) -> tuple[int, int]:
    """(updates, HOT updates) of ours' sessions table, once the server published them."""
    import asyncpg

    conn = await asyncpg.connect(scale._pg_dsn())
    try:
        counts = (0, 0)
        for _ in range(150):  # a deferred stats flush comes within 10 s
            row = await conn.fetchrow(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = $1",
                prefix + "sessions",
            )
            counts = (int(row[0]), int(row[1])) if row else (0, 0)
            if counts[0] >= at_least:
                break
            await asyncio.sleep(0.1)
        return counts
    finally:
        await conn.close()


async def _one(side: str, args: argparse.Namespace) -> str:
    prefix = f"xcpu{uuid.uuid4().hex[:8]}_"
    sids = [f"s{i}" for i in range(TASKS)]
    spec = scale.Spec(
        backend="postgres",
        url=scale.POSTGRES_URL,
        prefix=prefix,
        pool_size=args.pool,
        history=200,
        sessions=sids,
    )
    if side == "raw":
        await scale._pg_raw_seed(spec)
        stack: Any = await scale.RawPostgres.open(spec)
        try:
            result = await _timed(stack, sids, args.duration, args.freeze)
        finally:
            await stack.close()
            await scale._pg_raw_counts(spec)  # drops its tables
        hot = ""
    else:
        await scale.seed_ours(spec)
        stack = await scale.OursStack.open(spec)
        try:
            result = await _timed(stack, sids, args.duration, args.freeze)
            updates, in_place = await _hot(prefix, int(result["rate"] * args.duration * 0.9))
        finally:
            await stack.close()
            from lexigram.ai.session.stores.database import drop_schema

            await drop_schema(scale.POSTGRES_URL, table_prefix=prefix)
        hot = f"  HOT {in_place:,} of {updates:,} updates"
    return (
        f"{side:<5} {result['rate']:7,.0f} exchanges/s  machine {result['machine_us']:4.0f} µs"
        f"  process {result['process_us']:4.0f} µs  collector {result['gc_share']:5.1%}{hot}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--ttl", type=int, default=0)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--pool", type=int, default=8)
    parser.add_argument("--freeze", action="store_true")
    args = parser.parse_args()
    # scale.py's configuration (no TTL) with this run's TTL.
    config = scale._config().model_copy(update={"session_ttl": args.ttl})
    scale._config = lambda: config
    print(
        f"# {TASKS} tasks, ttl {args.ttl}, {args.duration} s per run, freeze {args.freeze};"
        f" load average {os.getloadavg()[0]:.2f}"
    )
    for _ in range(max(args.pairs, 1)):
        for side in ("raw", "ours"):
            print(await _one(side, args))


if __name__ == "__main__":
    asyncio.run(main())
