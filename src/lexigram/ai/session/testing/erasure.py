"""The conformance tests of one capability.

Erasure: ``erase_user`` removes every session of a user with its branches (at any
depth, whoever owns them), checkpoints, turns and index entries; other users'
sessions stay; a late write is refused; running it again changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Sequence

import pytest

from lexigram.ai.session.exceptions import SessionNotFoundError
from lexigram.ai.session.stores.base import SessionPatch, SessionStore
from lexigram.ai.session.testing.support import SuiteBase, _ids, make_state, make_turn

__all__ = ["ErasureSuite"]


def _user(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def _nothing(read: Awaitable[Sequence[object]]) -> bool:
    """Whether a per-session read finds nothing: empty, or the session is not found."""
    try:
        return len(await read) == 0
    except SessionNotFoundError:
        return True


class ErasureSuite(SuiteBase):
    """Erasure: ``erase_user`` and ``erase_session`` leave nothing of the user."""

    async def _family(self, store: SessionStore, user: str, other: str) -> dict[str, list[str]]:
        """Two sessions of ``user`` with turns, checkpoints and branches (one owned by
        ``other``, one a branch of a branch); returns the ids by kind."""
        first = await self._session(store, user)
        second = await self._session(store, user)
        await self._append(store, first.session_id, 3)
        await self._append(store, second.session_id, 2)
        cp_first, _ = await store.create_checkpoint(
            first.session_id, checkpoint_id="e-" + uuid.uuid4().hex
        )
        cp_second, _ = await store.create_checkpoint(
            second.session_id, checkpoint_id="e-" + uuid.uuid4().hex
        )
        await store.pop_turn(second.session_id)  # a turn no longer live goes too
        branch = make_state(other, parent_session_id=first.session_id, branch_name="theirs")
        await store.fork_session(first.session_id, branch)
        await self._append(store, branch.session_id, 1, start=20)
        deeper = make_state(user, parent_session_id=branch.session_id, branch_name="deeper")
        await store.fork_session(branch.session_id, deeper)
        return {
            "sessions": [first.session_id, second.session_id],
            "branches": [branch.session_id, deeper.session_id],
            "checkpoints": [cp_first.checkpoint_id, cp_second.checkpoint_id],
        }

    async def _assert_gone(self, store: SessionStore, user: str, ids: list[str]) -> None:
        for session_id in ids:
            assert await store.load_record(session_id) is None, session_id
            assert await store.load(session_id) is None, session_id
            for read in (
                store.get_turns,
                store.get_turn_seqs,
                store.list_checkpoints,
                store.list_checkpoint_headers,
                store.list_branches,
            ):
                assert await _nothing(read(session_id)), (read.__name__, session_id)
        page = await store.list_user_sessions(user)
        assert page.items == [] and page.damaged == []
        assert await store.count_live_sessions(user) == 0
        assert await store.list_sessions(user) == []

    # ---------------------------------------------------------------- erasure
    async def test_erase_user_removes_sessions_branches_checkpoints_and_turns(
        self, store: SessionStore
    ) -> None:
        alice, bob = _user("alice"), _user("bob")
        family = await self._family(store, alice, bob)
        kept = await self._session(store, bob)
        kept_turns = await self._append(store, kept.session_id, 2)
        kept_cp, _ = await store.create_checkpoint(
            kept.session_id, checkpoint_id="k-" + uuid.uuid4().hex
        )

        erasure = await store.erase_user(alice)

        every = family["sessions"] + family["branches"]
        assert erasure.user_id == alice
        assert sorted(erasure.sessions) == sorted(every)
        # Branches go before their source.
        order = erasure.sessions
        assert order.index(family["branches"][1]) < order.index(family["branches"][0])
        assert order.index(family["branches"][0]) < order.index(family["sessions"][0])
        assert erasure.checkpoints == 2 and erasure.damaged == [] and erasure.complete
        assert erasure.turns == 3 + 1 + 4 + 4  # live turns: first, second, branch, deeper
        await self._assert_gone(store, alice, every)
        for checkpoint_id in family["checkpoints"]:
            assert await store.load_checkpoint(checkpoint_id) is None
        # The other user's own session is intact (the branch bob owned was erased).
        header = await store.load_record(kept.session_id)
        assert header is not None and header.state.turn_count == 2
        assert _ids(await store.get_turns(kept.session_id)) == _ids(kept_turns)
        assert await store.load_checkpoint(kept_cp.checkpoint_id) is not None
        listed = await store.list_user_sessions(bob)
        assert [s.session_id for s in listed.items] == [kept.session_id]

    async def test_a_late_write_to_an_erased_session_is_refused(self, store: SessionStore) -> None:
        alice = _user("alice")
        state = await self._session(store, alice)
        await self._append(store, state.session_id, 2)
        await store.erase_user(alice)
        with pytest.raises(SessionNotFoundError):
            await store.append_turns(state.session_id, [make_turn(9)])
        with pytest.raises(SessionNotFoundError):
            await store.update_session(state.session_id, SessionPatch(variables={"x": 1}))
        with pytest.raises(SessionNotFoundError):
            await store.create_checkpoint(
                state.session_id, checkpoint_id="late-" + uuid.uuid4().hex
            )
        await self._assert_gone(store, alice, [state.session_id])

    async def test_erase_user_again_is_idempotent(self, store: SessionStore) -> None:
        alice, bob = _user("alice"), _user("bob")
        await self._family(store, alice, bob)
        kept = await self._session(store, bob)
        await self._append(store, kept.session_id, 1)
        first = await store.erase_user(alice)
        assert first.complete and len(first.sessions) == 4
        again = await store.erase_user(alice)
        assert again.sessions == [] and again.checkpoints == 0 and again.turns == 0
        assert again.complete and again.damaged == []
        header = await store.load_record(kept.session_id)
        assert header is not None and header.state.turn_count == 1

    async def test_one_user_after_another(self, store: SessionStore) -> None:
        # Each erasure that removed something may compact the storage (SQLite rewrites
        # the file): the next one in the same process must find it usable.
        users = [_user(name) for name in ("alice", "bob", "carol")]
        for user in users:
            state = await self._session(store, user)
            await self._append(store, state.session_id, 2)
        for user in users:
            erasure = await store.erase_user(user)
            assert erasure.complete and len(erasure.sessions) == 1 and erasure.turns == 2
            await self._assert_gone(store, user, erasure.sessions)

    async def test_erase_user_of_an_unknown_user_removes_nothing(self, store: SessionStore) -> None:
        kept = await self._session(store, _user("bob"))
        erasure = await store.erase_user(_user("nobody"))
        assert erasure.sessions == [] and erasure.complete
        assert await store.load_record(kept.session_id) is not None

    async def test_erase_session_removes_one_session_only(self, store: SessionStore) -> None:
        alice = _user("alice")
        gone = await self._session(store, alice)
        kept = await self._session(store, alice)
        await self._append(store, gone.session_id, 2)
        await self._append(store, kept.session_id, 1)
        assert await store.erase_session(gone.session_id) is True
        assert await store.erase_session(gone.session_id) is False
        assert await store.load_record(gone.session_id) is None
        assert await _nothing(store.get_turns(gone.session_id))
        listed = await store.list_user_sessions(alice)
        assert [s.session_id for s in listed.items] == [kept.session_id]
