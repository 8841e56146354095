"""What serving every event loop costs on the main loop: ``append_turns`` with and without.

Run::

    python benchmarks/event_loops.py [--rounds 7] [--backends memory,sqlite,postgres,redis]

Each round runs two fresh processes one after the other (so both see the same machine
load): one with the per-loop lookup of ``stores/loops.py`` replaced by a plain read of
the last resource (and the in-memory store's methods without their lock), one as
shipped. Each process times ``store.append_turns`` of one turn, 500 times (3,000 in
memory) after 50 warm-up appends, and reports the median wall time and the CPU time
per append. Printed: the medians over the rounds and their ratio (with / without).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from typing import Any

os.environ.setdefault("LEX_QUIET", "1")
os.environ.setdefault("LEX_LOGGING__LEVEL", "WARNING")

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _without_dispatch() -> None:
    """The shipped code minus the per-loop lookup and the in-memory lock."""
    from lexigram.ai.session.stores import loops
    from lexigram.ai.session.stores.in_memory import InMemorySessionStore

    def first_resource(self: Any) -> Any:
        last = self._last[1]
        return last if last is not None else self._slow(asyncio.get_running_loop())

    loops.PerLoop.get = first_resource  # type: ignore[method-assign]
    for name, method in list(vars(InMemorySessionStore).items()):
        if inspect.iscoroutinefunction(method) and hasattr(method, "__wrapped__"):
            setattr(InMemorySessionStore, name, method.__wrapped__)


async def _child(backend: str, appends: int) -> tuple[float, float]:
    from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

    from lexigram.ai.session.stores.base import SessionStore

    tag = uuid.uuid4().hex[:8]
    store: SessionStore
    if backend == "memory":
        from lexigram.ai.session.stores.in_memory import InMemorySessionStore

        store = InMemorySessionStore()
    elif backend in ("sqlite", "postgres"):
        from lexigram.ai.session.stores.database import DatabaseSessionStore, drop_schema

        url = POSTGRES_URL if backend == "postgres" else (
            f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
        )
        store = DatabaseSessionStore(url, table_prefix=f"bl{tag}_")
    else:
        from lexigram.ai.session.stores.cache import CacheSessionStore

        store = CacheSessionStore(REDIS_URL, key_prefix=f"bench-loops:{tag}")
    await store.initialize()
    now = datetime.now(UTC)
    state = SessionState(
        session_id=f"s{tag}", user_id="bench", status=SessionStatus.ACTIVE,
        created_at=now, updated_at=now, turns=[],
    )
    await store.create_session(state)

    def turn(i: int) -> SessionTurn:
        return SessionTurn(
            turn_id=uuid.uuid4().hex, role="user", content=f"hello {i}",
            timestamp=datetime.now(UTC),
        )

    for i in range(50):
        await store.append_turns(state.session_id, [turn(i)])
    samples: list[float] = []
    cpu0 = time.process_time()
    for i in range(appends):
        one = turn(i)
        t0 = time.perf_counter()
        await store.append_turns(state.session_id, [one])
        samples.append(time.perf_counter() - t0)
    cpu = (time.process_time() - cpu0) / appends
    if backend == "redis":
        await store.delete(state.session_id)
    await store.close()
    if backend == "postgres":
        await drop_schema(POSTGRES_URL, table_prefix=f"bl{tag}_")
    return statistics.median(samples) * 1e6, cpu * 1e6


def _run_child(backend: str, appends: int, without: bool) -> tuple[float, float] | None:
    args = [sys.executable, __file__, "--child", backend, str(appends)]
    if without:
        args.append("--without")
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, check=False)
    for line in reversed(done.stdout.splitlines()):
        parts = line.split()
        if len(parts) == 3 and parts[0] == "RESULT":
            return float(parts[1]), float(parts[2])
    print(f"  {backend}: run failed: {done.stderr.strip().splitlines()[-1:]}")
    return None


def main() -> int:
    """Parse the options; run as the driver or as one timed child."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--backends", default="memory,sqlite,postgres,redis")
    parser.add_argument("--child", nargs=2, metavar=("BACKEND", "APPENDS"))
    parser.add_argument("--without", action="store_true")
    args = parser.parse_args()
    if args.child:
        if args.without:
            _without_dispatch()
        wall, cpu = asyncio.run(_child(args.child[0], int(args.child[1])))
        print(f"RESULT {wall:.2f} {cpu:.2f}")
        return 0
    print("append_turns on the main loop, medians over rounds (us): without -> with")
    for backend in args.backends.split(","):
        appends = 3000 if backend == "memory" else 500
        runs: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
        for _ in range(args.rounds):
            for without in (True, False):
                result = _run_child(backend, appends, without)
                if result is not None:
                    runs[without].append(result)
        if not runs[True] or not runs[False]:
            print(f"{backend}: skipped (no result)")
            continue
        w0 = statistics.median(r[0] for r in runs[True])
        w1 = statistics.median(r[0] for r in runs[False])
        c0 = statistics.median(r[1] for r in runs[True])
        c1 = statistics.median(r[1] for r in runs[False])
        print(
            f"{backend:8} wall {w0:8.1f} -> {w1:8.1f} ({w1 / w0:.2f}x)   "
            f"cpu/append {c0:8.1f} -> {c1:8.1f} ({c1 / c0:.2f}x)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
