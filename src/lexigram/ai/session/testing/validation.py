"""The conformance tests of one capability.

Input validation: what every backend refuses, naming the same field, before writing.
"""


from __future__ import annotations

from typing import Any

import pytest

from lexigram.ai.session.exceptions import (
    SessionValidationError,
)
from lexigram.ai.session.stores.base import SessionPatch, SessionStore
from lexigram.ai.session.testing.support import (
    _T0,
    SuiteBase,
    make_state,
    make_turn,
)
from lexigram.ai.session.validation import MAX_ID_LENGTH, MAX_SAFE_INT

__all__ = ["ValidationSuite"]


class ValidationSuite(SuiteBase):
    """Input validation: what every backend refuses, naming the same field, before writing."""

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
