"""The whole-state reads derived once in ``SessionStore`` pass the conformance suite.

``load`` and ``list_sessions`` are implemented in the base class from the atomic
operations, so a new backend need not write them. Here the in-memory store is run with
its own versions replaced by the derived ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from lexigram.ai.session.stores.base import SessionStore
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from lexigram.ai.session.testing import FakeClock, StoreConformanceSuite, make_state, make_turn


class DerivedReads(InMemorySessionStore):
    """The in-memory store with the base class's derived whole-state reads."""

    load = SessionStore.load
    list_sessions = SessionStore.list_sessions


class TestDerivedWholeStateReads(StoreConformanceSuite):
    """Every test of the suite on the derived reads."""

    @pytest.fixture
    async def store_factory(self) -> AsyncIterator[Callable[[], Awaitable[SessionStore]]]:
        store = DerivedReads()
        await store.initialize()

        async def make() -> SessionStore:
            return store

        yield make
        await store.close()


async def test_derived_reads_match_the_stores_own() -> None:
    own, derived = InMemorySessionStore(), DerivedReads()
    for store in (own, derived):
        store.clock = FakeClock()
        for n in range(3):
            state = make_state("carol", session_id=f"s{n}")
            await store.create_session(state)
            turns = [make_turn(n, turn_id=f"a{n}"), make_turn(n, turn_id=f"b{n}")]
            await store.append_turns(state.session_id, turns)
    assert await derived.list_sessions("carol") == await own.list_sessions("carol")
    assert await derived.load("s1") == await own.load("s1")
    assert await derived.load("missing") is None
    assert [s.session_id for s in await derived.list_sessions("carol")] == ["s0", "s1", "s2"]
