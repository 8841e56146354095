"""Our OpenAI Agents SDK adapter against the SDK's own ``SQLiteSession``, side by side.

Run:  python benchmarks/openai_agents.py [--rounds 5] [--n 200] [--backends sqlite,...]

Measured for the SDK's file-backed ``SQLiteSession`` and for the adapter on each of
our backends (every ``BenchBackend`` of ``benchmarks/backends_*.py``; one whose server
is unreachable is skipped):

* ``get_items(limit=20)`` on a session holding 2,000 items (the headline: the read
  the ``Runner`` makes before each turn when ``session_settings.limit`` is set);
* ``get_items(limit=50)`` on that session;
* ``add_items`` of one item into a session holding 10 items and into the 2,000-item
  session.

Interleaved: each round takes ``n`` samples of every operation, one implementation
after the other for each sample (the order rotates per round), so load drift on a
shared machine hits all alike. Prints, per operation, each implementation's median
and p99 wall time over all rounds, its mean process CPU time (every thread; less
sensitive to other load on the machine), its ratio to the SDK, and the range of the
per-round ratios.
Items are typical assistant messages (about 250 bytes of JSON); our manager runs with
``auto_checkpoint_interval=None`` (the SDK has no checkpoints).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import statistics
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

from harness import BenchBackend, p99_ms  # noqa: E402

from lexigram.ai.session.integrations.openai_agents import OpenAIAgentsSession  # noqa: E402
from lexigram.ai.session.manager.core import SessionManagerImpl  # noqa: E402
from lexigram.ai.session.stores.base import SessionStore  # noqa: E402
from lexigram.ai.session.stores.in_memory import InMemorySessionStore  # noqa: E402

BIG = 2_000
SMALL = 10
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
    """Per operation, every wall-clock sample (seconds)."""
    cpu: dict[str, list[float]] = field(default_factory=dict)
    """Per operation, the process CPU time (every thread) of every sample (seconds)."""
    rounds: dict[str, list[float]] = field(default_factory=dict)
    """Per operation, the wall-clock median (seconds) of each round."""


Operation = Callable[[Subject, int], Awaitable[Any]]

OPERATIONS: list[tuple[str, str, Operation]] = [
    (f"get_items(limit=20) @{BIG:,}", "get20", lambda s, k: s.big.get_items(limit=20)),
    (f"get_items(limit=50) @{BIG:,}", "get50", lambda s, k: s.big.get_items(limit=50)),
    (f"add_items(1) @{SMALL}", "add_small", lambda s, k: s.small[k].add_items([item(SMALL)])),
    (f"add_items(1) @{BIG:,}", "add_big", lambda s, k: s.big.add_items([item(BIG + k)])),
]


async def _prepare(subject: Subject, sessions: int) -> None:
    """``sessions`` sessions of SMALL items and one of BIG items."""
    for _ in range(sessions):
        session = await subject.open_session()
        await session.add_items([item(i) for i in range(SMALL)])
        subject.small.append(session)
    subject.big = await subject.open_session()
    for start in range(0, BIG, 250):
        await subject.big.add_items([item(i) for i in range(start, start + 250)])
    got = await subject.big.get_items(limit=20)
    assert [i["id"] for i in got] == [f"msg_{i}" for i in range(BIG - 20, BIG)], subject.name


async def _round(subjects: list[Subject], n: int, offset: int, round_no: int) -> None:
    """One round: ``n`` samples of every operation, subjects interleaved per sample."""
    order = subjects[round_no % len(subjects):] + subjects[: round_no % len(subjects)]
    for _, key, operation in OPERATIONS:
        per_round: dict[str, list[float]] = {s.name: [] for s in subjects}
        for k in range(n):
            for subject in order:
                cpu, start = time.process_time(), time.perf_counter()
                await operation(subject, offset + k)
                per_round[subject.name].append(time.perf_counter() - start)
                subject.cpu.setdefault(key, []).append(time.process_time() - cpu)
        for subject in subjects:
            samples = per_round[subject.name]
            subject.samples.setdefault(key, []).extend(samples)
            subject.rounds.setdefault(key, []).append(statistics.median(samples))


def _report(subjects: list[Subject]) -> None:
    reference = subjects[0]
    for label, key, _ in OPERATIONS:
        print(f"\n{label}")
        ref_med = statistics.median(reference.samples[key])
        ref_cpu = statistics.mean(reference.cpu[key])
        for subject in subjects:
            samples = subject.samples[key]
            med, cpu = statistics.median(samples), statistics.mean(subject.cpu[key])
            line = (
                f"  {subject.name:<26} median {med * 1e3:7.3f} ms   p99 {p99_ms(samples):7.3f} ms"
                f"   cpu {cpu * 1e6:6.0f} us"
            )
            if subject is not reference:
                ratios = [
                    ours / ref
                    for ours, ref in zip(subject.rounds[key], reference.rounds[key], strict=True)
                ]
                line += (
                    f"   x{med / ref_med:.2f} of SDK (rounds {min(ratios):.2f}-{max(ratios):.2f},"
                    f" cpu x{cpu / ref_cpu:.2f})"
                )
            print(line)


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


async def main(rounds: int, n: int, only: set[str] | None) -> None:
    """Fill every subject, then measure ``rounds`` interleaved rounds of ``n`` samples."""
    backends = _plugged_backends()
    if not any(b.name == "memory" for b in backends):
        backends.insert(
            0, BenchBackend(name="memory", make_store=_memory_store, drop_store=_close)
        )
    if only:
        backends = [b for b in backends if b.name in only]
    print(
        f"rounds={rounds} n={n}, python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load {tuple(round(x, 2) for x in os.getloadavg())}"
    )
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
                await _prepare(subject, rounds * n)
            for round_no in range(rounds):
                await _round(subjects, n, round_no * n, round_no)
            _report(subjects)
            print(f"\nload after: {tuple(round(x, 2) for x in os.getloadavg())}")
        finally:
            for session in opened:
                session.close()
            for backend, store in stores:
                await backend.drop_store(store)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--n", type=int, default=200, help="samples per operation per round")
    parser.add_argument("--backends", help="comma-separated names to run (default: all)")
    args = parser.parse_args()
    wanted = set(args.backends.split(",")) if args.backends else None
    asyncio.run(main(args.rounds, args.n, wanted))
