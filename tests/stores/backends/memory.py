"""The in-memory backend for the conformance suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from lexigram.ai.session.stores.in_memory import InMemorySessionStore

from . import BackendSpec, StoreFactory


@asynccontextmanager
async def _open() -> AsyncIterator[StoreFactory]:
    # One store object stands for the "namespace": in memory, a second instance
    # would share nothing, so the factory hands out the same one.
    store = InMemorySessionStore()
    await store.initialize()

    async def factory() -> InMemorySessionStore:
        return store

    try:
        yield factory
    finally:
        await store.close()


SPECS = [BackendSpec(name="in_memory", open=_open)]
