"""The conformance tests of one capability.

Input validation: what every backend refuses, naming the same field, before writing.
"""


from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionCheckpoint, SessionStatus

from lexigram.ai.session.exceptions import (
    DuplicateTurnError,
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

_ZERO = timedelta(0)

#: Id arguments no backend can hold: empty, blank, too long, a control character, not text.
_BAD_IDS: list[Any] = ["", "   ", "x" * (MAX_ID_LENGTH + 1), "a\nb", "nul\x00", 5, None]

_IdCall = Callable[[SessionStore, Any], Awaitable[object]]
#: Every operation taking an id, with the field its refusal names.
_ID_CALLS: list[tuple[str, str, _IdCall]] = [
    ("load", "session_id", lambda s, v: s.load(v)),
    ("load_record", "session_id", lambda s, v: s.load_record(v)),
    ("get_turns", "session_id", lambda s, v: s.get_turns(v)),
    ("get_turns(last)", "session_id", lambda s, v: s.get_turns(v, last=3)),
    ("get_turn_seqs", "session_id", lambda s, v: s.get_turn_seqs(v)),
    ("delete", "session_id", lambda s, v: s.delete(v)),
    ("list_sessions", "user_id", lambda s, v: s.list_sessions(v)),
    ("list_user_sessions", "user_id", lambda s, v: s.list_user_sessions(v)),
    ("count_live_sessions", "user_id", lambda s, v: s.count_live_sessions(v)),
    ("append_turns", "session_id", lambda s, v: s.append_turns(v, [make_turn(1)])),
    ("update_session", "session_id",
     lambda s, v: s.update_session(v, SessionPatch(metadata={"a": 1}))),
    ("transition", "session_id", lambda s, v: s.transition(
        v, SessionStatus.CLOSED, allowed_from=frozenset({SessionStatus.ACTIVE}))),
    ("pop_turn", "session_id", lambda s, v: s.pop_turn(v)),
    ("clear_turns", "session_id", lambda s, v: s.clear_turns(v)),
    ("create_checkpoint", "session_id", lambda s, v: s.create_checkpoint(v, checkpoint_id="c1")),
    ("load_checkpoint", "checkpoint_id", lambda s, v: s.load_checkpoint(v)),
    ("list_checkpoints", "session_id", lambda s, v: s.list_checkpoints(v)),
    ("list_checkpoint_headers", "session_id", lambda s, v: s.list_checkpoint_headers(v)),
    ("delete_checkpoint", "checkpoint_id", lambda s, v: s.delete_checkpoint(v)),
    ("restore_checkpoint", "checkpoint_id", lambda s, v: s.restore_checkpoint(v)),
    ("list_branches", "session_id", lambda s, v: s.list_branches(v)),
    ("mark_expired", "session_id", lambda s, v: s.mark_expired(v)),
    ("mark_expired_batch", "session_ids", lambda s, v: s.mark_expired_batch(["ok-id", v])),
    ("purge", "session_id", lambda s, v: s.purge(v, tombstone_until=_T0 + timedelta(days=1))),
    ("purge_batch", "session_ids",
     lambda s, v: s.purge_batch(["ok-id", v], tombstone_until=_T0 + timedelta(days=1))),
    ("erase_session", "session_id", lambda s, v: s.erase_session(v)),
    ("fork_session", "source_id", lambda s, v: s.fork_session(v, make_state(user_id="gina"))),
    ("erase_user", "user_id", lambda s, v: s.erase_user(v)),
]


class _Score(float):
    """A float subclass (as ``numpy.float64`` is): not every JSON encoder takes one."""


_BAD_COUNTS: list[Any] = [-1, True, 3.5, "3", 2**70]
_CountCall = Callable[[SessionStore, Any, str], Awaitable[object]]
#: Every count argument, with the field its refusal names and the least value it takes.
_COUNT_CALLS: list[tuple[str, str, int, _CountCall]] = [
    ("get_turns(last)", "last", 0, lambda s, v, sid: s.get_turns(sid, last=v)),
    ("get_turns(after_seq)", "after_seq", 0, lambda s, v, sid: s.get_turns(sid, after_seq=v)),
    ("get_turns(limit)", "limit", 0, lambda s, v, sid: s.get_turns(sid, after_seq=0, limit=v)),
    ("get_turn_seqs(after_seq)", "after_seq", 0,
     lambda s, v, sid: s.get_turn_seqs(sid, after_seq=v)),
    ("get_turn_seqs(limit)", "limit", 0, lambda s, v, sid: s.get_turn_seqs(sid, limit=v)),
    ("list_user_sessions(limit)", "limit", 1,
     lambda s, v, sid: s.list_user_sessions("gina", limit=v)),
    ("append_turns(max_turns)", "max_turns", 1,
     lambda s, v, sid: s.append_turns(sid, [make_turn(9)], max_turns=v)),
    ("create_checkpoint(max_checkpoints)", "max_checkpoints", 1,
     lambda s, v, sid: s.create_checkpoint(sid, checkpoint_id="c9", max_checkpoints=v)),
    ("create_session(max_live_per_user)", "max_live_per_user", 1,
     lambda s, v, sid: s.create_session(make_state(user_id="gina"), max_live_per_user=v)),
    ("fork_session(max_branches)", "max_branches", 0,
     lambda s, v, sid: s.fork_session(sid, make_state(user_id="gina"), max_branches=v)),
    ("find_expired(limit)", "limit", 0, lambda s, v, sid: s.find_expired(limit=v)),
    ("find_purgeable(limit)", "limit", 0,
     lambda s, v, sid: s.find_purgeable(older_than=_T0, limit=v)),
    ("erase_user(batch)", "batch", 1, lambda s, v, sid: s.erase_user("gina", batch=v)),
]


#: Other arguments of the wrong kind, with the field refused and values to try.
_KIND_CALLS: list[tuple[str, str, list[Any], _CountCall]] = [
    ("create_checkpoint(metadata)", "metadata", ["x", 5, [1], {1: "a"}],
     lambda s, v, sid: s.create_checkpoint(sid, checkpoint_id="c9", metadata=v)),
    ("update_session(patch)", "patch", [None, {"metadata": {}}, "x"],
     lambda s, v, sid: s.update_session(sid, v)),
    ("append_turns(patch)", "patch", [{"metadata": {}}, "x"],
     lambda s, v, sid: s.append_turns(sid, [make_turn(9)], patch=v)),
    ("transition(to_status)", "to_status", [None, "x", 5],
     lambda s, v, sid: s.transition(sid, v, allowed_from=frozenset({SessionStatus.ACTIVE}))),
    ("transition(allowed_from)", "allowed_from", ["active", None, 5, ["x"]],
     lambda s, v, sid: s.transition(sid, SessionStatus.SUSPENDED, allowed_from=v)),
    ("purge(tombstone_until)", "tombstone_until", [None, "2026-01-01", 5],
     lambda s, v, sid: s.purge(sid, tombstone_until=v)),
    ("purge_batch(tombstone_until)", "tombstone_until", [None, "2026-01-01"],
     lambda s, v, sid: s.purge_batch([sid], tombstone_until=v)),
    ("find_purgeable(older_than)", "older_than", [None, "2026-01-01", 5],
     lambda s, v, sid: s.find_purgeable(older_than=v)),
    ("append_turns(key_guard)", "key_guard", [5, [1], {"a": 1}],
     lambda s, v, sid: s.append_turns(sid, [make_turn(9)], key_guard=v)),
    ("update_session(key_guard)", "key_guard", [5, [1]],
     lambda s, v, sid: s.update_session(sid, SessionPatch(metadata={"a": 1}), key_guard=v)),
    ("create_checkpoint(key_guard)", "key_guard", [5, [1]],
     lambda s, v, sid: s.create_checkpoint(sid, checkpoint_id="c9", key_guard=v)),
    ("save_checkpoint", "checkpoint", [None, "x", {"checkpoint_id": "c9"}],
     lambda s, v, sid: s.save_checkpoint(v)),
    ("create_session(status)", "state.status", ["nope", None, 5],
     lambda s, v, sid: s.create_session(make_state(user_id="gina", status=v))),
    ("fork_session(branch.status)", "branch.status", ["nope", None],
     lambda s, v, sid: s.fork_session(sid, make_state(user_id="gina", status=v))),
    ("update_session(float subclass)", "metadata.score", [_Score(0.5)],
     lambda s, v, sid: s.update_session(sid, SessionPatch(metadata={"score": v}))),
    ("append_turns(float subclass)", "turns[0].metadata.score", [_Score(0.5)],
     lambda s, v, sid: s.append_turns(sid, [make_turn(9, metadata={"score": v})])),
    ("create_checkpoint(float subclass)", "metadata.score", [_Score(0.5)],
     lambda s, v, sid: s.create_checkpoint(sid, checkpoint_id="c9", metadata={"score": v})),
]


_BEFORE_1970 = datetime(1969, 12, 31, 12, tzinfo=UTC)


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
            # Redis keeps header times as microseconds since 1970 (it stored a 1969 one
            # and could not read it back; an outside audit): refused on every backend.
            ({"created_at": _BEFORE_1970, "updated_at": _BEFORE_1970}, "state.created_at"),
            ({"updated_at": _BEFORE_1970}, "state.updated_at"),
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
        ("call", "field"), [(c, f) for _, f, c in _ID_CALLS], ids=[n for n, _, _ in _ID_CALLS]
    )
    async def test_bad_id_arguments_are_refused_naming_the_field(
        self, store: SessionStore, call: _IdCall, field: str
    ) -> None:
        # The same answer on every backend: not None, not "not found", not a driver error.
        await self._refused_without_change(
            store, lambda s, v, sid: call(s, v), field, _BAD_IDS
        )

    @pytest.mark.parametrize(
        ("call", "field", "least"),
        [(c, f, m) for _, f, m, c in _COUNT_CALLS],
        ids=[n for n, _, _, _ in _COUNT_CALLS],
    )
    async def test_bad_count_arguments_are_refused_naming_the_field(
        self, store: SessionStore, call: _CountCall, field: str, least: int
    ) -> None:
        await self._refused_without_change(store, call, field, [*_BAD_COUNTS, least - 1])

    @pytest.mark.parametrize(
        ("call", "field", "values"),
        [(c, f, v) for _, f, v, c in _KIND_CALLS],
        ids=[n for n, _, _, _ in _KIND_CALLS],
    )
    async def test_arguments_of_the_wrong_kind_are_refused_naming_the_field(
        self, store: SessionStore, call: _CountCall, field: str, values: list[Any]
    ) -> None:
        await self._refused_without_change(store, call, field, values)

    async def _refused_without_change(
        self, store: SessionStore, call: _CountCall, field: str, values: list[Any]
    ) -> None:
        """Each of ``values`` refused naming ``field``; a session with one turn untouched."""
        state = make_state(user_id="gina")
        sid = state.session_id
        await store.create_session(state)
        turn = make_turn(1)
        await store.append_turns(sid, [turn])
        for bad in values:
            with pytest.raises(SessionValidationError) as info:
                await call(store, bad, sid)
            assert info.value.field == field, f"{bad!r}: named {info.value.field!r}"
        loaded = await store.load(sid)
        assert loaded is not None and loaded.turns == [turn]
        assert loaded.status == SessionStatus.ACTIVE and loaded.metadata == state.metadata
        assert await store.list_checkpoint_headers(sid) == []
        assert await store.list_branches(sid) == []
        assert await store.count_live_sessions("gina") == 1

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

    async def test_values_are_kept_as_every_backend_reads_them_back(
        self, store: SessionStore
    ) -> None:
        # An int cost is a float; an offset in seconds (no backend keeps one) is the
        # same instant in UTC; header times are UTC; checkpoint metadata is a copy.
        odd = timezone(timedelta(hours=5, minutes=30, seconds=15))
        stamp = datetime(2026, 1, 1, 12, tzinfo=odd)
        state = make_state(
            user_id="gina",
            created_at=datetime(2026, 1, 1, 12),
            updated_at=datetime(2026, 1, 1, 17, tzinfo=timezone(timedelta(hours=5))),
        )
        sid = state.session_id
        created = await store.create_session(state)
        assert created.state.created_at == _T0 and created.state.created_at.utcoffset() == _ZERO
        assert created.state.updated_at == _T0 and created.state.updated_at.utcoffset() == _ZERO
        turn = replace(make_turn(1, cost=3), timestamp=stamp)
        big = make_turn(2, cost=2**70)
        await store.append_turns(sid, [turn, big])
        loaded = await store.load(sid)
        assert loaded is not None
        first, second = loaded.turns
        assert type(first.cost) is float and first.cost == 3.0
        assert type(second.cost) is float and second.cost == float(2**70)
        assert first.timestamp == stamp and first.timestamp.utcoffset() == _ZERO
        meta: dict[str, Any] = {"t": (1, 2), "l": [1]}
        made, _ = await store.create_checkpoint(sid, checkpoint_id="m-" + sid, metadata=meta)
        meta["l"].append(2)
        made.metadata["l"].append(3)
        again = await store.load_checkpoint("m-" + sid)
        assert again is not None and again.metadata == {"t": [1, 2], "l": [1]}
        branch = await store.fork_session(sid, make_state(user_id="gina"))
        assert type(branch.state.total_cost) is float

    async def test_a_checkpoint_repeating_a_turn_id_is_refused(self, store: SessionStore) -> None:
        state = await self._session(store)
        twice = make_turn(1, turn_id="same")
        checkpoint = SessionCheckpoint(
            checkpoint_id="dup-" + state.session_id,
            session_id=state.session_id,
            state=replace(state, turns=[twice, make_turn(2, turn_id="same")], turn_count=2),
            created_at=datetime(2026, 1, 1, 12),
        )
        with pytest.raises(DuplicateTurnError):
            await store.save_checkpoint(checkpoint)
        assert await store.load_checkpoint(checkpoint.checkpoint_id) is None
