"""Our OpenAI Agents SDK adapter against the SDK's own ``SQLiteSession``, in one run.

Run:  python benchmarks/openai_agents.py [--n 200] [--backends in_memory,sqlite,...]

Measured, per backend (ours) and for the SDK's file-backed ``SQLiteSession``:

* ``add_items`` of one item into a session holding 10 items (one add per session,
  ``n`` sessions);
* ``add_items`` of one item into a session holding 5,000 items (``n`` adds);
* ``get_items(limit=50)`` on that 5,000-item session (``n`` reads).

Our backends: every ``BenchBackend`` the ``benchmarks/backends_*.py`` modules declare
(in-memory, SQLite, PostgreSQL, Redis; one whose server is unreachable is skipped).
Our manager runs with ``auto_checkpoint_interval=None`` (the SDK has no checkpoints)
and a turn cap above the session sizes. Prints medians, p99s and ratios ours/SDK.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("LEX_QUIET", "1")
os.environ.setdefault("LEX_LOGGING__LEVEL", "WARNING")

from agents import SQLiteSession
from lexigram.logging import configure_logging

configure_logging(level="WARNING")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import BenchBackend, median_ms, p99_ms  # noqa: E402

from lexigram.ai.session.integrations.openai_agents import OpenAIAgentsSession  # noqa: E402
from lexigram.ai.session.manager.core import SessionManagerImpl  # noqa: E402
from lexigram.ai.session.stores.base import SessionStore  # noqa: E402
from lexigram.ai.session.stores.in_memory import InMemorySessionStore  # noqa: E402

BIG = 5_000
SMALL = 10
LIMIT = 50
MANAGER_CONFIG: dict[str, Any] = {
    "auto_checkpoint_interval": None,
    "max_turns_per_session": 1_000_000,
    "max_sessions_per_user": 1_000_000,
    "session_ttl": 0,
}


def item(n: int) -> dict[str, Any]:
    """A typical assistant message item (~250 bytes of JSON)."""
    return {
        "id": f"msg_{n}",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [
            {
                "type": "output_text",
                "text": f"Answer number {n}: " + "the quick brown fox jumps over a dog. " * 3,
                "annotations": [],
            }
        ],
    }


# ------------------------------------------------------------------ backends
async def _memory_store() -> SessionStore:
    store = InMemorySessionStore()
    await store.initialize()
    return store


async def _close(store: SessionStore) -> None:
    await store.close()


def _plugged_backends() -> list[BenchBackend]:
    """``BACKENDS`` of every ``benchmarks/backends_*.py``."""
    found: list[BenchBackend] = []
    for path in sorted(Path(__file__).resolve().parent.glob("backends_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # a backend whose driver/server is missing
            print(f"  (skipping {path.name}: {exc})")
            continue
        found.extend(getattr(module, "BACKENDS", []))
    return found


# ------------------------------------------------------------------ timing
@dataclass
class Subject:
    """One implementation under test: how to open a session, and its samples."""

    name: str
    open_session: Callable[[], Awaitable[Any]]
    small: list[Any] = field(default_factory=list)
    big: Any = None
    samples: dict[str, list[float]] = field(default_factory=dict)


async def _timed(fn: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


async def _prepare(subject: Subject, n: int) -> None:
    """``n`` sessions of SMALL items and one of BIG items."""
    for _ in range(n):
        session = await subject.open_session()
        await session.add_items([item(i) for i in range(SMALL)])
        subject.small.append(session)
    subject.big = await subject.open_session()
    for start in range(0, BIG, 250):
        await subject.big.add_items([item(i) for i in range(start, start + 250)])
    got = await subject.big.get_items(limit=LIMIT)
    assert [i["id"] for i in got] == [f"msg_{i}" for i in range(BIG - LIMIT, BIG)], subject.name


async def _run(subjects: list[Subject], n: int) -> None:
    """Every measurement round-robin over the subjects, so load drift hits all alike."""
    operations: list[tuple[str, Callable[[Subject, int], Awaitable[Any]]]] = [
        ("get_big", lambda s, k: s.big.get_items(limit=LIMIT)),
        ("add_small", lambda s, k: s.small[k].add_items([item(SMALL)])),
        ("add_big", lambda s, k: s.big.add_items([item(BIG + k)])),
    ]
    for key, operation in operations:
        for k in range(n):
            for subject in subjects:
                elapsed = await _timed(lambda: operation(subject, k))  # noqa: B023
                subject.samples.setdefault(key, []).append(elapsed)


def _report(subjects: list[Subject]) -> None:
    rows = [
        ("add_items(1) @10", "add_small"),
        (f"add_items(1) @{BIG}", "add_big"),
        (f"get_items(limit={LIMIT}) @{BIG}", "get_big"),
    ]
    reference = subjects[0]
    for label, key in rows:
        print(f"\n{label}")
        ref = median_ms(reference.samples[key])
        for subject in subjects:
            samples = subject.samples[key]
            med = median_ms(samples)
            ratio = "" if subject is reference else f"  x{med / ref:.2f} of SDK"
            print(
                f"  {subject.name:<26} median {med:7.3f} ms   p99 {p99_ms(samples):7.3f} ms{ratio}"
            )


def _sdk_subject(tmp: Path, opened: list[SQLiteSession]) -> Subject:
    counter = iter(range(1_000_000))

    async def open_session() -> SQLiteSession:
        session = SQLiteSession(f"s{next(counter)}", db_path=tmp / "sdk.db")
        opened.append(session)
        return session

    return Subject("SDK SQLiteSession (file)", open_session)


def _our_subject(backend: BenchBackend, store: SessionStore) -> Subject:
    manager = SessionManagerImpl(store, MANAGER_CONFIG)
    counter = iter(range(1_000_000))

    async def open_session() -> OpenAIAgentsSession:
        return await OpenAIAgentsSession.create(manager, user_id=f"user-{next(counter)}")

    return Subject(f"{backend.name} (ours)", open_session)


async def main(n: int, only: set[str] | None) -> None:
    backends = _plugged_backends()
    if not any(b.name == "in_memory" for b in backends):
        backends.insert(
            0, BenchBackend(name="in_memory", make_store=_memory_store, drop_store=_close)
        )
    if only:
        backends = [b for b in backends if b.name in only]
    print(f"n={n}, python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()}")
    opened: list[SQLiteSession] = []
    stores: list[tuple[BenchBackend, SessionStore]] = []
    with tempfile.TemporaryDirectory(prefix="bench-agents-") as tmpdir:
        try:
            subjects = [_sdk_subject(Path(tmpdir), opened)]
            for backend in backends:
                try:
                    store = await backend.make_store()
                except (ConnectionError, OSError) as exc:
                    print(f"  (skipping {backend.name}: {exc})")
                    continue
                stores.append((backend, store))
                subjects.append(_our_subject(backend, store))
            for subject in subjects:
                print(f"  filling {subject.name} ...")
                await _prepare(subject, n)
            await _run(subjects, n)
            _report(subjects)
        finally:
            for session in opened:
                session.close()
            for backend, store in stores:
                await backend.drop_store(store)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="samples per measurement")
    parser.add_argument("--backends", help="comma-separated names to run (default: all)")
    args = parser.parse_args()
    wanted = set(args.backends.split(",")) if args.backends else None
    asyncio.run(main(args.n, wanted))
