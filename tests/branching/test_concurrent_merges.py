"""Merges into one parent at the same time keep what each merged (an outside audit:
on the durable stores two concurrent merges each wrote the variables they planned
from the same read, and the second dropped the first one's keys)."""

from __future__ import annotations

import asyncio
import threading

from lexigram.ai.session import BranchManager, InMemorySessionStore, SessionConfig
from lexigram.ai.session.branching import MergePlan
from lexigram.ai.session.manager.core import SessionManagerImpl

from ..checkpointing.harness import EnvFactory


async def test_concurrent_merges_keep_every_branchs_variables(make_env: EnvFactory) -> None:
    env = await make_env()
    manager = env.manager
    parent = (await manager.create("u", variables={"base": 0}, metadata={"m": 0})).session_id
    branches = [await env.branches.fork(parent, f"b{n}") for n in range(4)]
    for n, branch in enumerate(branches):
        await manager.update(
            branch.session_id, variables={"base": 0, f"from_b{n}": n}, metadata={f"mb{n}": n}
        )
        await manager.add_message(branch.session_id, "user", f"turn of b{n}")
    # A second BranchManager on the same store waits for the first one's merges too.
    other = BranchManager(env.store)
    merges = [
        (env.branches if n % 2 else other).merge(parent, branch.session_id)
        for n, branch in enumerate(branches)
    ]
    await asyncio.gather(*merges)
    state = await manager.get_state(parent)
    assert state.variables == {"base": 0, "from_b0": 0, "from_b1": 1, "from_b2": 2, "from_b3": 3}
    assert state.metadata == {"m": 0}  # AppendMerge leaves the parent's metadata
    assert sorted(t.content for t in state.turns) == [f"turn of b{n}" for n in range(4)]


async def test_a_failed_merge_lets_the_next_one_in(make_env: EnvFactory) -> None:
    env = await make_env()
    parent = (await env.manager.create("u")).session_id
    branch = await env.branches.fork(parent, "b")
    await env.manager.add_message(branch.session_id, "user", "x")
    await env.branches.merge(parent, branch.session_id)
    for _ in range(2):  # merged already: refused, and the lock is not left held
        try:
            await asyncio.wait_for(env.branches.merge(parent, branch.session_id), 10)
        except TimeoutError:
            raise AssertionError("the merge lock was left held") from None
        except Exception as exc:  # the refusal names the turn already merged
            assert "already" in str(exc)
        else:
            raise AssertionError("a second merge of the same branch was accepted")
    from lexigram.ai.session.branching import merge_locks

    assert all(key[0] != id(env.store) for key in merge_locks._locks)


class _SlowAppend:
    """A strategy that waits before planning: both merges read the parent first."""

    async def merge(self, parent, branch, new_turns):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.2)
        return MergePlan(turns=list(new_turns), variables={**parent.variables, **branch.variables})


async def _parent_with_branches(manager, branches: BranchManager, count: int):  # type: ignore[no-untyped-def]
    parent = (await manager.create("u", variables={"base": 0})).session_id
    ids = []
    for n in range(count):
        branch = (await branches.fork(parent, f"b{n}")).session_id
        await manager.update(branch, variables={"base": 0, f"k{n}": n})
        await manager.add_message(branch, "user", f"turn of b{n}")
        ids.append(branch)
    return parent, ids


async def test_merges_from_two_event_loops_keep_both(make_env: EnvFactory) -> None:
    """Threads with their own event loops merging through one store object wait for
    each other too (a regression audit: the lock was per event loop)."""
    env = await make_env()
    parent, ids = await _parent_with_branches(env.manager, env.branches, 2)
    errors: list[BaseException] = []

    def run(branch_id: str) -> None:
        try:
            asyncio.run(BranchManager(env.store).merge(parent, branch_id, strategy=_SlowAppend()))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(b,)) for b in ids]
    await asyncio.to_thread(lambda: [t.start() for t in threads] and [t.join(30) for t in threads])
    assert errors == []
    state = await env.manager.get_state(parent)
    assert state.variables == {"base": 0, "k0": 0, "k1": 1}


async def test_a_store_that_is_not_hashable_merges() -> None:
    """A store defining ``__eq__`` without ``__hash__`` (a dataclass plugin) merges as
    before the lock (a regression audit: TypeError unhashable type)."""

    class _EqStore(InMemorySessionStore):
        def __eq__(self, other: object) -> bool:
            return other is self

    store = _EqStore()
    manager = SessionManagerImpl(store, SessionConfig(auto_checkpoint_interval=None))
    branches = BranchManager(store)
    parent, ids = await _parent_with_branches(manager, branches, 1)
    merged = await branches.merge(parent, ids[0])
    assert [t.content for t in merged.turns] == ["turn of b0"]
