"""Fork, merge and list branches through ``BranchManager``, on every backend."""

from __future__ import annotations

import asyncio

import pytest
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.branching import (
    AppendMerge,
    BranchManager,
    MergePlan,
    MergeStrategy,
    SelectiveMerge,
)
from lexigram.ai.session.exceptions import (
    CheckpointNotFoundError,
    DuplicateTurnError,
    SessionCapacityError,
    SessionClosedError,
    SessionNotFoundError,
    SessionValidationError,
)

from ..checkpointing.harness import Env, EnvFactory, add, assert_totals_exact, ids, turn


async def _source(env: Env, count: int, **fields: object) -> tuple[str, list[SessionTurn]]:
    sid = (await env.manager.create("alice", **fields)).session_id  # type: ignore[arg-type]
    return sid, await add(env, sid, 0, count)


async def _fork_seq(env: Env, branch_id: str) -> int:
    record = await env.store.load_record(branch_id)
    assert record is not None and record.fork_seq is not None
    return record.fork_seq


async def test_fork_at_the_end(make_env: EnvFactory) -> None:
    env = await make_env()
    sid, turns = await _source(env, 6, variables={"topic": "tea"}, active_tools=["search"])
    branch = await env.branches.fork(sid, "idea")
    assert branch.session_id != sid
    assert branch.parent_session_id == sid and branch.branch_name == "idea"
    assert branch.user_id == "alice" and branch.status == SessionStatus.ACTIVE
    assert branch.turns == turns
    assert branch.variables == {"topic": "tea"} and branch.active_tools == ["search"]
    assert_totals_exact(branch)
    # The fork point is recorded: nothing follows it yet.
    seq = await _fork_seq(env, branch.session_id)
    assert await env.store.get_turns(branch.session_id, after_seq=seq) == []
    # Source and branch now move independently.
    on_branch = await add(env, branch.session_id, 100, 2)
    on_source = await add(env, sid, 200, 1)
    assert await env.store.get_turns(branch.session_id, after_seq=seq) == on_branch
    b = await env.manager.get_state(branch.session_id)
    s = await env.manager.get_state(sid)
    assert b is not None and ids(b.turns) == ids(turns + on_branch)
    assert s is not None and ids(s.turns) == ids(turns + on_source)
    assert s.parent_session_id is None and s.branch_name is None


async def test_fork_from_a_checkpoint(make_env: EnvFactory) -> None:
    env = await make_env()
    m = env.manager
    sid, turns = await _source(env, 4, variables={"v": "at-cp"})
    cp = await m.checkpoint(sid)
    await add(env, sid, 4, 3)
    await m.update(sid, variables={"v": "later"})
    branch = await env.branches.fork(sid, "from-cp", from_checkpoint=cp.checkpoint_id)
    assert branch.turns == turns
    assert branch.variables == {"v": "at-cp"}
    assert branch.parent_session_id == sid and branch.branch_name == "from-cp"
    assert_totals_exact(branch)
    assert branch.checkpoint_id is None
    seq = await _fork_seq(env, branch.session_id)
    assert await env.store.get_turns(branch.session_id, after_seq=seq) == []
    # The source is untouched by the fork.
    source = await m.get_state(sid)
    assert source is not None and source.turn_count == 7 and source.variables == {"v": "later"}


async def test_fork_refusals(make_env: EnvFactory) -> None:
    env = await make_env()
    sid, _ = await _source(env, 2)
    other, _ = await _source(env, 2)
    foreign = await env.manager.checkpoint(other)
    with pytest.raises(CheckpointNotFoundError):
        await env.branches.fork(sid, "x", from_checkpoint=foreign.checkpoint_id)
    with pytest.raises(CheckpointNotFoundError):
        await env.branches.fork(sid, "x", from_checkpoint="cp_missing")
    with pytest.raises(SessionNotFoundError):
        await env.branches.fork("no-such-session", "x")
    for bad in ("", "   ", None, 3):
        with pytest.raises(SessionValidationError) as info:
            await env.branches.fork(sid, bad)  # type: ignore[arg-type]
        assert info.value.field == "branch_name"
    assert await env.branches.list_branches(sid) == []


async def test_append_merge_is_exact(make_env: EnvFactory) -> None:
    env = await make_env()
    m = env.manager
    sid, base = await _source(env, 6, variables={"a": 1, "b": 1})
    branch = await env.branches.fork(sid, "explore")
    parent_more = await add(env, sid, 50, 2)
    branch_new = [turn(100 + i, tokens=10 * (i + 1), cost=0.5 + i) for i in range(3)]
    for t in branch_new:
        await m.add_turn(branch.session_id, t)
    await m.update(branch.session_id, variables={"b": 2, "c": 3})
    await m.update(sid, variables={"a": 1, "b": 1, "p": 9})

    merged = await env.branches.merge(sid, branch.session_id)
    assert merged.session_id == sid
    assert merged.turns == base + parent_more + branch_new  # ids, content, timestamps kept
    assert merged.variables == {"a": 1, "b": 2, "c": 3, "p": 9}  # branch wins, parent keys kept
    assert merged.status == SessionStatus.ACTIVE
    assert_totals_exact(merged)
    stored = await m.get_state(sid)
    assert stored is not None and stored.turns == merged.turns
    assert stored.total_tokens == merged.total_tokens
    # The branch itself is unchanged by the merge.
    after = await m.get_state(branch.session_id)
    assert after is not None and after.turns == base + branch_new


async def test_merge_after_fork_from_checkpoint_takes_only_post_fork_turns(
    make_env: EnvFactory,
) -> None:
    env = await make_env()
    m = env.manager
    sid, base = await _source(env, 5)
    cp = await m.checkpoint(sid)
    later = await add(env, sid, 5, 4)
    branch = await env.branches.fork(sid, "alt", from_checkpoint=cp.checkpoint_id)
    alt = await add(env, branch.session_id, 300, 2)
    merged = await env.branches.merge(sid, branch.session_id)
    assert ids(merged.turns) == ids(base + later + alt)
    assert_totals_exact(merged)


async def test_merging_twice_is_refused_and_changes_nothing(make_env: EnvFactory) -> None:
    env = await make_env()
    m = env.manager
    sid, _ = await _source(env, 3)
    branch = await env.branches.fork(sid, "b")
    await add(env, branch.session_id, 10, 2)
    await m.update(branch.session_id, variables={"x": 1})
    await env.branches.merge(sid, branch.session_id)
    before = await m.get_state(sid)
    await m.update(branch.session_id, variables={"x": 2})
    with pytest.raises(DuplicateTurnError):
        await env.branches.merge(sid, branch.session_id)
    after = await m.get_state(sid)
    assert after == before  # turns, variables, totals and updated_at untouched


async def test_merge_with_no_new_turns_merges_variables_only(make_env: EnvFactory) -> None:
    env = await make_env()
    m = env.manager
    sid, base = await _source(env, 3, variables={"a": 1})
    branch = await env.branches.fork(sid, "vars")
    await m.update(branch.session_id, variables={"a": 2, "z": 0})
    merged = await env.branches.merge(sid, branch.session_id)
    assert merged.turns == base and merged.variables == {"a": 2, "z": 0}
    assert_totals_exact(merged)


async def test_selective_merge_cherry_picks(make_env: EnvFactory) -> None:
    env = await make_env()
    m = env.manager
    sid, base = await _source(env, 3, variables={"a": 1})
    branch = await env.branches.fork(sid, "pick")
    new = await add(env, branch.session_id, 10, 4)
    await m.update(branch.session_id, variables={"a": 2})
    # Named out of order: merged in branch order.
    strategy = SelectiveMerge([new[3].turn_id, new[1].turn_id])
    merged = await env.branches.merge(sid, branch.session_id, strategy=strategy)
    assert merged.turns == [*base, new[1], new[3]]
    assert merged.variables == {"a": 1}  # not merged unless asked
    assert_totals_exact(merged)
    again = await env.branches.merge(
        sid, branch.session_id, strategy=SelectiveMerge([new[0].turn_id], merge_variables=True)
    )
    assert again.turns == [*base, new[1], new[3], new[0]]
    assert again.variables == {"a": 2}
    assert_totals_exact(again)


async def test_selective_merge_skips_turns_the_parent_has(make_env: EnvFactory) -> None:
    env = await make_env()
    sid, base = await _source(env, 3)
    branch = await env.branches.fork(sid, "pick")
    new = await add(env, branch.session_id, 10, 3)
    # base[1] is from before the fork: the parent has it; new[0] and new[2] it lacks.
    strategy = SelectiveMerge([base[1].turn_id, new[2].turn_id, new[0].turn_id])
    merged = await env.branches.merge(sid, branch.session_id, strategy=strategy)
    assert merged.turns == [*base, new[0], new[2]]
    assert_totals_exact(merged)
    # Naming only turns the parent has (one merged above) changes nothing.
    again = await env.branches.merge(
        sid, branch.session_id, strategy=SelectiveMerge([new[0].turn_id, base[0].turn_id])
    )
    assert again == merged
    stored = await env.manager.get_state(sid)
    assert stored is not None and stored.turns == [*base, new[0], new[2]]
    assert stored.turn_count == 5


async def test_selective_merge_refuses_unknown_ids(make_env: EnvFactory) -> None:
    env = await make_env()
    m = env.manager
    sid, _ = await _source(env, 2)
    branch = await env.branches.fork(sid, "pick")
    new = await add(env, branch.session_id, 10, 2)
    before = await m.get_state(sid)
    with pytest.raises(SessionValidationError) as info:
        await env.branches.merge(
            sid, branch.session_id, strategy=SelectiveMerge([new[0].turn_id, "nope-1", "nope-2"])
        )
    assert info.value.field == "turn_ids"
    assert "nope-1" in str(info.value) and "nope-2" in str(info.value)
    assert new[0].turn_id not in str(info.value)
    assert await m.get_state(sid) == before
    with pytest.raises(SessionValidationError):
        SelectiveMerge([])
    with pytest.raises(SessionValidationError):
        SelectiveMerge("abc")


class _SummaryMerge:
    """A user strategy: one assistant turn summing up the branch, plus a metadata note."""

    async def merge(
        self, parent: SessionState, branch: SessionState, new_turns: list[SessionTurn]
    ) -> MergePlan:
        summary = SessionTurn(
            turn_id=f"summary-of-{branch.session_id}",
            role="assistant",
            content=" | ".join(t.content for t in new_turns),
            timestamp=new_turns[-1].timestamp,
            tokens_used=sum(t.tokens_used for t in new_turns),
            cost=sum(t.cost for t in new_turns),
        )
        return MergePlan(
            turns=[summary],
            metadata={**parent.metadata, "merged_from": branch.branch_name},
        )


async def test_a_user_written_strategy(make_env: EnvFactory) -> None:
    env = await make_env()
    sid, base = await _source(env, 2)
    branch = await env.branches.fork(sid, "research")
    new = await add(env, branch.session_id, 10, 3)
    strategy = _SummaryMerge()
    assert isinstance(strategy, MergeStrategy)
    merged = await env.branches.merge(sid, branch.session_id, strategy=strategy)
    assert ids(merged.turns) == [*ids(base), f"summary-of-{branch.session_id}"]
    assert merged.turns[-1].content == " | ".join(t.content for t in new)
    assert merged.metadata == {"merged_from": "research"}
    assert_totals_exact(merged)


class _StateMerge:
    """A strategy written against the contract's shape: it returns the merged parent."""

    async def merge(
        self, parent: SessionState, branch: SessionState, *args: object, **kwargs: object
    ) -> SessionState:
        extra = [t for t in branch.turns if t.turn_id not in {p.turn_id for p in parent.turns}]
        return SessionState(
            session_id=parent.session_id,
            user_id=parent.user_id,
            status=parent.status,
            turns=[*parent.turns, *extra[-1:]],
            variables={**parent.variables, "picked": len(extra[-1:])},
            metadata=parent.metadata,
            created_at=parent.created_at,
            updated_at=parent.updated_at,
        )


async def test_a_strategy_returning_a_state_is_accepted_whatever_its_signature(
    make_env: EnvFactory,
) -> None:
    env = await make_env()
    sid, base = await _source(env, 2, variables={"a": 1})
    branch = await env.branches.fork(sid, "state")
    new = await add(env, branch.session_id, 10, 3)
    merged = await env.branches.merge(sid, branch.session_id, strategy=_StateMerge())  # type: ignore[arg-type]
    assert merged.turns == [*base, new[-1]]
    assert merged.variables == {"a": 1, "picked": 1}
    assert_totals_exact(merged)
    stored = await env.manager.get_state(sid)
    assert stored == merged


async def test_a_strategy_returning_garbage_changes_nothing(make_env: EnvFactory) -> None:
    class Bad:
        async def merge(self, parent: object, branch: object, new_turns: object) -> object:
            return {"turns": []}

    env = await make_env()
    sid, _ = await _source(env, 2)
    branch = await env.branches.fork(sid, "bad")
    await add(env, branch.session_id, 10, 1)
    before = await env.manager.get_state(sid)
    with pytest.raises(SessionValidationError) as info:
        await env.branches.merge(sid, branch.session_id, strategy=Bad())  # type: ignore[arg-type]
    assert info.value.field == "strategy"
    assert await env.manager.get_state(sid) == before


@pytest.mark.parametrize("strategy", [AppendMerge, SelectiveMerge])
async def test_a_strategy_class_for_an_instance_is_named(
    make_env: EnvFactory, strategy: type
) -> None:
    """``strategy=AppendMerge`` (the class) raised a bare TypeError from the unbound
    ``merge`` (an outside audit)."""
    env = await make_env()
    sid, _ = await _source(env, 2)
    branch = await env.branches.fork(sid, "cls")
    await add(env, branch.session_id, 10, 1)
    before = await env.manager.get_state(sid)
    with pytest.raises(SessionValidationError) as info:
        await env.branches.merge(sid, branch.session_id, strategy=strategy)
    assert info.value.field == "strategy" and f"{strategy.__name__}(" in str(info.value)
    assert await env.manager.get_state(sid) == before


async def test_a_class_whose_merge_is_a_classmethod_is_a_strategy(make_env: EnvFactory) -> None:
    """The check above refused every class, this one too (a regression audit)."""

    class KeepBranchTurns:
        @classmethod
        async def merge(
            cls, parent: SessionState, branch: SessionState, new_turns: list[SessionTurn]
        ) -> MergePlan:
            return MergePlan(turns=list(new_turns))

    env = await make_env()
    sid, _ = await _source(env, 2)
    branch = await env.branches.fork(sid, "classy")
    await add(env, branch.session_id, 10, 1)
    merged = await env.branches.merge(
        sid, branch.session_id, strategy=KeepBranchTurns  # type: ignore[arg-type]
    )
    assert merged.turn_count == 3


async def test_a_turn_limit_on_an_active_branch_does_not_say_closed(
    make_env: EnvFactory,
) -> None:
    """A branch forked at max_turns_per_session stays ACTIVE and refuses its next turn;
    the error said "... and is closed" (an outside audit)."""
    from lexigram.ai.session.exceptions import TurnLimitReachedError

    env = await make_env(max_turns_per_session=3)
    sid, _ = await _source(env, 3)
    branch = await env.branches.fork(sid, "at-cap")
    with pytest.raises(TurnLimitReachedError) as info:
        await add(env, branch.session_id, 10, 1)
    assert "closed" not in str(info.value) and "accepts no more turns" in str(info.value)
    state = await env.manager.get_header(branch.session_id)
    assert state is not None and state.status is SessionStatus.ACTIVE


async def test_merge_refusals(make_env: EnvFactory) -> None:
    env = await make_env()
    sid, _ = await _source(env, 2)
    other, _ = await _source(env, 2)
    branch = await env.branches.fork(sid, "b")
    await add(env, branch.session_id, 10, 1)
    with pytest.raises(SessionNotFoundError):
        await env.branches.merge(sid, "no-such-branch")
    with pytest.raises(SessionNotFoundError):
        await env.branches.merge("no-such-parent", branch.session_id)
    # Only into the session it was forked from: elsewhere its fork point means nothing.
    before = await env.manager.get_state(other)
    with pytest.raises(SessionValidationError) as info:
        await env.branches.merge(other, branch.session_id)
    assert info.value.field == "branch_id"
    with pytest.raises(SessionValidationError):
        await env.branches.merge(sid, sid)
    assert await env.manager.get_state(other) == before
    await env.manager.close(sid)
    with pytest.raises(SessionClosedError):
        await env.branches.merge(sid, branch.session_id)


async def test_a_deleted_sessions_branches_stay_out_of_a_new_one_under_its_id(
    make_env: EnvFactory,
) -> None:
    env = await make_env(max_branches_per_session=1)
    sid, _ = await _source(env, 2)
    orphan = await env.branches.fork(sid, "alice's idea")
    await add(env, orphan.session_id, 10, 2)
    await env.manager.delete(sid)
    reborn = (await env.manager.create("bob", session_id=sid)).session_id
    assert reborn == sid
    assert await env.branches.list_branches(sid) == []
    # Alice's branch names the id as its parent but is no branch of Bob's session:
    # merging it would hand her turns to him.
    with pytest.raises(SessionValidationError) as info:
        await env.branches.merge(sid, orphan.session_id)
    assert info.value.field == "branch_id"
    bobs = await env.manager.get_state(sid)
    assert bobs is not None and bobs.turns == [] and bobs.user_id == "bob"
    # The cap counts Bob's own forks only.
    mine = await env.branches.fork(sid, "bob's idea")
    assert [b.session_id for b in await env.branches.list_branches(sid)] == [mine.session_id]
    with pytest.raises(SessionCapacityError):
        await env.branches.fork(sid, "one too many")
    left = await env.manager.get_state(orphan.session_id)
    assert left is not None and left.parent_session_id == sid and left.turn_count == 4


async def test_merge_respects_the_turn_cap(make_env: EnvFactory) -> None:
    env = await make_env(max_turns_per_session=6)
    sid, _ = await _source(env, 4)
    branch = await env.branches.fork(sid, "long")
    await add(env, branch.session_id, 10, 2)  # branch at 6: closed by the cap
    await add(env, sid, 20, 1)  # parent at 5
    before = await env.manager.get_state(sid)
    with pytest.raises(SessionCapacityError):
        await env.branches.merge(sid, branch.session_id)
    assert await env.manager.get_state(sid) == before


async def test_branch_limit_counts_forks_of_the_source(make_env: EnvFactory) -> None:
    env = await make_env(max_branches_per_session=2)
    sid, _ = await _source(env, 1)
    first = await env.branches.fork(sid, "one")
    second = await env.branches.fork(sid, "two")
    with pytest.raises(SessionCapacityError) as info:
        await env.branches.fork(sid, "three")
    assert "max_branches_per_session=2" in str(info.value)
    listed = await env.branches.list_branches(sid)
    assert [(b.session_id, b.branch_name) for b in listed] == [
        (first.session_id, "one"),
        (second.session_id, "two"),
    ]
    assert all(b.parent_session_id == sid for b in listed)
    # A branch's own forks and other sessions' forks are counted separately.
    nested = await env.branches.fork(first.session_id, "nested")
    other, _ = await _source(env, 1)
    await env.branches.fork(other, "elsewhere")
    assert [b.session_id for b in await env.branches.list_branches(first.session_id)] == [
        nested.session_id
    ]
    assert len(await env.branches.list_branches(sid)) == 2
    # Deleting a branch frees its slot.
    await env.manager.delete(second.session_id)
    await env.branches.fork(sid, "three")
    assert [b.branch_name for b in await env.branches.list_branches(sid)] == ["one", "three"]


async def test_branch_limit_holds_under_concurrent_forks(make_env: EnvFactory) -> None:
    env = await make_env(max_branches_per_session=3)
    sid, _ = await _source(env, 2)
    other = await make_env(max_branches_per_session=3)  # a second store instance
    results = await asyncio.gather(
        *((env if i % 2 else other).branches.fork(sid, f"b{i}") for i in range(8)),
        return_exceptions=True,
    )
    made = [r for r in results if isinstance(r, SessionState)]
    refused = [r for r in results if isinstance(r, SessionCapacityError)]
    assert len(made) == 3 and len(refused) == 5
    assert len(await env.branches.list_branches(sid)) == 3


async def test_zero_branches_allowed(make_env: EnvFactory) -> None:
    env = await make_env(max_branches_per_session=0)
    sid, _ = await _source(env, 1)
    with pytest.raises(SessionCapacityError):
        await env.branches.fork(sid, "none")
    with pytest.raises(SessionValidationError):
        BranchManager(env.store, -1)


async def test_fork_counts_toward_the_user_cap(make_env: EnvFactory) -> None:
    env = await make_env(max_sessions_per_user=2)
    sid, _ = await _source(env, 1)
    await env.branches.fork(sid, "one")
    with pytest.raises(SessionCapacityError):
        await env.branches.fork(sid, "two")


async def test_default_strategy_is_append_merge(make_env: EnvFactory) -> None:
    env = await make_env()
    sid, base = await _source(env, 2)
    a = await env.branches.fork(sid, "a")
    b = await env.branches.fork(sid, "b")
    new_a = await add(env, a.session_id, 10, 2)
    new_b = await add(env, b.session_id, 20, 2)
    before = await env.manager.checkpoint(sid)
    await env.branches.merge(sid, a.session_id)
    merged = await env.branches.merge(sid, b.session_id, strategy=AppendMerge())
    assert merged.turns == base + new_a + new_b
    assert_totals_exact(merged)
    # Restoring the parent to before the merges makes a branch mergeable again.
    await env.manager.restore(before.checkpoint_id)
    again = await env.branches.merge(sid, b.session_id)
    assert again.turns == base + new_b
    assert_totals_exact(again)


async def test_a_strategy_in_the_original_two_argument_form(make_env: EnvFactory) -> None:
    from dataclasses import replace

    class KeepLastBranchTurn:
        """Written for the original API: merge(parent, branch) -> SessionState."""

        async def merge(self, parent: SessionState, branch: SessionState) -> SessionState:
            return replace(
                parent,
                turns=[*parent.turns, branch.turns[-1]],
                variables={**parent.variables, "picked": branch.turns[-1].turn_id},
            )

    env = await make_env()
    sid, base = await _source(env, 2)
    branch = await env.branches.fork(sid, "legacy")
    new = await add(env, branch.session_id, 10, 3)
    merged = await env.branches.merge(sid, branch.session_id, strategy=KeepLastBranchTurn())  # type: ignore[arg-type]
    assert ids(merged.turns) == [*ids(base), new[-1].turn_id]
    assert merged.variables["picked"] == new[-1].turn_id
    assert_totals_exact(merged)

    class ReturnsAPlan:
        async def merge(self, parent: SessionState, branch: SessionState) -> object:
            return "not a state"

    with pytest.raises(SessionValidationError, match="SessionState"):
        await env.branches.merge(sid, branch.session_id, strategy=ReturnsAPlan())  # type: ignore[arg-type]


class _PlainMerge:
    """A strategy whose ``merge`` is a plain function returning its plan."""

    def merge(
        self, parent: SessionState, branch: SessionState, new_turns: list[SessionTurn]
    ) -> MergePlan:
        return MergePlan(turns=list(new_turns[-1:]), variables=None, metadata=None)


async def test_a_plain_merge_method_is_taken_like_an_async_one(make_env: EnvFactory) -> None:
    """It raised a raw ``TypeError`` (MergePlan can't be used in 'await'; an outside audit)."""
    env = await make_env()
    sid, base = await _source(env, 2)
    branch = await env.branches.fork(sid, "plain")
    new = await add(env, branch.session_id, 10, 2)
    merged = await env.branches.merge(sid, branch.session_id, strategy=_PlainMerge())  # type: ignore[arg-type]
    assert ids(merged.turns) == [*ids(base), new[-1].turn_id]
    assert_totals_exact(merged)
