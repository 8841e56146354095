"""``append_turns_counted``: an append whose reply is read only for its counters.

``SessionManagerImpl.add_turn`` and ``add_message`` return nothing of the header, so
over an encrypting store they do not open its sealed metadata, variables and system
prompt on every turn. The reply still carries ids, status and counters; a reply that
closed the session (the turn cap) is opened whole; ``add_turns`` still returns the
whole opened header. Each behaviour runs over every backend on its real server.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
from lexigram.contracts.ai.session import SessionStatus

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.stores.encrypted.store import EncryptedSessionStore
from lexigram.ai.session.stores.in_memory import InMemorySessionStore

from ..stores.backends import BackendSpec
from .helpers import PLAIN, header, keyring
from .helpers import mixed_turn as _turn

PRIVATE = {
    "metadata": {"customer": "Ada Lovelace"},
    "variables": {"plan": "gold"},
    "system_prompt": "You help Ada.",
}


@pytest.mark.parametrize("spec", PLAIN)
async def test_the_reply_carries_counters_and_nothing_private(spec: BackendSpec) -> None:
    async with spec.open() as factory:
        store = EncryptedSessionStore(await factory(), keyring("k1"))
        await store.create_session(header("ca", **PRIVATE))
        turns = [_turn(1), _turn(2)]
        result = await store.append_turns_counted("ca", turns, max_turns=10)
        state = result.record.state
        assert (state.session_id, state.user_id) == ("ca", "ivy")
        assert state.status == SessionStatus.ACTIVE
        assert state.turn_count == 2 and result.first_seq == 1 and not result.closed_by_cap
        assert state.total_tokens == sum(t.tokens_used for t in turns)
        assert (state.metadata, state.variables, state.system_prompt) == ({}, {}, None)
        stored = await store.load("ca")
        assert stored is not None
        assert stored.metadata == PRIVATE["metadata"]
        assert stored.variables == PRIVATE["variables"]
        assert stored.system_prompt == PRIVATE["system_prompt"]
        assert stored.turns == turns


@pytest.mark.parametrize("spec", PLAIN)
async def test_a_reply_that_closes_the_session_is_opened_whole(spec: BackendSpec) -> None:
    async with spec.open() as factory:
        store = EncryptedSessionStore(await factory(), keyring("k1"))
        await store.create_session(header("cc", **PRIVATE))
        await store.append_turns_counted("cc", [_turn(1)], max_turns=2)
        result = await store.append_turns_counted("cc", [_turn(2)], max_turns=2)
        state = result.record.state
        assert result.closed_by_cap and state.status == SessionStatus.CLOSED
        assert state.metadata == PRIVATE["metadata"]
        assert state.variables == PRIVATE["variables"]
        assert state.system_prompt == PRIVATE["system_prompt"]


async def test_a_plaintext_session_and_an_unguarded_inner_store_reply_whole() -> None:
    class Unguarded(InMemorySessionStore):
        supports_key_guard: ClassVar[bool] = False

    inner = InMemorySessionStore()
    await inner.create_session(header("plain", **PRIVATE))  # written before encryption
    store = EncryptedSessionStore(inner, keyring("k1"))
    result = await store.append_turns_counted("plain", [_turn(1)])
    assert result.record.state.metadata == PRIVATE["metadata"]
    unguarded = EncryptedSessionStore(Unguarded(), keyring("k1"))
    await unguarded.create_session(header("u", **PRIVATE))
    result = await unguarded.append_turns_counted("u", [_turn(1)])
    assert result.record.state.metadata == PRIVATE["metadata"]
    assert result.record.state.turn_count == 1


async def test_the_base_store_replies_as_append_turns() -> None:
    store = InMemorySessionStore()
    await store.create_session(header("b", **PRIVATE))
    result = await store.append_turns_counted("b", [_turn(1)], max_turns=5)
    assert result.record.state.metadata == PRIVATE["metadata"]
    assert result.record.state.variables == PRIVATE["variables"]
    assert result.record.state.turn_count == 1 and result.first_seq == 1


@pytest.mark.parametrize("spec", PLAIN)
async def test_the_manager_appends_counted_and_add_turns_still_returns_the_header(
    spec: BackendSpec,
) -> None:
    async with spec.open() as factory:
        store = EncryptedSessionStore(await factory(), keyring("k1"))
        manager = SessionManagerImpl(
            store, SessionConfig(auto_checkpoint_interval=None, max_turns_per_session=3)
        )
        created = await manager.create("ivy", **PRIVATE)
        sid = created.session_id
        assert await manager.add_turn(sid, _turn(1)) is None
        await manager.add_message(sid, "user", "hello")
        after = await manager.get_state(sid)
        assert after is not None and after.turn_count == 2
        assert after.metadata == PRIVATE["metadata"]
        again = await manager.create("ivy", **PRIVATE)
        state = await manager.add_turns(again.session_id, [_turn(5)])
        assert state.metadata == PRIVATE["metadata"]
        assert state.variables == PRIVATE["variables"]
        assert state.system_prompt == PRIVATE["system_prompt"]
