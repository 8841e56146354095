"""Shared pieces of the benchmarks: how a backend plugs into ``benchmarks/stores.py``.

A backend module (``benchmarks/backends_<name>.py``) defines
``BACKENDS: list[BenchBackend]``. Each benchmark measures our store beside the raw
driver doing the same write in the same run and prints the ratio.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

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


def median_ms(samples: list[float]) -> float:
    """Median of ``samples`` (seconds) in milliseconds."""
    return statistics.median(samples) * 1000.0


def p99_ms(samples: list[float]) -> float:
    """99th percentile of ``samples`` (seconds) in milliseconds."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000.0
