"""The in-memory backend of the store benchmarks (no driver, so no raw baseline)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import BenchBackend

from lexigram.ai.session.stores.base import SessionStore
from lexigram.ai.session.stores.in_memory import InMemorySessionStore


async def _make_store() -> SessionStore:
    store = InMemorySessionStore()
    await store.initialize()
    return store


async def _drop_store(store: SessionStore) -> None:
    await store.close()


BACKENDS = [
    BenchBackend(
        name="memory",
        make_store=_make_store,
        drop_store=_drop_store,
        notes={"url": "process memory", "baseline": "none (no driver)"},
    )
]
