"""Merges into one parent at the same time keep what each merged (an outside audit:
on the durable stores two concurrent merges each wrote the variables they planned
from the same read, and the second dropped the first one's keys)."""

from __future__ import annotations

import asyncio

from lexigram.ai.session import BranchManager

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

    assert not any(merge_locks._locks.get(env.store, {}).values())
