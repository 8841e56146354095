"""Shared pieces of the benchmarks: how a backend plugs into ``benchmarks/stores.py``.

A backend module (``benchmarks/backends_<name>.py``) defines
``BACKENDS: list[BenchBackend]``. Each benchmark measures our store beside the raw
driver doing the same write in the same run and prints the ratio.

``stores.py`` imports every ``backends_*.py`` it finds (:func:`discover`); a module
that fails to import, or a backend whose ``make_store`` raises (server down), is
skipped with a printed note.

Optional extras a :class:`RawWriter` may have (looked up with ``getattr``):
``create(session_key)`` (the raw write of a new session header, for the create
throughput baseline) and ``seed(session_key, payloads, tokens)`` (bulk-load history
before a measurement; without it ``append`` is called once per payload).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
import statistics
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session.stores.base import SessionStore


class RawWriter(Protocol):
    """The raw driver doing what an append does, with nothing of ours in between."""

    async def append(self, session_key: str, payload: bytes, tokens: int) -> None:
        """Write one turn's bytes and bump the counters (e.g. RPUSH+HINCRBY+EXPIRE in a MULTI)."""
        ...

    async def read_all(self, session_key: str) -> list[Any]:
        """Read and parse every turn of ``session_key`` (the baseline of get_state)."""
        ...

    async def close(self) -> None:
        """Release connections and drop what was written."""
        ...


@dataclass
class BenchBackend:
    """One backend under benchmark."""

    name: str
    make_store: Callable[[], Awaitable[SessionStore]]
    """A new, initialised store on a fresh namespace."""
    drop_store: Callable[[SessionStore], Awaitable[None]]
    """Close the store and delete its namespace."""
    make_raw: Callable[[], Awaitable[RawWriter]] | None = None
    """The raw-driver baseline, when there is one."""
    notes: dict[str, Any] = field(default_factory=dict)


@contextlib.contextmanager
def one_cpu() -> Iterator[None]:
    """Every thread of this process on one CPU inside, as before after (Linux only).

    For an A/B comparison inside one process whose two sides run on threads of their
    own (each aiosqlite connection has a worker thread): on a 2-vCPU VM the thread
    hand-offs cost more when a worker sits on the other CPU than the event loop, which
    made one side slower by chance of placement. Pinned, both sides see the same.
    """
    before: dict[int, set[int]] = {}
    if hasattr(os, "sched_setaffinity"):
        cpu = {min(os.sched_getaffinity(0))}
        for entry in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError):  # the thread ended meanwhile
                before[int(entry)] = os.sched_getaffinity(int(entry))
                os.sched_setaffinity(int(entry), cpu)
    try:
        yield
    finally:
        for tid, cpus in before.items():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, cpus)


def median_ms(samples: list[float]) -> float:
    """Median of ``samples`` (seconds) in milliseconds."""
    return statistics.median(samples) * 1000.0


def p99_ms(samples: list[float]) -> float:
    """99th percentile of ``samples`` (seconds) in milliseconds."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000.0


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def bench_turn(n: int, size: int = 300, *, prefix: str = "t") -> SessionTurn:
    """A realistic turn: about ``size`` bytes of content, a little metadata, a model."""
    return SessionTurn(
        turn_id=f"{prefix}{n}",
        role="user" if n % 2 else "assistant",
        content=("lorem ipsum dolor sit amet " * (size // 27 + 1))[:size],
        timestamp=T0 + timedelta(seconds=n),
        metadata={"n": n},
        tokens_used=12,
        cost=0.0001,
        model="gpt-x",
    )


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def discover(directory: Path | None = None) -> tuple[list[BenchBackend], list[str]]:
    """Every ``BACKENDS`` entry of every ``backends_*.py`` in ``directory`` (sorted by file).

    Returns the backends and one note per module that could not be imported.
    """
    here = directory or Path(__file__).resolve().parent
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))
    backends: list[BenchBackend] = []
    notes: list[str] = []
    for path in sorted(here.glob("backends_*.py")):
        try:
            module = importlib.import_module(path.stem)
        except Exception as exc:
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            notes.append(f"{path.name}: not loaded ({last})")
            continue
        backends.extend(getattr(module, "BACKENDS", []))
    return backends, notes
