"""The conformance tests of one capability.

Sessions: create, read, caller-chosen ids, listing, the per-user cap, transitions,
delete, persistence.
"""


from __future__ import annotations

import asyncio
import uuid
from dataclasses import fields, replace
from datetime import timedelta

import pytest
from lexigram.contracts.ai.session import (
    SessionState,
    SessionStatus,
    SessionTurn,
)

from lexigram.ai.session.exceptions import (
    CorruptRecordError,
    SessionCapacityError,
    SessionClosedError,
    SessionExpiredError,
    SessionNotFoundError,
    SessionTransitionError,
    SessionValidationError,
    StoreUnavailableError,
)
from lexigram.ai.session.stores.base import (
    LIVE_STATUSES,
    SessionPatch,
    SessionStore,
    StoredTurns,
)
from lexigram.ai.session.testing.support import (
    _A,
    _C,
    _S,
    _T0,
    Corrupter,
    StoreFactory,
    SuiteBase,
    _ids,
    make_state,
    make_turn,
)
from lexigram.ai.session.validation import MAX_ID_LENGTH

__all__ = ["SessionsSuite"]


class SessionsSuite(SuiteBase):
    """Sessions: create, read, caller-chosen ids, listing, the per-user cap, transitions,
    delete, persistence.
    """

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
        for _ in range(len(turns) + 2):  # bounded: a store that never ends fails here
            page = await store.get_turn_seqs(state.session_id, after_seq=after, limit=5)
            if not page:
                break
            seqs = [s for s, _ in page]
            assert seqs == sorted(seqs)
            assert after is None or seqs[0] > after, "after_seq is exclusive"
            collected.extend(t for _, t in page)
            after = seqs[-1]
        else:
            pytest.fail("paging with after_seq never reached the end")
        assert _ids(collected) == _ids(turns)
        first_five = await store.get_turn_seqs(state.session_id, limit=5)
        rest = await store.get_turns(state.session_id, after_seq=first_five[-1][0])
        assert _ids(rest) == _ids(turns[5:])

    async def test_a_cursor_the_store_did_not_issue_is_refused(self, store: SessionStore) -> None:
        await self._session(store, "bob")
        for bad in ("abc", "-1", "1.5", "99999999999999999999999", str(2**63), ""):
            with pytest.raises(SessionValidationError) as info:
                await store.list_user_sessions("bob", cursor=bad)
            assert info.value.field == "cursor"

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

    async def test_a_stale_live_save_cannot_revive_an_ended_session(
        self, store: SessionStore
    ) -> None:
        """Closed, expired (stored or past its deadline) stay so: nothing resurrected."""
        store.session_ttl = 60
        closed = await self._session(store)
        stale = await store.load(closed.session_id)
        assert stale is not None
        await store.transition(
            closed.session_id, SessionStatus.CLOSED, allowed_from=LIVE_STATUSES
        )
        with pytest.raises(SessionClosedError):
            await store.save(stale)
        idle = await self._session(store, "erin")
        stale_idle = await store.load(idle.session_id)
        assert stale_idle is not None
        self.clock(store).advance(61)
        with pytest.raises(SessionExpiredError):
            await store.save(stale_idle)
        assert await store.mark_expired(idle.session_id) is not None
        with pytest.raises(SessionExpiredError):
            await store.save(replace(stale_idle, updated_at=self.clock(store).now))
        for sid, status in ((closed.session_id, SessionStatus.CLOSED),
                            (idle.session_id, SessionStatus.EXPIRED)):
            record = await store.load_record(sid)
            assert record is not None and record.state.status == status
        ended = await store.load(closed.session_id)
        assert ended is not None
        await store.save(replace(ended, variables={"note": "kept closed"}))  # ended stays ended
        record = await store.load_record(closed.session_id)
        assert record is not None and record.state.variables == {"note": "kept closed"}

    async def test_save_round_trips_every_header_field(self, store: SessionStore) -> None:
        """``save`` keeps every field of the state it is given (a new id and over an old
        one): ids, status, times, metadata, variables, tools, skills, prompt, checkpoint,
        parent, branch name, the counters as given, and the turns."""
        sid = "s-" + uuid.uuid4().hex
        first = SessionState(
            session_id=sid,
            user_id="hana",
            status=_S,
            turns=[make_turn(1, tokens=3, cost=0.25), make_turn(2, tokens=4, cost=0.5)],
            metadata={"channel": "web", "nested": {"a": [1, 2.5, None, True]}},
            active_tools=["search", "calc"],
            active_skills=["summarize"],
            system_prompt="Be brief. — ✓",
            variables={"lang": "日本語", "count": 3},
            created_at=_T0 - timedelta(days=2),
            updated_at=_T0 - timedelta(hours=1),
            checkpoint_id="cp-" + uuid.uuid4().hex,
            total_tokens=7,
            total_cost=0.75,
            turn_count=2,
            parent_session_id="s-parent-" + uuid.uuid4().hex,
            branch_name="idea",
        )
        second = replace(
            first,
            user_id="ivan",
            status=_A,
            turns=[make_turn(3, tokens=9, cost=1.5)],
            metadata={"channel": "api"},
            active_tools=["calc"],
            active_skills=["translate", "summarize"],
            system_prompt="Be thorough.",
            variables={"lang": "fr"},
            created_at=_T0 - timedelta(days=1),
            updated_at=_T0 - timedelta(minutes=5),
            checkpoint_id="cp-" + uuid.uuid4().hex,
            total_tokens=11,  # not the sum over its turns: kept as given
            total_cost=2.5,
            turn_count=1,
            parent_session_id="s-other-" + uuid.uuid4().hex,
            branch_name="plan",
        )
        for state in (first, second):
            await store.save(state)
            loaded = await store.load(sid)
            assert loaded is not None
            for name in (f.name for f in fields(SessionState)):
                assert getattr(loaded, name) == getattr(state, name), name
            record = await store.load_record(sid)
            assert record is not None and record.state == replace(state, turns=[])

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

    async def test_suspended_sessions_count_toward_the_user_cap(
        self, store: SessionStore
    ) -> None:
        """The per-user cap counts live sessions: ``SUSPENDED`` as well as ``ACTIVE``."""
        user = "suspended-" + uuid.uuid4().hex
        first = make_state(user)
        await store.create_session(first, max_live_per_user=1)
        await store.transition(first.session_id, _S, allowed_from=frozenset({_A}))
        assert await store.count_live_sessions(user) == 1
        second = make_state(user)
        with pytest.raises(SessionCapacityError):
            await store.create_session(second, max_live_per_user=1)
        assert await store.load(second.session_id) is None
        branch = make_state(user, parent_session_id=first.session_id, branch_name="b")
        with pytest.raises(SessionCapacityError):
            await store.fork_session(first.session_id, branch, max_live_per_user=1)
        assert await store.load(branch.session_id) is None
        await store.create_session(make_state(user), max_live_per_user=2)
        assert await store.count_live_sessions(user) == 2

    async def test_a_session_past_its_deadline_frees_the_user_cap(
        self, store: SessionStore
    ) -> None:
        """A live session past its deadline is not counted by the cap, before any sweep."""
        store.session_ttl = 60
        user = "lapsed-" + uuid.uuid4().hex
        lapsed = make_state(user)
        await store.create_session(lapsed, max_live_per_user=1)
        self.clock(store).advance(61)
        now = self.clock(store).now
        fresh = make_state(user, created_at=now, updated_at=now)
        await store.create_session(fresh, max_live_per_user=1)
        assert await store.count_live_sessions(user) == 1
        branch = make_state(
            user, created_at=now, updated_at=now, parent_session_id=fresh.session_id
        )
        await store.fork_session(fresh.session_id, branch, max_live_per_user=2)
        assert await store.count_live_sessions(user) == 2
        record = await store.load_record(lapsed.session_id)
        assert record is not None and record.state.status == SessionStatus.EXPIRED

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

    async def test_a_session_made_live_again_counts_as_live(self, store: SessionStore) -> None:
        # The store does what ``allowed_from`` allows (the manager never revives a
        # session; an operator's repair may): the indexes follow.
        user = "revived-" + uuid.uuid4().hex
        state = await self._session(store, user)
        await store.transition(state.session_id, _C, allowed_from=frozenset({_A}))
        assert await store.count_live_sessions(user) == 0
        await store.transition(state.session_id, _A, allowed_from=frozenset({_C}))
        assert await store.count_live_sessions(user) == 1
        page = await store.list_user_sessions(user, status=_A)
        assert [s.session_id for s in page.items] == [state.session_id]

    async def test_save_refuses_a_tombstoned_id_before_judging_its_turns(
        self, store: SessionStore
    ) -> None:
        chosen = "purged-" + uuid.uuid4().hex
        await self._session(store, "fred", session_id=chosen)
        await store.transition(chosen, _C, allowed_from=frozenset({_A}))
        self.clock(store).advance(10)
        assert await store.purge(chosen, tombstone_until=self.clock(store).now + timedelta(hours=1))
        twice = [make_turn(1, turn_id="same"), make_turn(2, turn_id="same")]
        with pytest.raises(SessionNotFoundError):
            await store.save(make_state("fred", session_id=chosen, turns=twice, turn_count=2))

    async def test_update_session_needs_a_live_session_that_exists(
        self, store: SessionStore
    ) -> None:
        """``update_session``: a missing session is named, an expired one refused unchanged;
        a suspended one (live) is updated and stays suspended."""
        store.session_ttl = 60
        with pytest.raises(SessionNotFoundError):
            await store.update_session(
                "missing-" + uuid.uuid4().hex, SessionPatch(variables={"a": 1})
            )
        paused = await self._session(store)
        await store.transition(paused.session_id, _S, allowed_from=frozenset({_A}))
        record = await store.update_session(paused.session_id, SessionPatch(variables={"a": 1}))
        assert record.state.variables == {"a": 1} and record.state.status == _S
        lapsed = await self._session(store, variables={"kept": True})
        self.clock(store).advance(61)
        with pytest.raises(SessionExpiredError):
            await store.update_session(lapsed.session_id, SessionPatch(variables={"a": 1}))
        loaded = await store.load(lapsed.session_id)
        assert loaded is not None and loaded.variables == {"kept": True}

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

    # ------------------------------------------- stored texts (optional capability)
    async def test_load_reusing_shows_the_stored_texts_once_or_just_loads(
        self, store: SessionStore
    ) -> None:
        """``load_reusing``: the default loads; an override offers the texts before decoding."""
        state = await self._session(store, metadata={"m": 1})
        turns = await self._append(store, state.session_id, 3)
        offers: list[tuple[SessionState, StoredTurns]] = []

        def decline(header: SessionState, stored: StoredTurns) -> list[SessionTurn] | None:
            offers.append((header, stored))
            return None

        loaded = await store.load_reusing(state.session_id, decline)
        assert loaded == await store.load(state.session_id)
        assert loaded is not None and loaded.turns == turns
        # A backend that overrides it offers its texts once per read (0 without turns).
        overridden = type(store).load_reusing is not SessionStore.load_reusing
        assert len(offers) == (1 if overridden else 0)
        for header, stored in offers:
            assert header.session_id == state.session_id and header.turns == []
            assert header.metadata == loaded.metadata
            assert stored.count == 3 and (stored.texts is None) != (stored.array is None)
            assert stored.texts is None or len(stored.texts) == 3
        others = [make_turn(100 + i) for i in range(3)]
        answered = await store.load_reusing(state.session_id, lambda _h, _s: list(others))
        assert answered is not None
        assert answered.turns == (others if offers else turns)
        assert answered.turn_count == loaded.turn_count
        assert await store.load_reusing("no-such-session", decline) is None

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

    async def test_a_closed_store_refuses_to_be_used(self, store_factory: StoreFactory) -> None:
        """``close()`` is idempotent; afterwards every operation raises ``StoreUnavailableError``
        (the in-memory store too, so code tested on it fails as it would in production)."""
        store = await store_factory()
        state = await self._session(store)
        await store.close()
        await store.close()
        with pytest.raises(StoreUnavailableError):
            await store.load_record(state.session_id)
        with pytest.raises(StoreUnavailableError):
            await store.append_turns(state.session_id, [make_turn(1)])
        with pytest.raises(StoreUnavailableError):
            await store.create_session(make_state("alice"))

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
            pytest.skip(
                "no corrupt_session fixture: override it to return a callable that "
                "damages a stored header (a store keeping live objects has none)"
            )
        state = await self._session(store)
        await store.append_turns(state.session_id, [make_turn(1)])
        await corrupt_session(store, state.session_id)
        with pytest.raises(CorruptRecordError) as info:
            await store.load(state.session_id)
        assert state.session_id in str(info.value)

    async def test_a_status_filter_sees_the_effective_status(self, store: SessionStore) -> None:
        """A session past its deadline is listed as EXPIRED, never as ACTIVE, before any
        sweep has stored it so."""
        store.session_ttl = 60
        lapsed = await self._session(store, "dora")
        self.clock(store).advance(61)
        now = self.clock(store).now
        live = await self._session(store, "dora", created_at=now, updated_at=now)
        active = await store.list_user_sessions("dora", status=_A)
        expired = await store.list_user_sessions("dora", status=SessionStatus.EXPIRED)
        assert [s.session_id for s in active.items] == [live.session_id]
        assert [s.session_id for s in expired.items] == [lapsed.session_id]
        assert expired.items[0].status == SessionStatus.EXPIRED
