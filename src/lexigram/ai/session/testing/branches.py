"""The conformance tests of one capability.

Branches: forks from the end or a checkpoint, the branch cap, a session's branches
ending with it, and a branch written whole with its fork point
(``create_session(state, fork_seq=n)``, what an import does).
"""


from __future__ import annotations

import json
import uuid
from dataclasses import replace
from typing import Any

import pytest

from lexigram.ai.session.branching import BranchManager
from lexigram.ai.session.cli.importing import import_document
from lexigram.ai.session.cli.transfer import dump_document, fork_point, session_to_dict
from lexigram.ai.session.exceptions import (
    CheckpointNotFoundError,
    SessionCapacityError,
    SessionNotFoundError,
    SessionValidationError,
)
from lexigram.ai.session.stores.base import SessionPatch, SessionStore
from lexigram.ai.session.testing.support import (
    SuiteBase,
    _ids,
    make_state,
    make_turn,
)

__all__ = ["BranchesSuite"]


class BranchesSuite(SuiteBase):
    """Branches: forks from the end or a checkpoint, the branch cap, a session's branches
    ending with it."""

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

    async def test_a_fork_from_the_end_copies_only_the_live_turns(
        self, store: SessionStore
    ) -> None:
        """The branch's turns are the source's live turns now: not a popped or cleared
        turn, even one a checkpoint still keeps."""
        source = await self._session(store)
        sid = source.session_id
        turns = [make_turn(i, tokens=i + 1, cost=0.5) for i in range(3)]
        await store.append_turns(sid, turns)
        await store.create_checkpoint(sid, checkpoint_id="lv-" + uuid.uuid4().hex)
        popped = await store.pop_turn(sid)
        assert popped is not None and popped.turn_id == turns[-1].turn_id
        after_pop = make_state("bea", parent_session_id=sid, branch_name="after-pop")
        record = await store.fork_session(sid, after_pop)
        assert record.state.turn_count == 2 and record.state.total_tokens == 1 + 2
        assert record.state.total_cost == pytest.approx(1.0)
        assert (record.state.user_id, record.state.branch_name) == ("bea", "after-pop")
        loaded = await store.load(after_pop.session_id)
        assert loaded is not None and _ids(loaded.turns) == _ids(turns[:2])
        assert await store.clear_turns(sid) == 2
        after_clear = make_state("alice", parent_session_id=sid, branch_name="after-clear")
        record = await store.fork_session(sid, after_clear)
        assert record.state.turn_count == 0 and record.state.total_tokens == 0
        assert await store.get_turns(after_clear.session_id) == []

    async def test_a_fork_without_a_parent_is_a_branch_of_its_source(
        self, store: SessionStore
    ) -> None:
        """A branch handed to ``fork_session`` without ``parent_session_id`` gets the
        source as its parent: it is listed among the source's branches and counted."""
        source = await self._session(store)
        sid = source.session_id
        branch = make_state("alice", branch_name="orphan?")
        assert branch.parent_session_id is None
        record = await store.fork_session(sid, branch, max_branches=1)
        assert record.state.parent_session_id == sid
        loaded = await store.load_record(branch.session_id)
        assert loaded is not None and loaded.state.parent_session_id == sid
        assert [b.state.session_id for b in await store.list_branches(sid)] == [
            branch.session_id
        ]
        with pytest.raises(SessionCapacityError):
            await store.fork_session(sid, make_state("alice"), max_branches=1)

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

    async def test_a_new_session_under_a_deleted_ones_id_has_none_of_its_branches(
        self, store: SessionStore
    ) -> None:
        old = await self._session(store, "alice")
        kept = make_state("alice", parent_session_id=old.session_id, branch_name="kept")
        await store.fork_session(old.session_id, kept, max_branches=1)
        await store.delete(old.session_id)
        # The branch stays, naming its parent; it is no branch of a new session there.
        orphan = await store.load_record(kept.session_id)
        assert orphan is not None and orphan.state.parent_session_id == old.session_id
        assert await store.list_branches(old.session_id) == []
        await store.create_session(make_state("bob", session_id=old.session_id))
        assert await store.list_branches(old.session_id) == []
        # The cap counts the new session's own forks only.
        mine = make_state("bob", parent_session_id=old.session_id, branch_name="mine")
        await store.fork_session(old.session_id, mine, max_branches=1)
        listed = await store.list_branches(old.session_id)
        assert [b.state.session_id for b in listed] == [mine.session_id]
        with pytest.raises(SessionCapacityError):
            await store.fork_session(
                old.session_id,
                make_state("bob", parent_session_id=old.session_id, branch_name="more"),
                max_branches=1,
            )

    async def test_a_missing_session_has_no_branches(self, store: SessionStore) -> None:
        # A session stored naming a parent that does not exist (an import of one branch).
        lone = make_state("alice", parent_session_id="s-nowhere-" + uuid.uuid4().hex)
        await store.create_session(lone)
        assert lone.parent_session_id is not None
        assert await store.list_branches(lone.parent_session_id) == []
        assert await store.list_branches("s-never-" + uuid.uuid4().hex) == []

    async def test_the_user_cap_is_judged_before_the_checkpoint(
        self, store: SessionStore
    ) -> None:
        user = "capped-" + uuid.uuid4().hex
        source = await self._session(store, user)
        with pytest.raises(SessionCapacityError):
            await store.fork_session(
                source.session_id,
                make_state(user, parent_session_id=source.session_id, branch_name="b"),
                from_checkpoint="missing-" + uuid.uuid4().hex,
                max_live_per_user=1,
            )

    async def test_a_save_that_reparents_a_branch_frees_its_place(
        self, store: SessionStore
    ) -> None:
        source = await self._session(store)
        first = make_state("alice", parent_session_id=source.session_id, branch_name="b1")
        await store.fork_session(source.session_id, first, max_branches=1)
        loaded = await store.load(first.session_id)
        assert loaded is not None
        await store.save(replace(loaded, parent_session_id=None, branch_name=None))
        assert await store.list_branches(source.session_id) == []
        second = make_state("alice", parent_session_id=source.session_id, branch_name="b2")
        await store.fork_session(source.session_id, second, max_branches=1)
        listed = await store.list_branches(source.session_id)
        assert [b.state.session_id for b in listed] == [second.session_id]

    async def test_a_fork_for_another_owner_is_refused_with_nothing_written(
        self, store: SessionStore
    ) -> None:
        """``owner``: the source's id now holds another user's session (deleted and
        re-created meanwhile), so the fork copies nothing of it."""
        if not store.supports_owner_guard:
            pytest.skip("the store does not honour fork_session(owner=)")
        source = await self._session(store, "bob", variables={"secret": "bob's"})
        await self._append(store, source.session_id, 2)
        cp, _ = await store.create_checkpoint(
            source.session_id, checkpoint_id="o-" + uuid.uuid4().hex
        )
        for point in (None, cp.checkpoint_id):
            branch = make_state("alice", parent_session_id=source.session_id, branch_name="b")
            with pytest.raises(SessionNotFoundError):
                await store.fork_session(
                    source.session_id, branch, from_checkpoint=point, owner="alice"
                )
            assert await store.load(branch.session_id) is None
        assert await store.list_branches(source.session_id) == []
        assert await store.count_live_sessions("alice") == 0
        mine = make_state("bob", parent_session_id=source.session_id, branch_name="b")
        record = await store.fork_session(source.session_id, mine, max_branches=1, owner="bob")
        assert record.state.turn_count == 2

    async def test_an_append_or_update_for_another_owner_is_refused_with_nothing_written(
        self, store: SessionStore
    ) -> None:
        """``owner`` on ``append_turns`` / ``update_session``: a merge that read alice's
        parent must not write into bob's session created under that id since."""
        if not store.supports_owner_guard:
            pytest.skip("the store does not honour owner=")
        bob = await self._session(store, "bob", variables={"who": "bob"})
        sid = bob.session_id
        await self._append(store, sid, 1)
        patch = SessionPatch(variables={"who": "alice"})
        for batch in ([make_turn(90)], [make_turn(91), make_turn(92)]):
            with pytest.raises(SessionNotFoundError):
                await store.append_turns(sid, batch, patch=patch, owner="alice")
        with pytest.raises(SessionNotFoundError):
            await store.update_session(sid, patch, owner="alice")
        if store.supports_key_guard:  # the owner is judged first, as a missing session
            wrong_key = "v1.k1.b3duZXI.c2VhbGVk"
            with pytest.raises(SessionNotFoundError):
                await store.append_turns(
                    sid, [make_turn(94)], key_guard=wrong_key, owner="alice"
                )
            with pytest.raises(SessionNotFoundError):
                await store.update_session(sid, patch, key_guard=wrong_key, owner="alice")
        loaded = await store.load(sid)
        assert loaded is not None and loaded.turn_count == 1
        assert loaded.variables == {"who": "bob"}
        result = await store.append_turns(sid, [make_turn(93)], patch=patch, owner="bob")
        assert result.record.state.turn_count == 2
        updated = await store.update_session(sid, SessionPatch(metadata={"m": 1}), owner="bob")
        assert updated.state.metadata == {"m": 1} and updated.state.variables == {"who": "alice"}

    async def test_a_fork_from_another_sessions_checkpoint_is_refused(
        self, store: SessionStore
    ) -> None:
        """A checkpoint id names one session's past: forking it from another session would
        copy that session's fields and turns into a branch of the wrong one."""
        bob = await self._session(store, "bob", variables={"card": "secret"})
        await self._append(store, bob.session_id, 2)
        cp, _ = await store.create_checkpoint(
            bob.session_id, checkpoint_id="x-" + uuid.uuid4().hex
        )
        mallory = await self._session(store, "mallory")
        branch = make_state("mallory", parent_session_id=mallory.session_id, branch_name="b")
        with pytest.raises(CheckpointNotFoundError):
            await store.fork_session(
                mallory.session_id, branch, from_checkpoint=cp.checkpoint_id
            )
        assert await store.load(branch.session_id) is None
        assert await store.list_branches(mallory.session_id) == []

    # ---------------------------------------------- branches written whole (import)
    async def test_create_session_keeps_a_branchs_fork_point(self, store: SessionStore) -> None:
        """``create_session(state, fork_seq=n)``: the record's ``fork_seq`` is n (through
        ``load_record`` too), the turns after it are the branch's own, and the branch is
        one of its parent's. Without the keyword a branch has none, as before."""
        parent = await self._session(store)
        inherited = await self._append(store, parent.session_id, 2)
        await self._append(store, parent.session_id, 2, start=10)
        own = [make_turn(50)]
        branch = make_state(
            "alice",
            parent_session_id=parent.session_id,
            branch_name="imported",
            turns=inherited + own,
        )
        record = await store.create_session(branch, fork_seq=2)
        assert record.fork_seq == 2
        loaded = await store.load_record(branch.session_id)
        assert loaded is not None and loaded.fork_seq == 2
        assert loaded.state.parent_session_id == parent.session_id
        assert _ids(await store.get_turns(branch.session_id, after_seq=2)) == _ids(own)
        listed = await store.list_branches(parent.session_id)
        assert [b.state.session_id for b in listed] == [branch.session_id]
        assert listed[0].fork_seq == 2
        for n in (0, 3):  # both ends of 0..len(turns)
            edge = make_state("alice", parent_session_id=parent.session_id,
                              turns=[make_turn(60 + i) for i in range(3)])
            assert (await store.create_session(edge, fork_seq=n)).fork_seq == n
            found = await store.load_record(edge.session_id)
            assert found is not None and found.fork_seq == n
        plain = make_state("alice", parent_session_id=parent.session_id, turns=[make_turn(70)])
        await store.create_session(plain)
        found = await store.load_record(plain.session_id)
        assert found is not None and found.fork_seq is None
        lone = make_state("alice", turns=[make_turn(80)])
        await store.create_session(lone, fork_seq=None)
        found = await store.load_record(lone.session_id)
        assert found is not None and found.fork_seq is None

    @pytest.mark.parametrize(
        ("fork_seq", "branch", "problem"),
        [
            (-1, True, "must be in 0..2"),
            (3, True, "must be in 0..2"),
            (True, True, "expected an integer or None, got bool"),
            ("1", True, "expected an integer or None, got str"),
            (1.0, True, "expected an integer or None, got float"),
            (1, False, "only a branch (a state with parent_session_id) has a fork point"),
        ],
    )
    async def test_create_session_refuses_a_bad_fork_point_naming_it(
        self, store: SessionStore, fork_seq: Any, branch: bool, problem: str
    ) -> None:
        """The same error on every backend, before anything is written."""
        parent = await self._session(store)
        state = make_state(
            "alice",
            parent_session_id=parent.session_id if branch else None,
            turns=[make_turn(1), make_turn(2)],
        )
        with pytest.raises(SessionValidationError) as caught:
            await store.create_session(state, fork_seq=fork_seq)
        assert caught.value.field == "fork_seq"
        assert caught.value.problem.startswith(problem)
        assert await store.load_record(state.session_id) is None
        assert await store.list_branches(parent.session_id) == []
        assert await store.count_live_sessions("alice") == 1

    async def test_a_merge_after_an_import_appends_only_the_branchs_own_turns(
        self, store: SessionStore
    ) -> None:
        """Fork from a checkpoint, add a turn to the branch, export both, import them
        under new ids into the same store: merging the imported branch appends only its
        own turn, as merging the original does."""
        parent = await self._session(store)
        sid = parent.session_id
        early = await self._append(store, sid, 2)
        cp, _ = await store.create_checkpoint(sid, checkpoint_id="i-" + uuid.uuid4().hex)
        late = await self._append(store, sid, 2, start=10)
        branch = make_state("alice", parent_session_id=sid, branch_name="br1")
        await store.fork_session(sid, branch, from_checkpoint=cp.checkpoint_id)
        own = await self._append(store, branch.session_id, 1, start=50)
        entries = []
        for session_id in (sid, branch.session_id):
            state = await store.load(session_id)
            assert state is not None
            fork_seq = await fork_point(store, state)
            entries.append(session_to_dict(state, [], fork_seq=fork_seq))
        doc = json.loads(dump_document(entries))
        assert doc["sessions"][1]["fork_seq"] == 2 and "fork_seq" not in doc["sessions"][0]
        new_parent, new_branch = "s-" + uuid.uuid4().hex, "s-" + uuid.uuid4().hex
        doc["sessions"][0]["header"]["session_id"] = new_parent
        doc["sessions"][1]["header"]["session_id"] = new_branch
        doc["sessions"][1]["header"]["parent_session_id"] = new_parent
        # New checkpoint ids: the headers name the source's checkpoint (copied as a
        # copy is, see the CLI's --new-checkpoint-ids).
        report = await import_document(store, json.dumps(doc), new_checkpoint_ids=True)
        assert sorted(report.imported) == sorted([new_parent, new_branch])
        record = await store.load_record(new_branch)
        assert record is not None and record.fork_seq == 2
        merged = await BranchManager(store).merge(new_parent, new_branch)
        assert _ids(merged.turns) == _ids(early + late + own)
        original = await BranchManager(store).merge(sid, branch.session_id)
        assert _ids(original.turns) == _ids(merged.turns)
