"""Random concurrent manager calls from two store instances ("two processes"), then invariants.

Many tasks, split between two managers over two store instances of one namespace, call
create, add_turn(s), checkpoint (with metadata or not), restore, fork (from a checkpoint
or not), merge (all or selected turns), suspend, resume, close, delete, pop, clear,
update, list, export_user and erase_user at random over a small pool of caller-chosen
session ids, so that sessions are deleted and created again under the same id while the other
instance still holds what it knew of them. Only the package's own errors may come out
(refusals such as not found, closed, capacity); afterwards every stored session must
read back (encrypted ones included), with ``turn_count`` and the totals equal to its
turns, no duplicate turn id, and every cap kept (turns, checkpoints, branches, live
sessions per user). A separate pool of append-only sessions must hold every turn whose
append was acknowledged.

A second run adds time: one test clock for both instances, moved by the tasks, so that
sessions expire, and sweeps from both instances.

``STRESS_PURGE_AFTER`` (seconds, default 30 days) lets the sweeps purge too; with a short
one an append-only session that happens to expire may be purged, so CI keeps the default.
``STRESS_SEEDS`` (default 1), ``STRESS_TASKS`` (12), ``STRESS_OPS`` (50 per task).
"""

from __future__ import annotations

import asyncio
import math
import os
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest
from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session import SessionConfig, SessionManagerImpl
from lexigram.ai.session.branching import BranchManager, SelectiveMerge
from lexigram.ai.session.exceptions import (
    CorruptRecordError,
    EncryptionKeyError,
    SessionError,
)
from lexigram.ai.session.manager.cleanup import SessionCleanupScheduler
from lexigram.ai.session.testing import FakeClock

from .backends import BackendSpec, all_specs

SPECS = [pytest.param(spec, id=spec.name, marks=spec.marks) for spec in all_specs()]
SEEDS = [int(s) for s in os.environ.get("STRESS_SEEDS", "1").split(",")]
TASKS = int(os.environ.get("STRESS_TASKS", "12"))
OPS = int(os.environ.get("STRESS_OPS", "50"))
USERS = ["alice", "bob"]
POOL = [f"c{i}" for i in range(6)]
APPEND_ONLY = [f"ao{i}" for i in range(3)]
CONFIG = SessionConfig(
    session_ttl=3600,
    purge_after_s=int(os.environ.get("STRESS_PURGE_AFTER", str(30 * 86400))),
    auto_checkpoint_interval=4,
    max_turns_per_session=200,
    max_sessions_per_user=4,
    max_checkpoints_per_session=3,
    max_branches_per_session=2,
)
KINDS = (
    "create", "create", "create", "create", "turn", "turn", "turns", "append_only",
    "append_only", "checkpoint", "restore", "fork", "merge", "suspend", "resume", "close",
    "delete", "pop", "update", "get", "list", "clear", "erase",
)  # fmt: skip


def _turn(turn_id: str, content: str, tokens: int = 1, cost: float = 0.25) -> SessionTurn:
    return SessionTurn(
        turn_id=turn_id,
        role="user",
        content=content,
        timestamp=datetime.now(UTC),
        tokens_used=tokens,
        cost=cost,
    )


class Run:
    """Two managers over two store instances, and what the tasks were told."""

    def __init__(self, stores: list[object], clock: FakeClock | None = None) -> None:
        self.stores = stores
        self.clock = clock
        if clock is not None:  # both "processes" on one clock, moved by the tasks
            for store in stores:
                store.clock = clock  # type: ignore[attr-defined]
        self.managers = [SessionManagerImpl(s, CONFIG) for s in stores]  # type: ignore[arg-type]
        self.sweepers = [SessionCleanupScheduler(m) for m in self.managers]
        self.branches = [
            BranchManager(
                s,  # type: ignore[arg-type]
                CONFIG.max_branches_per_session,
                max_sessions_per_user=CONFIG.max_sessions_per_user,
                max_turns_per_session=CONFIG.max_turns_per_session,
                notifier=m.notifier,
            )
            for s, m in zip(stores, self.managers, strict=True)
        ]
        self.acknowledged: dict[str, set[str]] = defaultdict(set)
        self.checkpoints: list[str] = []
        self.unexpected: Counter[str] = Counter()

    async def task(self, seed: int, t: int) -> None:
        rng = random.Random(seed * 1000 + t)
        manager, branches = self.managers[t % 2], self.branches[t % 2]
        store = self.stores[t % 2]
        kinds = KINDS if self.clock is None else (*KINDS, "tick", "sweep")
        for k in range(OPS):
            sid, kind, tid = rng.choice(POOL), rng.choice(kinds), f"t{t}-{k}"
            try:
                if kind == "create":
                    await manager.create(rng.choice(USERS), session_id=sid)
                elif kind == "turn":
                    text = "x" * rng.randrange(1, 200)
                    await manager.add_turn(sid, _turn(tid, text, rng.randrange(5)))
                elif kind == "turns":
                    batch = [_turn(f"{tid}-{j}", "y", 1, 0.5) for j in range(rng.randrange(1, 4))]
                    await manager.add_turns(sid, batch)
                elif kind == "append_only":
                    target = rng.choice(APPEND_ONLY)
                    ids = [tid] if rng.random() < 0.5 else [f"{tid}-a", f"{tid}-b"]
                    await manager.add_turns(target, [_turn(i, "z", 1, 0.0) for i in ids])
                    self.acknowledged[target].update(ids)
                elif kind == "checkpoint":
                    label = {"by": t, "k": k} if rng.random() < 0.5 else None
                    made = await manager.checkpoint(sid, label)
                    self.checkpoints.append(made.checkpoint_id)
                elif kind == "restore" and self.checkpoints:
                    await manager.restore(rng.choice(self.checkpoints))
                elif kind == "fork":
                    point = rng.choice(self.checkpoints) if self.checkpoints else None
                    if rng.random() < 0.5:
                        point = None
                    await branches.fork(sid, rng.choice(["x", "y"]), from_checkpoint=point)
                elif kind == "merge":
                    forks = await store.list_branches(sid)  # type: ignore[attr-defined]
                    if forks:
                        branch = rng.choice(forks).state.session_id
                        picked = SelectiveMerge([f"t{rng.randrange(TASKS)}-{rng.randrange(OPS)}"])
                        strategy = picked if rng.random() < 0.3 else None
                        await branches.merge(sid, branch, strategy=strategy)
                elif kind in ("suspend", "resume", "close", "delete"):
                    await getattr(manager, kind)(sid)
                elif kind == "pop":
                    await manager.pop_turn(sid)
                elif kind == "clear":
                    await manager.clear_turns(sid)
                elif kind == "update":
                    await manager.update(sid, variables={"k": k, "t": t})
                elif kind == "get":
                    await manager.get_state(sid)
                elif kind == "list":
                    await manager.list_sessions(rng.choice(USERS))
                elif kind == "erase" and rng.random() < 0.3:
                    await manager.erase_user(rng.choice(USERS))
                elif kind == "erase":
                    await manager.export_user(rng.choice(USERS))
                elif kind == "tick" and self.clock is not None:
                    self.clock.advance(rng.choice([5, 30, 120, 400]))
                elif kind == "sweep":
                    await self.sweepers[t % 2].sweep()
            except (CorruptRecordError, EncryptionKeyError) as exc:  # data that does not read
                self.unexpected[f"{kind}: {type(exc).__name__}: {exc}"[:2000]] += 1
            except SessionError:
                pass  # a refusal the contract allows (not found, closed, capacity, ...)
            except Exception as exc:  # anything else is a defect
                self.unexpected[f"{kind}: {type(exc).__name__}: {exc}"[:2000]] += 1

    async def problems(self) -> list[str]:
        """Every invariant the stored data breaks, read through the first instance."""
        manager, store = self.managers[0], self.stores[0]
        found: list[str] = []
        every: set[str] = set()
        for user in [*USERS, "carol"]:
            page = await manager.list_sessions(user, limit=1000)
            every.update(s.session_id for s in page.items)
            live = [s for s in page.items if s.status.value in ("active", "suspended")]
            counted = await manager.count_live_sessions(user)
            if counted != len(live):
                found.append(f"{user}: {len(live)} live listed, {counted} counted")
            if user != "carol" and len(live) > CONFIG.max_sessions_per_user:
                found.append(f"{user}: {len(live)} live sessions")
        for sid in sorted(every):
            state = await manager.get_state(sid)  # every session must read back
            if state is None:
                continue
            ids = [t.turn_id for t in state.turns]
            if state.turn_count != len(ids) or len(set(ids)) != len(ids):
                found.append(f"{sid}: turn_count {state.turn_count}, {len(ids)} turns")
            if state.total_tokens != sum(t.tokens_used for t in state.turns):
                found.append(f"{sid}: total_tokens {state.total_tokens}")
            if not math.isclose(state.total_cost, sum(t.cost for t in state.turns)):
                found.append(f"{sid}: total_cost {state.total_cost}")
            if state.turn_count > CONFIG.max_turns_per_session:
                found.append(f"{sid}: {state.turn_count} turns")
            checkpoints = await manager.list_checkpoints(sid)
            if len(checkpoints) > CONFIG.max_checkpoints_per_session:
                found.append(f"{sid}: {len(checkpoints)} checkpoints")
            forks = await store.list_branches(sid)  # type: ignore[attr-defined]
            if len(forks) > CONFIG.max_branches_per_session:
                found.append(f"{sid}: {len(forks)} branches")
        for sid in APPEND_ONLY:
            state = await manager.get_state(sid)
            assert state is not None
            stored = {t.turn_id for t in state.turns}
            lost = self.acknowledged[sid] - stored
            if lost or state.turn_count != len(stored):
                found.append(f"{sid}: {len(lost)} acknowledged turns lost")
        return found


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("spec", SPECS)
async def test_two_instances_keep_every_invariant_under_random_concurrency(
    spec: BackendSpec, seed: int
) -> None:
    await _stress(spec, seed, None)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("spec", SPECS)
async def test_and_with_time_passing_and_two_sweepers(spec: BackendSpec, seed: int) -> None:
    """The same, on one test clock the tasks move (sessions expire) and with sweeps from
    both instances; nothing is purged (``purge_after_s`` is longer than the run)."""
    await _stress(spec, seed, FakeClock(datetime.now(UTC)))


async def _stress(spec: BackendSpec, seed: int, clock: FakeClock | None) -> None:
    async with spec.open() as factory:
        run = Run([await factory(), await factory()], clock)
        for sid in APPEND_ONLY:
            await run.managers[0].create("carol", session_id=sid)
        await asyncio.gather(*(run.task(seed, t) for t in range(TASKS)))
        assert not run.unexpected, dict(run.unexpected)
        assert await run.problems() == []
        assert sum(len(ids) for ids in run.acknowledged.values()) > 0
