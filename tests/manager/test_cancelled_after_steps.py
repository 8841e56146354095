"""A caller cancelled after its write was stored, while what follows it runs.

``close()`` consolidates the session's turns (a store read) before it announces the
close: a cancellation during that read lost both the consolidation and
``SessionClosedEvent``, and a retry could not send them (the session is closed). With
something listening, what follows a stored close, create, checkpoint, fork or merge now
goes on without the cancelled caller (a regression audit). And a chosen id whose
session is stored under a key this process lacks is still "already exists".
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from lexigram.hooks import HookRegistry

from lexigram.ai.session import SessionManagerImpl
from lexigram.ai.session.encryption.keyring import Keyring, new_key_text, parse_keys
from lexigram.ai.session.events import SessionClosedEvent
from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.stores.base import SessionStore
from lexigram.ai.session.stores.encrypted.store import EncryptedSessionStore
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from tests.manager import test_cancelled_store_call as cancelled
from tests.manager.test_cancelled_store_call import manager_over
from tests.manager.test_events_support import RecordingBus, RecordingConsolidator

store = cancelled.store  # a store of each backend


async def test_a_close_cancelled_while_it_consolidates_is_still_announced(
    store: SessionStore,
) -> None:
    bus, consolidator = RecordingBus(), RecordingConsolidator()
    manager = manager_over(store, HookRegistry("test"), event_bus=bus, consolidator=consolidator)
    sid = (await manager.create("u")).session_id
    await manager.add_message(sid, "user", "hi")
    reading = asyncio.Event()
    real = store.get_turns

    async def get_turns(*args: Any, **kwargs: Any) -> Any:
        reading.set()
        await asyncio.sleep(0.05)  # the read takes a while: the caller gives up in it
        return await real(*args, **kwargs)

    store.get_turns = get_turns  # type: ignore[method-assign]
    call = asyncio.ensure_future(manager.close(sid))
    await asyncio.wait_for(reading.wait(), 5)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert await manager.wait_for_background(5) == 0
    header = await manager.get_header(sid)
    assert header is not None and header.status.value == "closed"
    assert [len(batch) for batch in consolidator.batches] == [1]
    assert [e.session_id for e in bus.of(SessionClosedEvent)] == [sid]


async def test_a_taken_id_sealed_under_another_key_is_still_already_exists() -> None:
    """The purged-id check read the stored session and raised EncryptionKeyError."""
    inner = InMemorySessionStore()
    first = SessionManagerImpl(
        EncryptedSessionStore(inner, Keyring(parse_keys(new_key_text("ka"))))
    )
    await first.create("alice", session_id="order-42")
    other = SessionManagerImpl(
        EncryptedSessionStore(inner, Keyring(parse_keys(new_key_text("kc"))))
    )
    with pytest.raises(SessionValidationError) as caught:
        await other.create("bob", session_id="order-42")
    assert caught.value.field == "session_id" and "already exists" in str(caught.value)
