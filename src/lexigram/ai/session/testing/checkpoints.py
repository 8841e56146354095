"""The conformance tests of one capability.

Checkpoints: chains, restore (time travel), retention, deletion, ordering.
"""


from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from lexigram.contracts.ai.session import (
    SessionCheckpoint,
    SessionStatus,
)

from lexigram.ai.session.exceptions import (
    CheckpointNotFoundError,
    SessionClosedError,
    SessionNotFoundError,
    SessionValidationError,
)
from lexigram.ai.session.stores.base import SessionPatch, SessionStore
from lexigram.ai.session.testing.support import (
    _A,
    _C,
    _E,
    _S,
    _T0,
    SuiteBase,
    _ids,
    make_state,
    make_turn,
)

__all__ = ["CheckpointsSuite"]


class CheckpointsSuite(SuiteBase):
    """Checkpoints: chains, restore (time travel), retention, deletion, ordering."""

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

    async def test_list_checkpoints_answers_as_its_derived_form(self, store: SessionStore) -> None:
        """An override of ``list_checkpoints`` equals the base class's derivation."""
        state = await self._session(store, metadata={"m": 1})
        sid = state.session_id
        assert await store.list_checkpoints(sid) == []
        assert await SessionStore.list_checkpoints(store, sid) == []
        await self._append(store, sid, 2)
        await store.create_checkpoint(sid, checkpoint_id="d1-" + uuid.uuid4().hex)
        await self._append(store, sid, 1, start=10)
        await store.create_checkpoint(
            sid, checkpoint_id="d2-" + uuid.uuid4().hex, include_turns=False, metadata={"k": 2}
        )
        native = await store.list_checkpoints(sid)
        derived = await SessionStore.list_checkpoints(store, sid)
        assert [len(c.state.turns) for c in native] == [2, 3]
        assert derived == native

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

    async def test_a_checkpoint_can_be_made_of_a_session_of_any_status(
        self, store: SessionStore
    ) -> None:
        """``create_checkpoint`` works whatever the status: suspended, closed, past its
        deadline, or stored as expired; the snapshot shows that status and the turns."""
        store.session_ttl = 60
        made = {name: await self._session(store) for name in ("S", "C", "lapsed", "marked")}
        for state in made.values():
            await self._append(store, state.session_id, 2)
        await store.transition(made["S"].session_id, _S, allowed_from=frozenset({_A}))
        await store.transition(made["C"].session_id, _C, allowed_from=frozenset({_A}))

        async def snapshot(name: str, status: SessionStatus) -> None:
            sid = made[name].session_id
            cp, pruned = await store.create_checkpoint(
                sid, checkpoint_id="any-" + uuid.uuid4().hex
            )
            assert pruned == []
            assert cp.state.status == status, name
            assert cp.state.turn_count == 2 and len(cp.state.turns) == 2, name
            headers = await store.list_checkpoint_headers(sid)
            assert [c.checkpoint_id for c in headers] == [cp.checkpoint_id], name
            record = await store.load_record(sid)
            assert record is not None, name
            assert record.state.checkpoint_id == cp.checkpoint_id, name
            assert record.state.status == status, name

        await snapshot("S", _S)
        await snapshot("C", _C)
        self.clock(store).advance(61)
        assert await store.mark_expired(made["marked"].session_id) is not None
        await snapshot("lapsed", _E)
        await snapshot("marked", _E)

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

    async def test_counters_saved_as_given_move_as_on_the_reference(
        self, store: SessionStore
    ) -> None:
        # A whole-state save stores the counters it is given, even when they are not
        # the sums over its turns. A pop then takes the popped turn off them (the cost
        # is summed again over the turns still live) and a restore brings back the
        # checkpoint's, as the in-memory store does.
        turns = [make_turn(1, tokens=4, cost=0.5), make_turn(2, tokens=4, cost=1.0)]
        state = make_state("alice", turns=turns, turn_count=2)
        await store.save(state)
        sid = state.session_id
        cp, _ = await store.create_checkpoint(
            sid, checkpoint_id="g-" + uuid.uuid4().hex, include_turns=True
        )
        popped = await store.pop_turn(sid)
        assert popped is not None and popped.turn_id == turns[1].turn_id
        record = await store.load_record(sid)
        assert record is not None
        after_pop = record.state
        assert (after_pop.turn_count, after_pop.total_tokens, after_pop.total_cost) == (1, 0, 0.5)
        restored = await store.restore_checkpoint(cp.checkpoint_id)
        assert _ids(restored.turns) == _ids(turns)
        assert (restored.turn_count, restored.total_tokens, restored.total_cost) == (2, 0, 0.0)

    async def test_a_checkpoint_of_a_missing_session_is_refused_as_missing(
        self, store: SessionStore
    ) -> None:
        # Whatever its id: one another session's checkpoint holds is judged after.
        other = await self._session(store)
        taken = "h-" + uuid.uuid4().hex
        await store.create_checkpoint(other.session_id, checkpoint_id=taken)
        gone = await self._session(store)
        await store.transition(gone.session_id, _C, allowed_from=frozenset({_A}))
        self.clock(store).advance(10)
        until = self.clock(store).now + timedelta(hours=1)
        assert await store.purge(gone.session_id, tombstone_until=until)
        for missing in (gone.session_id, "never-" + uuid.uuid4().hex):
            with pytest.raises(SessionNotFoundError):
                await store.create_checkpoint(missing, checkpoint_id=taken)

    async def test_a_checkpoint_id_another_session_holds_is_refused_by_save_checkpoint(
        self, store: SessionStore
    ) -> None:
        """Saving B's checkpoint under A's checkpoint id took it from A (A lost it, and a
        restore by that id restored B); the backends then disagreed on A's pointer."""
        a = await self._session(store)
        await self._append(store, a.session_id, 1)
        taken = "t-" + uuid.uuid4().hex
        await store.create_checkpoint(a.session_id, checkpoint_id=taken)
        b = await self._session(store)
        steal = SessionCheckpoint(
            checkpoint_id=taken,
            session_id=b.session_id,
            state=replace(b, turns=[]),
            created_at=_T0,
        )
        with pytest.raises(SessionValidationError, match="checkpoint_id"):
            await store.save_checkpoint(steal)
        held = await store.load_checkpoint(taken)
        assert held is not None and held.session_id == a.session_id
        assert [c.checkpoint_id for c in await store.list_checkpoint_headers(a.session_id)] == [
            taken
        ]
        assert await store.list_checkpoint_headers(b.session_id) == []
        again = await store.load_checkpoint(taken)
        assert again is not None
        await store.save_checkpoint(again)  # its own session's: replaced, as before

    async def test_two_saves_of_one_new_checkpoint_id_for_two_sessions_keep_one(
        self, store: SessionStore
    ) -> None:
        """Two imports at once: one save wins, the other is refused (PostgreSQL and Redis
        accepted both, and one session lost the checkpoint it was told was saved)."""
        for _ in range(5):
            a, b = await self._session(store), await self._session(store)
            cpid = "r-" + uuid.uuid4().hex
            copies = [
                SessionCheckpoint(
                    checkpoint_id=cpid, session_id=s.session_id, state=s, created_at=_T0
                )
                for s in (a, b)
            ]
            results = await asyncio.gather(
                *(store.save_checkpoint(c) for c in copies), return_exceptions=True
            )
            refused = [r for r in results if isinstance(r, SessionValidationError)]
            assert len(refused) == 1, results
            held = await store.load_checkpoint(cpid)
            assert held is not None
            owners = []
            for s in (a, b):
                listed = await store.list_checkpoint_headers(s.session_id)
                if cpid in [c.checkpoint_id for c in listed]:
                    owners.append(s.session_id)
            assert owners == [held.session_id]

    async def test_a_purged_sessions_checkpoint_cannot_be_saved_back(
        self, store: SessionStore
    ) -> None:
        """A late copy of a purged session's checkpoint would bring its turns back."""
        state = await self._session(store)
        await self._append(store, state.session_id, 2)
        cp, _ = await store.create_checkpoint(
            state.session_id, checkpoint_id="pg-" + uuid.uuid4().hex
        )
        copy = await store.load_checkpoint(cp.checkpoint_id)
        assert copy is not None and len(copy.state.turns) == 2
        await store.transition(state.session_id, _C, allowed_from=frozenset({_A}))
        self.clock(store).advance(10)
        until = self.clock(store).now + timedelta(hours=1)
        assert await store.purge(state.session_id, tombstone_until=until)
        with pytest.raises(SessionNotFoundError):
            await store.save_checkpoint(copy)
        assert await store.load_checkpoint(cp.checkpoint_id) is None
        assert await store.list_checkpoints(state.session_id) == []
        self.clock(store).advance(2 * 3600)  # the tombstone has lapsed: an import may
        await store.save_checkpoint(copy)
        again = await store.load_checkpoint(cp.checkpoint_id)
        assert again is not None and _ids(again.state.turns) == _ids(copy.state.turns)

    async def test_checkpoints_saved_before_their_session_are_kept_when_it_is_created(
        self, store: SessionStore
    ) -> None:
        # An import may write a session's checkpoints before the session itself.
        for create in ("create_session", "save"):
            state = make_state("alice")
            sid = state.session_id
            saved = SessionCheckpoint(
                checkpoint_id="early-" + uuid.uuid4().hex,
                session_id=sid,
                state=replace(state, turns=[make_turn(1)], turn_count=1),
                created_at=_T0,
            )
            await store.save_checkpoint(saved)
            await getattr(store, create)(state)
            headers = await store.list_checkpoint_headers(sid)
            assert [c.checkpoint_id for c in headers] == [saved.checkpoint_id], create
            loaded = await store.load_checkpoint(saved.checkpoint_id)
            assert loaded is not None and _ids(loaded.state.turns) == _ids(saved.state.turns)
            self.clock(store).advance(5)
            made, _ = await store.create_checkpoint(sid, checkpoint_id="late-" + uuid.uuid4().hex)
            listed = [c.checkpoint_id for c in await store.list_checkpoint_headers(sid)]
            assert listed == [saved.checkpoint_id, made.checkpoint_id], create
            restored = await store.restore_checkpoint(saved.checkpoint_id)
            assert _ids(restored.turns) == _ids(saved.state.turns)

    async def test_saving_a_checkpoint_again_keeps_its_place_among_equal_times(
        self, store: SessionStore
    ) -> None:
        state = await self._session(store)
        sid = state.session_id
        first, _ = await store.create_checkpoint(sid, checkpoint_id="A-" + sid)
        second, _ = await store.create_checkpoint(sid, checkpoint_id="B-" + sid)
        loaded = await store.load_checkpoint(first.checkpoint_id)
        assert loaded is not None
        await store.save_checkpoint(loaded)
        listed = [c.checkpoint_id for c in await store.list_checkpoint_headers(sid)]
        assert listed == [first.checkpoint_id, second.checkpoint_id]
        _, pruned = await store.create_checkpoint(
            sid, checkpoint_id="C-" + sid, max_checkpoints=2
        )
        assert pruned == [first.checkpoint_id]

    async def test_naive_times_in_a_saved_checkpoint_and_a_branch_are_utc(
        self, store: SessionStore
    ) -> None:
        state = await self._session(store)
        sid = state.session_id
        await store.create_checkpoint(sid, checkpoint_id="aware-" + sid)
        naive = datetime(2026, 1, 1, 11)
        checkpoint = SessionCheckpoint(
            checkpoint_id="naive-" + sid,
            session_id=sid,
            state=replace(state, created_at=naive, updated_at=naive),
            created_at=naive,
        )
        await store.save_checkpoint(checkpoint)
        listed = await store.list_checkpoint_headers(sid)
        assert [c.checkpoint_id for c in listed] == ["naive-" + sid, "aware-" + sid]
        assert listed[0].created_at == naive.replace(tzinfo=UTC)
        branch = await store.fork_session(
            sid, make_state("alice", created_at=naive, updated_at=naive)
        )
        assert [b.state.session_id for b in await store.list_branches(sid)] == [
            branch.state.session_id
        ]
        assert await store.load(branch.state.session_id) is not None
