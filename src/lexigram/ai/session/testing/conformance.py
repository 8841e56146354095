"""The store conformance suite: every :class:`SessionStore` must pass it.

Use it for your own backend by subclassing in a pytest module and providing a
``store_factory`` fixture (an async callable returning a new, initialised store on
one test-private namespace each time it is called)::

    import pytest
    from lexigram.ai.session.testing import StoreConformanceSuite

    class TestMyStore(StoreConformanceSuite):
        @pytest.fixture
        async def store_factory(self):
            stores = []
            async def make():
                store = MyStore(namespace="test-123")
                await store.initialize()
                stores.append(store)
                return store
            yield make
            for s in stores:
                await s.close()

Optionally override ``corrupt_session`` to return an async callable
``(store, session_id)`` that damages the stored header, so the suite can check that
a corrupt record raises :class:`CorruptRecordError` naming the session. The tests
need ``pytest-asyncio`` (``asyncio_mode = "auto"``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lexigram.contracts.ai.session import (
    SessionCheckpoint,
    SessionState,
    SessionStatus,
    SessionTurn,
)

from lexigram.ai.session.exceptions import (
    CheckpointNotFoundError,
    CorruptRecordError,
    DuplicateTurnError,
    SessionCapacityError,
    SessionClosedError,
    SessionExpiredError,
    SessionNotFoundError,
    SessionTransitionError,
    SessionValidationError,
    TurnLimitReachedError,
)
from lexigram.ai.session.stores.base import SessionPatch, SessionStore
from lexigram.ai.session.validation import MAX_ID_LENGTH, MAX_SAFE_INT

__all__ = ["FakeClock", "StoreConformanceSuite", "make_state", "make_turn"]

StoreFactory = Callable[[], Awaitable[SessionStore]]
Corrupter = Callable[[SessionStore, str], Awaitable[None]]

_A, _S, _C, _E = (
    SessionStatus.ACTIVE,
    SessionStatus.SUSPENDED,
    SessionStatus.CLOSED,
    SessionStatus.EXPIRED,
)
_T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime = _T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += timedelta(seconds=seconds)


def make_turn(
    n: int = 0,
    *,
    turn_id: str | None = None,
    role: str = "user",
    content: str | None = None,
    tokens: int = 1,
    cost: float = 0.5,
    **extra: Any,
) -> SessionTurn:
    """A turn with predictable fields (``n`` numbers the content and timestamp)."""
    return SessionTurn(
        turn_id=turn_id or f"t{n}-{uuid.uuid4().hex[:8]}",
        role=role,
        content=content if content is not None else f"message {n}",
        timestamp=_T0 + timedelta(seconds=n),
        tokens_used=tokens,
        cost=cost,
        **extra,
    )


def make_state(user_id: str = "alice", **fields: Any) -> SessionState:
    """A new ACTIVE session header with a random id."""
    base: dict[str, Any] = {
        "session_id": "s-" + uuid.uuid4().hex,
        "user_id": user_id,
        "status": _A,
        "created_at": _T0,
        "updated_at": _T0,
    }
    base.update(fields)
    return SessionState(**base)


def _ids(turns: list[SessionTurn]) -> list[str]:
    return [t.turn_id for t in turns]


class StoreConformanceSuite:
    """Behaviour every session store must have (see ``stores/base.py``)."""

    # ------------------------------------------------------------- fixtures
    @pytest.fixture
    def corrupt_session(self) -> Corrupter | None:
        """Override to return a callable that damages a stored session header."""
        return None

    @pytest.fixture
    async def store(self, store_factory: StoreFactory) -> SessionStore:
        """A store with a fake clock at 2026-01-01T12:00Z."""
        store = await store_factory()
        store.clock = FakeClock()
        return store

    @staticmethod
    def clock(store: SessionStore) -> FakeClock:
        """The fake clock of ``store``."""
        assert isinstance(store.clock, FakeClock)
        return store.clock

    async def _session(
        self, store: SessionStore, user: str = "alice", **fields: Any
    ) -> SessionState:
        state = make_state(user, **fields)
        await store.create_session(state)
        return state

    async def _append(
        self, store: SessionStore, sid: str, count: int, start: int = 0
    ) -> list[SessionTurn]:
        turns = [make_turn(start + i) for i in range(count)]
        for turn in turns:
            await store.append_turns(sid, [turn])
        return turns

    # ---------------------------------------------------------- create / read
    async def test_create_and_load_round_trip_every_field(self, store: SessionStore) -> None:
        state = make_state(
            "ünïcødé-user 🚀",
            metadata={"channel": "web", "nested": {"a": [1, 2.5, None, True]}},
            active_tools=["search", "calc"],
            active_skills=["summarize"],
            system_prompt="Be brief. — ✓",
            variables={"lang": "日本語", "count": 3},
        )
        await store.create_session(state)
        big = "x" * 200_000 + " ünïcødé 😀 \u0000 end"
        turn = make_turn(
            1,
            content=big,
            tool_calls=[{"name": "search", "arguments": {"q": "naïve"}}],
            skill_results=[{"skill": "summarize", "ok": True}],
            metadata={"agent": "writer", "scores": [0.1, 0.2]},
            model="gpt-x",
            provider="acme",
            tokens=123,
            cost=0.0042,
        )
        await store.append_turns(state.session_id, [turn])
        loaded = await store.load(state.session_id)
        assert loaded is not None
        assert loaded.turns == [turn]
        for name in (
            "user_id",
            "metadata",
            "active_tools",
            "active_skills",
            "system_prompt",
            "variables",
        ):
            assert getattr(loaded, name) == getattr(state, name), name
        assert loaded.created_at == state.created_at
        assert loaded.status == _A
        assert loaded.turn_count == 1
        assert loaded.total_tokens == 123
        assert loaded.total_cost == pytest.approx(0.0042)

    async def test_missing_session_reads_none(self, store: SessionStore) -> None:
        assert await store.load("nope") is None
        assert await store.load_record("nope") is None
        with pytest.raises(SessionNotFoundError):
            await store.get_turns("nope")

    async def test_create_refuses_existing_id(self, store: SessionStore) -> None:
        state = await self._session(store)
        with pytest.raises(SessionValidationError):
            await store.create_session(state)

    # ------------------------------------------------------- caller-chosen ids
    async def test_caller_chosen_id_round_trips(self, store: SessionStore) -> None:
        chosen = f"ticket 42/{{thread}}=é 😀-{uuid.uuid4().hex[:8]}"
        state = await self._session(store, "carol", session_id=chosen)
        await store.append_turns(chosen, [make_turn(1)])
        loaded = await store.load(chosen)
        assert loaded is not None and loaded.session_id == chosen and loaded.turn_count == 1
        page = await store.list_user_sessions("carol")
        assert [s.session_id for s in page.items] == [state.session_id]
        longest = "L" * MAX_ID_LENGTH
        await self._session(store, "carol", session_id=longest)
        record = await store.load_record(longest)
        assert record is not None and record.state.session_id == longest

    async def test_taken_id_is_refused_naming_it(self, store: SessionStore) -> None:
        chosen = "taken-" + uuid.uuid4().hex
        first = await self._session(store, "dora", session_id=chosen, variables={"v": 1})
        await store.append_turns(chosen, [make_turn(1)])
        with pytest.raises(SessionValidationError) as info:
            await store.create_session(make_state("eve", session_id=chosen))
        assert info.value.field == "session_id" and chosen in str(info.value)
        loaded = await store.load(chosen)
        assert loaded is not None
        assert (loaded.user_id, loaded.variables, loaded.turn_count) == ("dora", {"v": 1}, 1)
        assert loaded.created_at == first.created_at
        assert await store.count_live_sessions("eve") == 0

    async def test_tombstoned_id_is_refused_naming_it(self, store: SessionStore) -> None:
        chosen = "purged-" + uuid.uuid4().hex
        await self._session(store, "fred", session_id=chosen)
        await store.transition(chosen, _C, allowed_from=frozenset({_A}))
        self.clock(store).advance(10)
        until = self.clock(store).now + timedelta(hours=1)
        assert await store.purge(chosen, tombstone_until=until)
        with pytest.raises(SessionValidationError) as info:
            await store.create_session(make_state("fred", session_id=chosen))
        assert info.value.field == "session_id" and chosen in str(info.value)
        assert await store.load(chosen) is None
        assert await store.count_live_sessions("fred") == 0

    async def test_concurrent_creates_of_one_id_exactly_one_wins(
        self, store: SessionStore, store_factory: StoreFactory
    ) -> None:
        chosen = "race-" + uuid.uuid4().hex
        others = [await store_factory() for _ in range(3)]
        for other in others:
            other.clock = store.clock
        contenders = [store, *others] * 2
        results = await asyncio.gather(
            *(
                s.create_session(make_state(f"racer{i}", session_id=chosen))
                for i, s in enumerate(contenders)
            ),
            return_exceptions=True,
        )
        winners = [i for i, r in enumerate(results) if not isinstance(r, BaseException)]
        assert len(winners) == 1, results
        for i, result in enumerate(results):
            if i != winners[0]:
                assert isinstance(result, SessionValidationError), result
                assert result.field == "session_id"
        loaded = await store.load(chosen)
        assert loaded is not None and loaded.user_id == f"racer{winners[0]}"
        live = [await store.count_live_sessions(f"racer{i}") for i in range(len(contenders))]
        assert sum(live) == 1

    # ------------------------------------------------------- input validation
    @pytest.mark.parametrize(
        ("fields", "field"),
        [
            ({"session_id": "x" * (MAX_ID_LENGTH + 1)}, "state.session_id"),
            ({"session_id": ""}, "state.session_id"),
            ({"session_id": "bad\x00id"}, "state.session_id"),
            ({"session_id": "bad\ud800"}, "state.session_id"),
            ({"user_id": "u" * 1_000_000}, "state.user_id"),
            ({"user_id": "u\udfff"}, "state.user_id"),
            ({"system_prompt": "p\ud800"}, "state.system_prompt"),
            ({"metadata": {"k": "\ud800"}}, "state.metadata.k"),
            ({"variables": {"k": float("nan")}}, "state.variables.k"),
            ({"variables": {"k": 2**64}}, "state.variables.k"),
            ({"active_tools": ["ok", "\ud800"]}, "state.active_tools[1]"),
        ],
    )
    async def test_unstorable_headers_are_refused_naming_the_field(
        self, store: SessionStore, fields: dict[str, Any], field: str
    ) -> None:
        state = make_state(**{"user_id": "gina", **fields})
        with pytest.raises(SessionValidationError) as info:
            await store.create_session(state)
        assert info.value.field == field
        assert await store.count_live_sessions("gina") == 0
        assert (await store.list_user_sessions("gina")).items == []
        if field != "state.session_id":
            assert await store.load(state.session_id) is None

    @pytest.mark.parametrize(
        ("fields", "field"),
        [
            ({"tokens": 2**63 - 1}, "turns[1].tokens_used"),
            ({"tokens": 2**53 + 1}, "turns[1].tokens_used"),
            ({"tokens": 2**70}, "turns[1].tokens_used"),
            ({"tokens": -1}, "turns[1].tokens_used"),
            ({"cost": float("inf")}, "turns[1].cost"),
            ({"cost": float("nan")}, "turns[1].cost"),
            ({"cost": -0.5}, "turns[1].cost"),
            ({"content": "a\ud800b"}, "turns[1].content"),
            ({"model": "m\udc00"}, "turns[1].model"),
            ({"turn_id": "t" * (MAX_ID_LENGTH + 1)}, "turns[1].turn_id"),
            ({"metadata": {"foo": "\ud800"}}, "turns[1].metadata.foo"),
            ({"metadata": {"foo": float("inf")}}, "turns[1].metadata.foo"),
            ({"tool_calls": [{"args": {"n": 2**64}}]}, "turns[1].tool_calls[0].args.n"),
        ],
    )
    async def test_unstorable_turns_are_refused_and_nothing_written(
        self, store: SessionStore, fields: dict[str, Any], field: str
    ) -> None:
        state = await self._session(store)
        good = make_turn(1, tokens=2, cost=0.25)
        await store.append_turns(state.session_id, [good])
        self.clock(store).advance(5)
        bad = make_turn(2, **fields)
        with pytest.raises(SessionValidationError) as info:
            await store.append_turns(state.session_id, [make_turn(3), bad])
        assert info.value.field == field
        loaded = await store.load(state.session_id)
        assert loaded is not None
        assert loaded.turns == [good]
        assert (loaded.turn_count, loaded.total_tokens, loaded.total_cost) == (1, 2, 0.25)
        assert loaded.updated_at == _T0

    async def test_totals_past_the_limits_are_refused(self, store: SessionStore) -> None:
        state = await self._session(store)
        await store.append_turns(state.session_id, [make_turn(1, tokens=MAX_SAFE_INT - 1)])
        with pytest.raises(SessionValidationError) as info:
            await store.append_turns(state.session_id, [make_turn(2, tokens=1), make_turn(3)])
        assert info.value.field == "total_tokens"
        await store.append_turns(state.session_id, [make_turn(4, tokens=1, cost=0.0)])
        record = await store.load_record(state.session_id)
        assert record is not None
        assert (record.state.turn_count, record.state.total_tokens) == (2, MAX_SAFE_INT)
        other = await self._session(store)
        await store.append_turns(other.session_id, [make_turn(1, tokens=0, cost=1e308)])
        with pytest.raises(SessionValidationError) as info:
            await store.append_turns(other.session_id, [make_turn(2, tokens=0, cost=1e308)])
        assert info.value.field == "total_cost"
        loaded = await store.load(other.session_id)
        assert loaded is not None
        assert (loaded.turn_count, loaded.total_cost) == (1, 1e308)

    async def test_totals_always_equal_the_sums_over_live_turns(self, store: SessionStore) -> None:
        state = await self._session(store)
        costs = [0.25, 1.5, 0.125, 3.0, 0.5]
        turns = [make_turn(i, tokens=10 * i + 1, cost=c) for i, c in enumerate(costs)]
        await store.append_turns(state.session_id, turns[:2])
        for turn in turns[2:]:
            await store.append_turns(state.session_id, [turn])
        await store.pop_turn(state.session_id)
        await store.pop_turn(state.session_id)
        loaded = await store.load(state.session_id)
        assert loaded is not None
        assert loaded.turn_count == len(loaded.turns) == 3
        assert loaded.total_tokens == sum(t.tokens_used for t in loaded.turns)
        assert loaded.total_cost == sum(t.cost for t in loaded.turns)

    async def test_json_values_read_back_as_json(self, store: SessionStore) -> None:
        state = await self._session(store, variables={"t": (1, "a")}, metadata={"n": [(2,)]})
        await store.update_session(state.session_id, SessionPatch(metadata={"p": (3, 4)}))
        await store.append_turns(state.session_id, [make_turn(1, metadata={"m": (5,)})])
        loaded = await store.load(state.session_id)
        assert loaded is not None
        assert loaded.variables == {"t": [1, "a"]} and type(loaded.variables["t"]) is list
        assert loaded.metadata == {"p": [3, 4]} and type(loaded.metadata["p"]) is list
        assert type(loaded.turns[0].metadata["m"]) is list

    async def test_unstorable_patch_is_refused_and_nothing_written(
        self, store: SessionStore
    ) -> None:
        state = await self._session(store, variables={"keep": 1})
        with pytest.raises(SessionValidationError) as info:
            await store.update_session(
                state.session_id, SessionPatch(variables={"k": float("inf")})
            )
        assert info.value.field == "variables.k"
        with pytest.raises(SessionValidationError) as info:
            await store.update_session(state.session_id, SessionPatch(system_prompt="\ud800"))
        assert info.value.field == "system_prompt"
        record = await store.load_record(state.session_id)
        assert record is not None
        assert record.state.variables == {"keep": 1} and record.state.system_prompt is None

    async def test_load_record_reads_no_turns(self, store: SessionStore) -> None:
        state = await self._session(store)
        await self._append(store, state.session_id, 3)
        record = await store.load_record(state.session_id)
        assert record is not None
        assert record.state.turns == []
        assert record.state.turn_count == 3
        assert record.last_seq >= 3

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

    async def test_concurrent_appends_lose_nothing(self, store: SessionStore) -> None:
        state = await self._session(store)
        turns = [make_turn(i) for i in range(200)]
        await asyncio.gather(*(store.append_turns(state.session_id, [t]) for t in turns))
        loaded = await store.load(state.session_id)
        assert loaded is not None
        assert loaded.turn_count == 200
        assert sorted(_ids(loaded.turns)) == sorted(_ids(turns))
        assert loaded.total_tokens == 200

    async def test_append_with_patch_is_one_step(self, store: SessionStore) -> None:
        state = await self._session(store)
        await store.append_turns(
            state.session_id, [make_turn(1)], patch=SessionPatch(variables={"round": 1})
        )
        loaded = await store.load(state.session_id)
        assert loaded is not None
        assert loaded.variables == {"round": 1}
        assert loaded.turn_count == 1

    # ------------------------------------------------------------------ reads
    async def test_get_turns_last_and_paging(self, store: SessionStore) -> None:
        state = await self._session(store)
        turns = await self._append(store, state.session_id, 12)
        assert _ids(await store.get_turns(state.session_id, last=3)) == _ids(turns[-3:])
        assert await store.get_turns(state.session_id, last=0) == []
        assert _ids(await store.get_turns(state.session_id, last=100)) == _ids(turns)
        assert _ids(await store.get_turns(state.session_id)) == _ids(turns)
        collected: list[SessionTurn] = []
        after: int | None = None
        while True:
            page = await store.get_turn_seqs(state.session_id, after_seq=after, limit=5)
            if not page:
                break
            seqs = [s for s, _ in page]
            assert seqs == sorted(seqs)
            collected.extend(t for _, t in page)
            after = seqs[-1]
        assert _ids(collected) == _ids(turns)
        first_five = await store.get_turn_seqs(state.session_id, limit=5)
        rest = await store.get_turns(state.session_id, after_seq=first_five[-1][0])
        assert _ids(rest) == _ids(turns[5:])

    async def test_list_user_sessions_pages_newest_first(self, store: SessionStore) -> None:
        made = []
        for i in range(7):
            self.clock(store).advance(1)
            made.append(await self._session(store, "bob", created_at=_T0 + timedelta(seconds=i)))
        await self._session(store, "carol")
        await store.transition(made[0].session_id, _C, allowed_from=frozenset({_A}))
        seen: list[str] = []
        cursor = None
        for _ in range(10):
            page = await store.list_user_sessions("bob", limit=3, cursor=cursor)
            assert len(page.items) <= 3
            seen.extend(s.session_id for s in page.items)
            assert all(s.turns == [] for s in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == [s.session_id for s in reversed(made)]
        closed = await store.list_user_sessions("bob", status=_C)
        assert [s.session_id for s in closed.items] == [made[0].session_id]
        active = await store.list_user_sessions("bob", status=_A, limit=100)
        assert len(active.items) == 6
        assert await store.count_live_sessions("bob") == 6
        assert await store.count_live_sessions("nobody") == 0

    async def test_contract_list_sessions_and_save(self, store: SessionStore) -> None:
        state = make_state("dave", variables={"k": 1})
        turns = [make_turn(1), make_turn(2)]
        full = replace(state, turns=turns, turn_count=2, total_tokens=2, total_cost=1.0)
        await store.save(full)
        loaded = await store.load(state.session_id)
        assert loaded is not None
        assert _ids(loaded.turns) == _ids(turns)
        assert loaded.variables == {"k": 1}
        replaced = replace(full, turns=[turns[0]], turn_count=1, variables={"k": 2})
        await store.save(replaced)
        loaded = await store.load(state.session_id)
        assert loaded is not None
        assert _ids(loaded.turns) == [turns[0].turn_id]
        assert loaded.variables == {"k": 2}
        listed = await store.list_sessions("dave")
        assert [s.session_id for s in listed] == [state.session_id]
        assert _ids(listed[0].turns) == [turns[0].turn_id]

    # ------------------------------------------------------------ user cap
    async def test_user_cap_is_atomic_under_concurrency(self, store: SessionStore) -> None:
        async def create() -> bool:
            try:
                await store.create_session(make_state("erin"), max_live_per_user=10)
            except SessionCapacityError:
                return False
            return True

        results = await asyncio.gather(*(create() for _ in range(50)))
        assert sum(results) == 10
        assert await store.count_live_sessions("erin") == 10
        page = await store.list_user_sessions("erin", limit=100)
        assert len(page.items) == 10

    async def test_closed_sessions_free_the_user_cap(self, store: SessionStore) -> None:
        first = make_state("frank")
        await store.create_session(first, max_live_per_user=1)
        with pytest.raises(SessionCapacityError):
            await store.create_session(make_state("frank"), max_live_per_user=1)
        await store.transition(first.session_id, _C, allowed_from=frozenset({_A}))
        await store.create_session(make_state("frank"), max_live_per_user=1)

    # ------------------------------------------------------------ transitions
    async def test_transition_compare_and_set(self, store: SessionStore) -> None:
        state = await self._session(store)
        self.clock(store).advance(3)
        record = await store.transition(state.session_id, _S, allowed_from=frozenset({_A}))
        assert record.state.status == _S
        assert record.state.updated_at == self.clock(store).now
        with pytest.raises(SessionTransitionError) as info:
            await store.transition(state.session_id, _S, allowed_from=frozenset({_A}))
        assert info.value.from_status == "suspended"
        await store.transition(state.session_id, _C, allowed_from=frozenset({_A, _S}))
        with pytest.raises(SessionTransitionError):
            await store.transition(state.session_id, _A, allowed_from=frozenset({_S}))
        with pytest.raises(SessionNotFoundError):
            await store.transition("missing", _C, allowed_from=frozenset({_A}))

    async def test_update_session_replaces_fields(self, store: SessionStore) -> None:
        state = await self._session(store, variables={"a": 1}, metadata={"m": 1})
        record = await store.update_session(
            state.session_id,
            SessionPatch(variables={"b": 2}, active_tools=["x"], system_prompt="hi"),
        )
        assert record.state.variables == {"b": 2}
        assert record.state.metadata == {"m": 1}
        assert record.state.active_tools == ["x"]
        assert record.state.system_prompt == "hi"
        record = await store.update_session(
            state.session_id, SessionPatch(clear_system_prompt=True)
        )
        assert record.state.system_prompt is None
        await store.transition(state.session_id, _C, allowed_from=frozenset({_A}))
        with pytest.raises(SessionClosedError):
            await store.update_session(state.session_id, SessionPatch(variables={}))

    # ------------------------------------------------------------------- TTL
    async def test_idle_session_expires(self, store: SessionStore) -> None:
        store.session_ttl = 60
        state = await self._session(store)
        await store.append_turns(state.session_id, [make_turn(1)])
        self.clock(store).advance(59)
        loaded = await store.load(state.session_id)
        assert loaded is not None and loaded.status == _A
        self.clock(store).advance(2)
        loaded = await store.load(state.session_id)
        assert loaded is not None and loaded.status == _E
        record = await store.load_record(state.session_id)
        assert record is not None and record.state.status == _E
        with pytest.raises(SessionExpiredError):
            await store.append_turns(state.session_id, [make_turn(2)])
        with pytest.raises(SessionExpiredError):
            await store.transition(state.session_id, _C, allowed_from=frozenset({_A, _S}))
        assert await store.count_live_sessions("alice") == 0
        assert state.session_id in await store.find_expired()
        marked = await store.mark_expired(state.session_id)
        assert marked is not None and marked.state.status == _E
        assert await store.mark_expired(state.session_id) is None
        assert state.session_id not in await store.find_expired()
        loaded = await store.load(state.session_id)
        assert loaded is not None and loaded.status == _E and loaded.turn_count == 1

    async def test_activity_pushes_the_deadline(self, store: SessionStore) -> None:
        store.session_ttl = 60
        state = await self._session(store)
        for i in range(3):
            self.clock(store).advance(50)
            await store.append_turns(state.session_id, [make_turn(i)])
        assert await store.find_expired() == []
        loaded = await store.load(state.session_id)
        assert loaded is not None and loaded.status == _A

    async def test_concurrent_sweepers_mark_once(self, store: SessionStore) -> None:
        store.session_ttl = 10
        states = [await self._session(store, f"u{i}") for i in range(5)]
        self.clock(store).advance(11)
        results = await asyncio.gather(
            *(store.mark_expired(s.session_id) for s in states for _ in range(4))
        )
        assert sum(r is not None for r in results) == 5

    async def test_mark_expired_batch_expires_only_the_due_once(self, store: SessionStore) -> None:
        store.session_ttl = 60
        due = [await self._session(store, f"due{i}") for i in range(4)]
        closed = await self._session(store, "closed")
        await store.transition(closed.session_id, _C, allowed_from=frozenset({_A}))
        self.clock(store).advance(61)
        now = self.clock(store).now
        fresh = await self._session(store, "fresh", created_at=now, updated_at=now)
        ids = [s.session_id for s in due] + [closed.session_id, fresh.session_id, "missing-id"]
        outcome = await store.mark_expired_batch(ids)
        assert sorted(r.state.session_id for r in outcome.done) == sorted(
            s.session_id for s in due
        )
        assert all(r.state.status == _E for r in outcome.done)
        assert outcome.damaged == [] and outcome.failed == []
        again = await store.mark_expired_batch(ids)
        assert again.done == []
        for state in due:
            record = await store.load_record(state.session_id)
            assert record is not None and record.state.status == _E
        fresh_record = await store.load_record(fresh.session_id)
        assert fresh_record is not None and fresh_record.state.status == _A
        closed_record = await store.load_record(closed.session_id)
        assert closed_record is not None and closed_record.state.status == _C
        assert await store.find_expired() == []
        assert (await store.mark_expired_batch([])).done == []

    async def test_concurrent_batches_expire_each_session_once(self, store: SessionStore) -> None:
        store.session_ttl = 10
        states = [await self._session(store, f"u{i}") for i in range(6)]
        self.clock(store).advance(11)
        ids = [s.session_id for s in states]
        outcomes = await asyncio.gather(
            *(store.mark_expired_batch(ids[i:] + ids[:i]) for i in range(4))
        )
        won = [r.state.session_id for o in outcomes for r in o.done]
        assert sorted(won) == sorted(ids)

    async def test_purge_batch_removes_only_ended_and_tombstones(
        self, store: SessionStore
    ) -> None:
        ended = [await self._session(store, f"e{i}") for i in range(3)]
        for state in ended:
            await store.append_turns(state.session_id, [make_turn(1)])
            await store.create_checkpoint(state.session_id, checkpoint_id="cp-" + uuid.uuid4().hex)
            await store.transition(state.session_id, _C, allowed_from=frozenset({_A}))
        live = await self._session(store, "live")
        until = self.clock(store).now + timedelta(hours=1)
        ids = [s.session_id for s in ended] + [live.session_id, "missing-id"]
        outcome = await store.purge_batch(ids, tombstone_until=until)
        assert sorted(outcome.done) == sorted(s.session_id for s in ended)
        assert outcome.damaged == [] and outcome.failed == []
        assert (await store.purge_batch(ids, tombstone_until=until)).done == []
        for state in ended:
            assert await store.load(state.session_id) is None
            assert await store.list_checkpoint_headers(state.session_id) == []
            with pytest.raises(SessionValidationError):
                await store.create_session(state)
        assert await store.load_record(live.session_id) is not None
        self.clock(store).advance(100)
        assert await store.find_purgeable(older_than=self.clock(store).now) == []
        self.clock(store).advance(3601)
        await store.create_session(ended[0])

    async def test_purge_leaves_a_tombstone(self, store: SessionStore) -> None:
        state = await self._session(store)
        await store.append_turns(state.session_id, [make_turn(1)])
        await store.create_checkpoint(state.session_id, checkpoint_id="cp-" + uuid.uuid4().hex)
        open_state = await self._session(store)
        await store.transition(state.session_id, _C, allowed_from=frozenset({_A}))
        self.clock(store).advance(100)
        purgeable = await store.find_purgeable(older_than=self.clock(store).now)
        assert state.session_id in purgeable
        assert open_state.session_id not in purgeable
        until = self.clock(store).now + timedelta(hours=1)
        assert await store.purge(state.session_id, tombstone_until=until)
        assert not await store.purge(state.session_id, tombstone_until=until)
        assert not await store.purge(open_state.session_id, tombstone_until=until)
        assert await store.load(state.session_id) is None
        assert await store.list_checkpoint_headers(state.session_id) == []
        with pytest.raises(SessionValidationError):
            await store.create_session(state)
        with pytest.raises(SessionNotFoundError):
            await store.save(state)
        self.clock(store).advance(3601)
        await store.create_session(state)

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

    # ------------------------------------------------------------ checkpoints
    async def test_checkpoint_chain_and_headers(self, store: SessionStore) -> None:
        state = await self._session(store, variables={"v": 1})
        await self._append(store, state.session_id, 3)
        cp1, pruned = await store.create_checkpoint(
            state.session_id, checkpoint_id="a-" + uuid.uuid4().hex, metadata={"label": "one"}
        )
        assert pruned == []
        assert cp1.parent_checkpoint_id is None
        assert len(cp1.state.turns) == 3 and cp1.state.turn_count == 3
        assert cp1.metadata == {"label": "one"}
        await self._append(store, state.session_id, 2, start=10)
        cp2, _ = await store.create_checkpoint(
            state.session_id, checkpoint_id="b-" + uuid.uuid4().hex, include_turns=False
        )
        assert cp2.parent_checkpoint_id == cp1.checkpoint_id
        assert cp2.state.turns == [] and cp2.state.turn_count == 5
        record = await store.load_record(state.session_id)
        assert record is not None and record.state.checkpoint_id == cp2.checkpoint_id
        headers = await store.list_checkpoint_headers(state.session_id)
        assert [c.checkpoint_id for c in headers] == [cp1.checkpoint_id, cp2.checkpoint_id]
        full = await store.list_checkpoints(state.session_id)
        assert [len(c.state.turns) for c in full] == [3, 5]
        loaded = await store.load_checkpoint(cp2.checkpoint_id)
        assert loaded is not None and len(loaded.state.turns) == 5
        assert loaded.state.variables == {"v": 1}
        assert await store.load_checkpoint("missing") is None

    async def test_time_travel_keeps_every_checkpoint_restorable(self, store: SessionStore) -> None:
        state = await self._session(store)
        sid = state.session_id
        turns = await self._append(store, sid, 10)
        cp_a, _ = await store.create_checkpoint(sid, checkpoint_id="A-" + uuid.uuid4().hex)
        await store.update_session(sid, SessionPatch(variables={"at": "B"}))
        turns += await self._append(store, sid, 10, start=10)
        cp_b, _ = await store.create_checkpoint(sid, checkpoint_id="B-" + uuid.uuid4().hex)
        turns += await self._append(store, sid, 10, start=20)
        restored = await store.restore_checkpoint(cp_a.checkpoint_id)
        assert _ids(restored.turns) == _ids(turns[:10])
        assert restored.turn_count == 10 and restored.total_tokens == 10
        assert restored.variables == {}
        assert restored.status == _A
        assert restored.checkpoint_id == cp_a.checkpoint_id
        extra = await self._append(store, sid, 5, start=100)
        state_now = await store.load(sid)
        assert state_now is not None
        assert _ids(state_now.turns) == _ids(turns[:10] + extra)
        restored = await store.restore_checkpoint(cp_b.checkpoint_id)
        assert _ids(restored.turns) == _ids(turns[:20])
        assert restored.turn_count == 20
        assert restored.total_tokens == 20
        assert restored.variables == {"at": "B"}
        again = await store.load(sid)
        assert again is not None and _ids(again.turns) == _ids(turns[:20])
        # a turn id from the abandoned timeline can be used again
        await store.append_turns(sid, [turns[25]])
        with pytest.raises(CheckpointNotFoundError):
            await store.restore_checkpoint("missing")

    async def test_restore_refused_on_closed_session(self, store: SessionStore) -> None:
        state = await self._session(store)
        cp, _ = await store.create_checkpoint(
            state.session_id, checkpoint_id="c-" + uuid.uuid4().hex
        )
        await store.transition(state.session_id, _C, allowed_from=frozenset({_A}))
        with pytest.raises(SessionClosedError):
            await store.restore_checkpoint(cp.checkpoint_id)

    async def test_restore_reactivates_suspended(self, store: SessionStore) -> None:
        state = await self._session(store)
        await self._append(store, state.session_id, 2)
        cp, _ = await store.create_checkpoint(
            state.session_id, checkpoint_id="s-" + uuid.uuid4().hex
        )
        await store.transition(state.session_id, _S, allowed_from=frozenset({_A}))
        restored = await store.restore_checkpoint(cp.checkpoint_id)
        assert restored.status == _A and restored.turn_count == 2

    async def test_checkpoint_retention_prunes_oldest(self, store: SessionStore) -> None:
        state = await self._session(store)
        made = []
        for i in range(5):
            await store.append_turns(state.session_id, [make_turn(i)])
            cp, pruned = await store.create_checkpoint(
                state.session_id, checkpoint_id=f"r{i}-" + uuid.uuid4().hex, max_checkpoints=3
            )
            made.append(cp.checkpoint_id)
            assert pruned == ([] if i < 3 else [made[i - 3]])
        headers = await store.list_checkpoint_headers(state.session_id)
        assert [c.checkpoint_id for c in headers] == made[2:]
        assert await store.load_checkpoint(made[0]) is None
        restored = await store.restore_checkpoint(made[2])
        assert restored.turn_count == 3

    async def test_delete_checkpoint_moves_the_head(self, store: SessionStore) -> None:
        state = await self._session(store)
        cp1, _ = await store.create_checkpoint(
            state.session_id, checkpoint_id="d1-" + uuid.uuid4().hex
        )
        cp2, _ = await store.create_checkpoint(
            state.session_id, checkpoint_id="d2-" + uuid.uuid4().hex
        )
        assert await store.delete_checkpoint(cp2.checkpoint_id)
        assert not await store.delete_checkpoint(cp2.checkpoint_id)
        record = await store.load_record(state.session_id)
        assert record is not None and record.state.checkpoint_id == cp1.checkpoint_id

    async def test_contract_checkpoint_round_trip(self, store: SessionStore) -> None:
        state = await self._session(store)
        full = replace(state, turns=[make_turn(1), make_turn(2)], turn_count=2, variables={"x": 1})
        checkpoint = SessionCheckpoint(
            checkpoint_id="inline-" + uuid.uuid4().hex,
            session_id=state.session_id,
            state=full,
            created_at=_T0,
            metadata={"source": "import"},
        )
        await store.save_checkpoint(checkpoint)
        loaded = await store.load_checkpoint(checkpoint.checkpoint_id)
        assert loaded is not None
        assert _ids(loaded.state.turns) == _ids(full.turns)
        assert loaded.state.variables == {"x": 1}
        assert loaded.metadata == {"source": "import"}
        restored = await store.restore_checkpoint(checkpoint.checkpoint_id)
        assert _ids(restored.turns) == _ids(full.turns)

    async def test_checkpoints_listed_by_created_at(self, store: SessionStore) -> None:
        state = await self._session(store)
        stamps = [30, 10, 20]
        ids = []
        for n, offset in enumerate(stamps):
            checkpoint = SessionCheckpoint(
                checkpoint_id=f"order{n}-" + uuid.uuid4().hex,
                session_id=state.session_id,
                state=replace(state, turns=[make_turn(n)], turn_count=1),
                created_at=_T0 + timedelta(seconds=offset),
            )
            await store.save_checkpoint(checkpoint)
            ids.append(checkpoint.checkpoint_id)
        self.clock(store).advance(60)
        made, _ = await store.create_checkpoint(
            state.session_id, checkpoint_id="z-" + uuid.uuid4().hex
        )
        expected = [ids[1], ids[2], ids[0], made.checkpoint_id]
        headers = await store.list_checkpoint_headers(state.session_id)
        assert [c.checkpoint_id for c in headers] == expected
        full = await store.list_checkpoints(state.session_id)
        assert [c.checkpoint_id for c in full] == expected
        assert [c.created_at for c in full] == sorted(c.created_at for c in full)

    # --------------------------------------------------------------- branches
    async def test_fork_from_the_end_and_from_a_checkpoint(self, store: SessionStore) -> None:
        source = await self._session(store, variables={"topic": "x"})
        turns = await self._append(store, source.session_id, 4)
        cp, _ = await store.create_checkpoint(
            source.session_id, checkpoint_id="f-" + uuid.uuid4().hex
        )
        more = await self._append(store, source.session_id, 2, start=10)
        branch = make_state("alice", parent_session_id=source.session_id, branch_name="idea")
        record = await store.fork_session(source.session_id, branch, max_branches=5)
        assert record.state.parent_session_id == source.session_id
        assert record.state.branch_name == "idea"
        assert record.state.turn_count == 6
        assert record.state.variables == {"topic": "x"}
        assert record.fork_seq is not None
        loaded = await store.load(branch.session_id)
        assert loaded is not None and _ids(loaded.turns) == _ids(turns + more)
        new = await self._append(store, branch.session_id, 3, start=50)
        assert _ids(await store.get_turns(branch.session_id, after_seq=record.fork_seq)) == _ids(
            new
        )
        source_now = await store.load(source.session_id)
        assert source_now is not None and source_now.turn_count == 6
        old = make_state("alice", parent_session_id=source.session_id, branch_name="old")
        record = await store.fork_session(source.session_id, old, from_checkpoint=cp.checkpoint_id)
        assert record.state.turn_count == 4
        loaded = await store.load(old.session_id)
        assert loaded is not None and _ids(loaded.turns) == _ids(turns)
        branches = await store.list_branches(source.session_id)
        assert [b.state.session_id for b in branches] == [branch.session_id, old.session_id]
        with pytest.raises(CheckpointNotFoundError):
            await store.fork_session(
                source.session_id,
                make_state("alice", parent_session_id=source.session_id, branch_name="z"),
                from_checkpoint="missing",
            )

    async def test_branch_limit_counts_forks_of_the_source(self, store: SessionStore) -> None:
        source = await self._session(store)
        for i in range(2):
            await store.fork_session(
                source.session_id,
                make_state("alice", parent_session_id=source.session_id, branch_name=f"b{i}"),
                max_branches=2,
            )
        with pytest.raises(SessionCapacityError):
            await store.fork_session(
                source.session_id,
                make_state("alice", parent_session_id=source.session_id, branch_name="b2"),
                max_branches=2,
            )
        other = await self._session(store)
        await store.fork_session(
            other.session_id,
            make_state("alice", parent_session_id=other.session_id, branch_name="ok"),
            max_branches=2,
        )

    async def test_fork_of_missing_session(self, store: SessionStore) -> None:
        with pytest.raises(SessionNotFoundError):
            await store.fork_session(
                "missing", make_state("alice", parent_session_id="missing", branch_name="b")
            )

    # ---------------------------------------------------------------- delete
    async def test_delete_removes_everything(self, store: SessionStore) -> None:
        state = await self._session(store)
        await self._append(store, state.session_id, 2)
        cp, _ = await store.create_checkpoint(
            state.session_id, checkpoint_id="x-" + uuid.uuid4().hex
        )
        await store.delete(state.session_id)
        assert await store.load(state.session_id) is None
        assert await store.load_checkpoint(cp.checkpoint_id) is None
        assert await store.count_live_sessions("alice") == 0
        assert (await store.list_user_sessions("alice")).items == []
        await store.delete(state.session_id)  # unknown ids are ignored

    # ----------------------------------------------------------- persistence
    async def test_data_survives_a_new_store_instance(
        self, store: SessionStore, store_factory: StoreFactory
    ) -> None:
        state = await self._session(store, variables={"keep": True})
        turns = await self._append(store, state.session_id, 5)
        cp, _ = await store.create_checkpoint(
            state.session_id, checkpoint_id="p-" + uuid.uuid4().hex
        )
        other = await store_factory()
        other.clock = store.clock
        loaded = await other.load(state.session_id)
        assert loaded is not None
        assert loaded.turns == turns
        assert loaded.variables == {"keep": True}
        assert (await other.load_checkpoint(cp.checkpoint_id)) is not None
        await other.append_turns(state.session_id, [make_turn(99)])
        again = await store.load(state.session_id)
        assert again is not None and again.turn_count == 6

    async def test_returned_values_are_not_aliased(self, store: SessionStore) -> None:
        state = await self._session(store, variables={"a": {"b": 1}})
        await store.append_turns(state.session_id, [make_turn(1, metadata={"k": [1]})])
        loaded = await store.load(state.session_id)
        assert loaded is not None
        loaded.turns.append(make_turn(2))
        loaded.turns[0].metadata["k"].append(2)
        loaded.variables["a"]["b"] = 99
        loaded.active_tools.append("evil")
        again = await store.load(state.session_id)
        assert again is not None
        assert len(again.turns) == 1
        assert again.turns[0].metadata == {"k": [1]}
        assert again.variables == {"a": {"b": 1}}
        assert again.active_tools == []

    async def test_corrupt_record_names_the_session(
        self, store: SessionStore, corrupt_session: Corrupter | None
    ) -> None:
        if corrupt_session is None:
            pytest.skip("this backend keeps live objects; nothing can be corrupted")
        state = await self._session(store)
        await store.append_turns(state.session_id, [make_turn(1)])
        await corrupt_session(store, state.session_id)
        with pytest.raises(CorruptRecordError) as info:
            await store.load(state.session_id)
        assert state.session_id in str(info.value)
