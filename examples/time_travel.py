"""Time travel and branching, end to end: checkpoints, restore, fork, merge.

Run: python examples/time_travel.py

It uses the SQL store on a throw-away SQLite file (``backend="sql"``) when the
SQL store is installed, else the in-memory store, and prints the timeline:

1. 30 turns with an automatic checkpoint every 10 turns;
2. restore the checkpoint at turn 10, add 5 turns on that timeline;
3. restore the checkpoint at turn 20: exactly its 20 turns come back;
4. fork a branch from the checkpoint at turn 10, work on it, merge it back;
5. cherry-pick one turn from a second branch.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import tempfile
from pathlib import Path

os.environ.setdefault("LEX_QUIET", "1")
os.environ.setdefault("LEX_LOGGING__LEVEL", "WARNING")

from lexigram.logging import configure_logging

configure_logging(level="WARNING")

from lexigram.contracts.ai.session import SessionState  # noqa: E402

from lexigram import Application  # noqa: E402
from lexigram.ai.session import (  # noqa: E402
    BranchManager,
    CheckpointManager,
    SelectiveMerge,
    SessionManagerImpl,
    SessionModule,
)
from lexigram.ai.session.config import SessionConfig  # noqa: E402

TOPICS = ["flights", "hotels", "museums", "food", "budget", "trains"]


def _config(db_file: Path) -> SessionConfig:
    if importlib.util.find_spec("lexigram.ai.session.stores.database") is not None:
        return SessionConfig(
            backend="sql",
            database_url=f"sqlite+aiosqlite:///{db_file}",
            auto_checkpoint_interval=10,
            max_checkpoints_per_session=50,
            max_branches_per_session=5,
        )
    print("(the SQL store is not installed here: using the in-memory store)")
    return SessionConfig(backend="memory", auto_checkpoint_interval=10)


def _show(label: str, state: SessionState) -> None:
    last = state.turns[-1].content if state.turns else "-"
    print(
        f"  {label:<34} turns={state.turn_count:<3} tokens={state.total_tokens:<5} "
        f"cost=${state.total_cost:.2f} vars={state.variables} last={last!r}"
    )


async def _chat(manager: SessionManagerImpl, sid: str, start: int, count: int, tag: str) -> None:
    for n in range(start, start + count):
        topic = TOPICS[(n // 2) % len(TOPICS)]
        if n % 2 == 0:
            await manager.add_message(
                sid, "user", f"[{tag}] turn {n + 1}: what about {topic}?", tokens_used=10, cost=0.01
            )
        else:
            await manager.add_message(
                sid,
                "assistant",
                f"[{tag}] turn {n + 1}: {topic} sorted.",
                tokens_used=30,
                cost=0.03,
            )


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = _config(Path(tmp) / "sessions.db")
        print(f"backend: {config.backend}")
        module = SessionModule.configure(config, enable_cleanup_scheduler=False)
        async with Application.boot(modules=[module]) as app:
            manager = await app.container.resolve(SessionManagerImpl)
            checkpoints = await app.container.resolve(CheckpointManager)
            branches = await app.container.resolve(BranchManager)
            await run(manager, checkpoints, branches)


async def run(
    manager: SessionManagerImpl, checkpoints: CheckpointManager, branches: BranchManager
) -> None:
    """The walk-through itself."""
    session = await manager.create("alice", variables={"city": "Lisbon"})
    sid = session.session_id

    print("\n1. 30 turns; an automatic checkpoint every 10 turns")
    await _chat(manager, sid, 0, 30, "main")
    state = await manager.get_state(sid)
    assert state is not None
    _show("session now", state)
    listed = await checkpoints.list(sid)  # oldest first, headers only
    for cp in listed:
        parent = cp.parent_checkpoint_id[:10] if cp.parent_checkpoint_id else None
        print(
            f"  checkpoint {cp.checkpoint_id[:10]}  at turn {cp.state.turn_count:<3} "
            f"parent={parent} metadata={cp.metadata}"
        )
    by_count = {cp.state.turn_count: cp for cp in listed}
    at_10, at_20 = by_count[10], by_count[20]

    print("\n2. restore the checkpoint at turn 10, then take another path")
    _show("restored to turn 10", await manager.restore(at_10.checkpoint_id))
    await manager.update(sid, variables={"city": "Porto"})
    await _chat(manager, sid, 10, 5, "detour")
    detour = await manager.get_state(sid)
    assert detour is not None
    _show("after 5 detour turns", detour)

    print("\n3. restore the checkpoint at turn 20: the detour is set aside, nothing is lost")
    back = await manager.restore(at_20.checkpoint_id)
    _show("restored to turn 20", back)
    assert back.turn_count == 20 and all("[main]" in t.content for t in back.turns)
    print(f"  every checkpoint is still there: {len(await checkpoints.list(sid))}")

    print("\n4. fork from the checkpoint at turn 10, work on the branch, merge it back")
    branch = await branches.fork(sid, "night-train", from_checkpoint=at_10.checkpoint_id)
    _show(f"branch {branch.branch_name!r} at its fork", branch)
    await _chat(manager, branch.session_id, 100, 4, "branch")
    await manager.update(branch.session_id, variables={"city": "Lisbon", "transport": "train"})
    merged = await branches.merge(sid, branch.session_id)  # AppendMerge by default
    _show("parent after AppendMerge", merged)
    print(f"  merged turns: {[t.content[:22] for t in merged.turns[20:]]}")
    assert merged.turn_count == 24
    assert merged.total_tokens == sum(t.tokens_used for t in merged.turns)

    print("\n5. cherry-pick one turn from a second branch")
    second = await branches.fork(sid, "ideas")
    await _chat(manager, second.session_id, 200, 3, "idea")
    ideas = await manager.get_turns(second.session_id, last=3)
    picked = await branches.merge(
        sid, second.session_id, strategy=SelectiveMerge([ideas[1].turn_id])
    )
    _show("parent after SelectiveMerge", picked)
    names = [b.branch_name for b in await branches.list_branches(sid)]
    print(f"  branches of the session: {names}")


if __name__ == "__main__":
    asyncio.run(main())
