"""A closed in-memory store refuses every operation, the inherited ones too.

``ping``, ``initialize`` and ``quarantine`` come from the base class and were not
wrapped, so after ``close()`` they still answered and ``manager.health_check()``
returned True; the durable stores raise ``StoreUnavailableError`` (found by an audit).
"""

from __future__ import annotations

import pytest

from lexigram.ai.session.exceptions import StoreUnavailableError
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.stores.in_memory import InMemorySessionStore


@pytest.mark.parametrize("call", ["ping", "initialize", "quarantine", "health_check"])
async def test_every_operation_of_a_closed_memory_store_is_refused(call: str) -> None:
    store = InMemorySessionStore()
    await store.initialize()
    manager = SessionManagerImpl(store)
    state = await manager.create("alice")
    assert await manager.health_check()
    await store.close()
    calls = {
        "ping": lambda: store.ping(),
        "initialize": lambda: store.initialize(),
        "quarantine": lambda: store.quarantine(state.session_id),
        "health_check": lambda: manager.health_check(),
    }
    with pytest.raises(StoreUnavailableError, match="closed"):
        await calls[call]()
    await store.close()  # still idempotent
