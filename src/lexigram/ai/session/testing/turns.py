"""The conformance tests of one capability.

Turns: append (caps, duplicates, concurrency, patches), pop and clear.
"""


from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest

from lexigram.ai.session.exceptions import (
    DataKeyChangedError,
    DuplicateTurnError,
    SessionCapacityError,
    SessionClosedError,
    SessionExpiredError,
    SessionNotFoundError,
    SessionTransitionError,
    TurnLimitReachedError,
)
from lexigram.ai.session.stores.base import KEY_ENVELOPE_FIELD, SessionPatch, SessionStore
from lexigram.ai.session.testing.support import (
    _A,
    _C,
    _S,
    StoreFactory,
    SuiteBase,
    _ids,
    make_turn,
)

__all__ = ["TurnsSuite"]


class TurnsSuite(SuiteBase):
    """Turns: append (caps, duplicates, concurrency, patches), pop and clear."""

    # ----------------------------------------------------------------- append
    async def test_append_updates_counters_and_time(self, store: SessionStore) -> None:
        state = await self._session(store)
        self.clock(store).advance(5)
        result = await store.append_turns(state.session_id, [make_turn(1, tokens=10, cost=1.25)])
        assert result.record.state.turn_count == 1
        assert result.record.state.total_tokens == 10
        assert result.record.state.total_cost == pytest.approx(1.25)
        assert result.record.state.updated_at == self.clock(store).now
        assert not result.closed_by_cap
        batch = [make_turn(2, tokens=1, cost=0.25), make_turn(3, tokens=2, cost=0.5)]
        result = await store.append_turns(state.session_id, batch)
        assert result.record.state.turn_count == 3
        assert result.record.state.total_tokens == 13
        assert result.record.state.total_cost == pytest.approx(2.0)
        assert result.first_seq > 1

    async def test_append_to_missing_session(self, store: SessionStore) -> None:
        with pytest.raises(SessionNotFoundError):
            await store.append_turns("missing", [make_turn(1)])

    async def test_empty_append_only_touches(self, store: SessionStore) -> None:
        state = await self._session(store)
        first = make_turn(1, tokens=3, cost=0.5)
        await store.append_turns(state.session_id, [first])
        self.clock(store).advance(5)
        result = await store.append_turns(
            state.session_id, [], patch=SessionPatch(variables={"seen": True})
        )
        assert result.record.state.turn_count == 1
        assert result.record.state.total_tokens == 3
        assert result.record.state.updated_at == self.clock(store).now
        assert not result.closed_by_cap
        loaded = await store.load(state.session_id)
        assert loaded is not None
        assert _ids(loaded.turns) == [first.turn_id]
        assert loaded.variables == {"seen": True}
        with pytest.raises(SessionNotFoundError):
            await store.append_turns("missing", [])

    async def test_duplicate_turn_id_refused_and_nothing_written(self, store: SessionStore) -> None:
        state = await self._session(store)
        first = make_turn(1, turn_id="same")
        await store.append_turns(state.session_id, [first])
        with pytest.raises(DuplicateTurnError):
            await store.append_turns(state.session_id, [make_turn(2), make_turn(3, turn_id="same")])
        with pytest.raises(DuplicateTurnError):
            await store.append_turns(
                state.session_id, [make_turn(4, turn_id="x"), make_turn(5, turn_id="x")]
            )
        loaded = await store.load(state.session_id)
        assert loaded is not None
        assert _ids(loaded.turns) == ["same"]
        assert loaded.turn_count == 1

    async def test_a_repeat_inside_the_batch_is_named_before_a_held_id(
        self, store: SessionStore
    ) -> None:
        state = await self._session(store)
        await store.append_turns(state.session_id, [make_turn(1, turn_id="held")])
        batch = [make_turn(2, turn_id="held"), make_turn(3, turn_id="twice"),
                 make_turn(4, turn_id="twice")]  # fmt: skip
        with pytest.raises(DuplicateTurnError) as info:
            await store.append_turns(state.session_id, batch)
        assert info.value.turn_id == "twice"
        with pytest.raises(DuplicateTurnError) as info:
            await store.append_turns(state.session_id, batch[:2])
        assert info.value.turn_id == "held"

    async def test_turn_cap_closes_then_refuses(self, store: SessionStore) -> None:
        state = await self._session(store)
        await store.append_turns(state.session_id, [make_turn(1), make_turn(2)], max_turns=3)
        with pytest.raises(SessionCapacityError):
            await store.append_turns(state.session_id, [make_turn(3), make_turn(4)], max_turns=3)
        result = await store.append_turns(state.session_id, [make_turn(5)], max_turns=3)
        assert result.closed_by_cap
        assert result.record.state.status == _C
        with pytest.raises(TurnLimitReachedError):
            await store.append_turns(state.session_id, [make_turn(6)], max_turns=3)
        loaded = await store.load(state.session_id)
        assert loaded is not None
        assert loaded.turn_count == 3
        assert len(loaded.turns) == 3

    async def test_closed_and_suspended_refuse_turns(self, store: SessionStore) -> None:
        state = await self._session(store)
        await store.transition(state.session_id, _S, allowed_from=frozenset({_A}))
        with pytest.raises(SessionTransitionError):
            await store.append_turns(state.session_id, [make_turn(1)])
        await store.transition(state.session_id, _A, allowed_from=frozenset({_S}))
        await store.append_turns(state.session_id, [make_turn(2)])
        await store.transition(state.session_id, _C, allowed_from=frozenset({_A, _S}))
        with pytest.raises(SessionClosedError):
            await store.append_turns(state.session_id, [make_turn(3)])
        loaded = await store.load(state.session_id)
        assert loaded is not None and loaded.turn_count == 1

    async def test_counted_append_is_the_same_append(self, store: SessionStore) -> None:
        """``append_turns_counted``: same checks, same counters, same stored turns."""
        state = await self._session(store, metadata={"topic": "billing"})
        with pytest.raises(SessionNotFoundError):
            await store.append_turns_counted("missing", [make_turn(1)])
        batch = [make_turn(1, turn_id="t1", tokens=4, cost=0.25), make_turn(2, turn_id="t2")]
        result = await store.append_turns_counted(state.session_id, batch, max_turns=3)
        header = result.record.state
        assert (header.session_id, header.user_id) == (state.session_id, state.user_id)
        assert header.status == _A and header.turn_count == 2 and header.total_tokens == 5
        assert header.total_cost == pytest.approx(0.75) and result.first_seq >= 1
        with pytest.raises(DuplicateTurnError):
            await store.append_turns_counted(
                state.session_id, [make_turn(2, turn_id="t2")], max_turns=3
            )
        closing = await store.append_turns_counted(
            state.session_id, [make_turn(3, turn_id="t3")], max_turns=3
        )
        assert closing.closed_by_cap and closing.record.state.status == _C
        assert closing.record.state.metadata == state.metadata
        with pytest.raises(TurnLimitReachedError):
            await store.append_turns_counted(state.session_id, [make_turn(4)], max_turns=3)
        loaded = await store.load(state.session_id)
        assert loaded is not None and _ids(loaded.turns) == ["t1", "t2", "t3"]

    async def test_concurrent_appends_lose_nothing(self, store: SessionStore) -> None:
        state = await self._session(store)
        turns = [make_turn(i) for i in range(200)]
        await asyncio.gather(*(store.append_turns(state.session_id, [t]) for t in turns))
        loaded = await store.load(state.session_id)
        assert loaded is not None
        assert loaded.turn_count == 200
        assert sorted(_ids(loaded.turns)) == sorted(_ids(turns))
        assert loaded.total_tokens == 200

    async def test_concurrent_appends_through_two_instances_lose_nothing(
        self, store: SessionStore, store_factory: StoreFactory
    ) -> None:
        """Two store instances on one namespace stand for two processes: a lock held in
        one instance only does not make an append atomic."""
        other = await store_factory()
        if other is not store:
            other.clock = store.clock
        state = await self._session(store)
        turns = [make_turn(i) for i in range(120)]
        await asyncio.gather(
            *(
                (store if i % 2 else other).append_turns(state.session_id, [t])
                for i, t in enumerate(turns)
            )
        )
        for reader in (store, other):
            loaded = await reader.load(state.session_id)
            assert loaded is not None
            assert loaded.turn_count == 120 and loaded.total_tokens == 120
            assert sorted(_ids(loaded.turns)) == sorted(_ids(turns))

    async def test_append_with_patch_is_one_step(self, store: SessionStore) -> None:
        state = await self._session(store)
        await store.append_turns(
            state.session_id, [make_turn(1)], patch=SessionPatch(variables={"round": 1})
        )
        loaded = await store.load(state.session_id)
        assert loaded is not None
        assert loaded.variables == {"round": 1}
        assert loaded.turn_count == 1

    # ---------------------------------------------------------- pop / clear
    async def test_pop_and_clear_turns(self, store: SessionStore) -> None:
        state = await self._session(store)
        turns = [make_turn(i, tokens=i + 1, cost=0.5) for i in range(4)]
        await store.append_turns(state.session_id, turns)
        popped = await store.pop_turn(state.session_id)
        assert popped == turns[-1]
        record = await store.load_record(state.session_id)
        assert record is not None
        assert record.state.turn_count == 3
        assert record.state.total_tokens == 1 + 2 + 3
        assert record.state.total_cost == pytest.approx(1.5)
        await store.append_turns(state.session_id, [turns[-1]])  # its id is free again
        assert await store.clear_turns(state.session_id) == 4
        record = await store.load_record(state.session_id)
        assert (
            record is not None and record.state.turn_count == 0 and record.state.total_tokens == 0
        )
        assert await store.get_turns(state.session_id) == []
        assert await store.pop_turn(state.session_id) is None
        await store.append_turns(state.session_id, [turns[0]])
        assert _ids(await store.get_turns(state.session_id)) == [turns[0].turn_id]

    async def test_pop_and_clear_need_a_live_session_that_exists(
        self, store: SessionStore
    ) -> None:
        """A closed or expired session's history is not removed, a missing one is named."""
        store.session_ttl = 60
        closed: list[str] = []
        lapsed: list[str] = []
        for _ in range(2):  # one of each for pop_turn, one for clear_turns
            for made in (closed, lapsed):
                state = await self._session(store)
                await self._append(store, state.session_id, 2)
                made.append(state.session_id)
        for sid in closed:
            await store.transition(sid, _C, allowed_from=frozenset({_A}))
        self.clock(store).advance(61)  # the others are past their deadline now
        for i, op in enumerate(("pop_turn", "clear_turns")):
            with pytest.raises(SessionNotFoundError):
                await getattr(store, op)("missing-" + uuid.uuid4().hex)
            with pytest.raises(SessionClosedError):
                await getattr(store, op)(closed[i])
            with pytest.raises(SessionExpiredError):
                await getattr(store, op)(lapsed[i])
        for sid in closed + lapsed:
            loaded = await store.load(sid)
            assert loaded is not None and loaded.turn_count == 2 and len(loaded.turns) == 2

    async def test_pop_and_clear_refuse_a_suspended_session(self, store: SessionStore) -> None:
        """A ``SUSPENDED`` session's history is not removed: ``SessionTransitionError``
        (as for an append), nothing changed; once active again both work."""
        state = await self._session(store)
        sid = state.session_id
        turns = await self._append(store, sid, 2)
        await store.transition(sid, _S, allowed_from=frozenset({_A}))
        for op in ("pop_turn", "clear_turns"):
            with pytest.raises(SessionTransitionError) as info:
                await getattr(store, op)(sid)
            assert info.value.from_status == "suspended", op
        loaded = await store.load(sid)
        assert loaded is not None and loaded.status == _S
        assert _ids(loaded.turns) == _ids(turns) and loaded.turn_count == 2
        await store.transition(sid, _A, allowed_from=frozenset({_S}))
        assert await store.pop_turn(sid) == turns[-1]
        assert await store.clear_turns(sid) == 1

    async def test_a_write_sets_updated_at_to_now_never_back_in_time(
        self, store: SessionStore
    ) -> None:
        """Every write sets ``updated_at`` to now, but keeps the stored one when that is
        later (another writer's clock ran ahead): time only moves forward."""
        state = await self._session(store)
        sid = state.session_id
        cp, _ = await store.create_checkpoint(sid, checkpoint_id="tb-" + uuid.uuid4().hex)
        clock = self.clock(store)
        clock.advance(600)
        ahead = clock.now
        result = await store.append_turns(sid, [make_turn(1)])
        assert result.record.state.updated_at == ahead
        clock.advance(-300)  # this writer's clock is five minutes behind the last one
        writes: dict[str, Callable[[], Awaitable[object]]] = {
            "append_turns": lambda: store.append_turns(sid, [make_turn(2), make_turn(3)]),
            "append_turns([])": lambda: store.append_turns(
                sid, [], patch=SessionPatch(variables={"v": 1})
            ),
            "update_session": lambda: store.update_session(
                sid, SessionPatch(metadata={"m": 1})
            ),
            "transition(suspend)": lambda: store.transition(
                sid, _S, allowed_from=frozenset({_A})
            ),
            "transition(resume)": lambda: store.transition(
                sid, _A, allowed_from=frozenset({_S})
            ),
            "pop_turn": lambda: store.pop_turn(sid),
            "clear_turns": lambda: store.clear_turns(sid),
            "restore_checkpoint": lambda: store.restore_checkpoint(cp.checkpoint_id),
        }
        for name, write in writes.items():
            await write()
            record = await store.load_record(sid)
            assert record is not None
            assert record.state.updated_at == ahead, name
        loaded = await store.load(sid)
        assert loaded is not None and loaded.updated_at == ahead
        await store.append_turns(sid, [make_turn(4)])  # something for pop_turn to take
        clock.advance(300)  # this writer's clock catches up
        for name, write in writes.items():
            clock.advance(60)  # now after every stored time: the write's own is kept
            await write()
            record = await store.load_record(sid)
            assert record is not None
            assert record.state.updated_at == clock.now, name

    async def test_a_key_guard_is_honoured_when_the_store_says_so(
        self, store: SessionStore
    ) -> None:
        """``supports_key_guard``: a write under another key envelope writes nothing."""
        if not store.supports_key_guard:
            pytest.skip("the store does not guard writes by key")
        envelope = "v1.k1.b3duZXI.c2VhbGVk"
        state = await self._session(store, metadata={KEY_ENVELOPE_FIELD: envelope})
        sid = state.session_id
        wrong = envelope + "x"
        with pytest.raises(DataKeyChangedError):
            await store.append_turns(sid, [make_turn(1)], key_guard=wrong)
        with pytest.raises(DataKeyChangedError):
            await store.append_turns(
                sid, [make_turn(2), make_turn(3)], patch=SessionPatch(variables={"v": 1}),
                key_guard=wrong,
            )
        with pytest.raises(DataKeyChangedError):
            await store.update_session(sid, SessionPatch(variables={"v": 2}), key_guard=wrong)
        with pytest.raises(DataKeyChangedError):
            await store.create_checkpoint(sid, checkpoint_id="kg-" + sid, key_guard=wrong)
        record = await store.load_record(sid)
        assert record is not None
        assert record.state.turn_count == 0 and record.state.variables == {}
        assert await store.list_checkpoint_headers(sid) == []
        done = await store.append_turns(sid, [make_turn(4)], key_guard=envelope)
        assert done.record.state.turn_count == 1
