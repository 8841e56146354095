"""Randomized parity through the manager: in-memory, SQLite, PostgreSQL and Redis agree.

A seeded random sequence of manager calls (create with caller-chosen ids, turns,
messages, updates, lifecycle moves, checkpoints and restores, forks and merges,
sweeps, reads) runs against one manager per backend, all on one injectable clock.
Inputs include what must be refused: numbers no backend can store (2**63 - 1,
2**53 + 1, 2**70, inf, nan, negatives, bools), lone surrogates, over-long ids (1 MB),
control characters, duplicate turn ids, writes to suspended/closed/expired sessions,
totals past 2**53 - 1. For every call every backend must give the same result, or an
error of the same type naming the same field; after every call the touched session
must be stored identically, and every few calls every session, its checkpoints and
the users' counts are compared. At the end each user is exported and erased in turn,
with the same answers everywhere.

``PARITY_SEEDS`` (environment, default 1 to 10) chooses the sequences; ``PARITY_STEPS`` their
length; ``PARITY_BACKENDS`` the backends (the first is the reference; e.g.
``in_memory,sqlite+enc,postgres+enc,mariadb+enc,redis+enc`` for encryption at rest).
Ids that the manager draws at random (turn ids of ``add_message``, checkpoint and
branch ids) are made deterministic per backend, so that the stored states can be
compared field by field.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionState, SessionTurn

from lexigram.ai.session import SessionConfig, SessionManagerImpl
from lexigram.ai.session.branching import BranchManager, SelectiveMerge
from lexigram.ai.session.exceptions import SessionError, SessionValidationError
from lexigram.ai.session.manager import checkpoints as checkpoints_module
from lexigram.ai.session.manager import core as core_module
from lexigram.ai.session.manager.cleanup import SessionCleanupScheduler, SweepReport
from lexigram.ai.session.stores.base import SessionPage, SessionStore
from lexigram.ai.session.testing import FakeClock
from lexigram.ai.session.validation import MAX_SAFE_INT

from .backends import all_specs

BACKENDS = tuple(
    os.environ.get("PARITY_BACKENDS", "in_memory,sqlite,postgres,mariadb,redis").split(",")
)
SPECS = sorted((s for s in all_specs() if s.name in BACKENDS), key=lambda s: BACKENDS.index(s.name))
pytestmark = [mark for spec in SPECS for mark in spec.marks]
SEEDS = [int(s) for s in os.environ.get("PARITY_SEEDS", "1,2,3,4,5,6,7,8,9,10").split(",")]
STEPS = int(os.environ.get("PARITY_STEPS", "150"))
T0 = datetime(2026, 3, 1, tzinfo=UTC)

SESSIONS = [f"s{i}" for i in range(8)]
BRANCHES = [f"b-{i}" for i in range(1, 4)]
CHECKPOINTS = [f"cp-{i}" for i in range(1, 7)]
USERS = ["alice", "bob"]
HUGE = "i" * 1_000_000
BAD_IDS: list[Any] = ["", "   ", "x" * 256, "line\nbreak", "nul\x00", "lone\ud800", HUGE, 7]
BAD_TOKENS: list[Any] = [2**63 - 1, 2**53 + 1, 2**70, -1, True, 1.5]
BAD_COSTS: list[Any] = [math.inf, math.nan, -0.5, False, "1"]
BAD_TEXT: list[Any] = ["\ud800", "a\udfffb", None, 3]
BAD_JSON: list[Any] = [
    {"k": math.nan},
    {"k": "\ud800"},
    {"k": 2**64},
    {"\udc00": 1},
    {"k": {1, 2}},
]


def _norm(value: Any) -> Any:
    """A comparable form: dataclasses as dicts, times as UTC ISO text, NaN as a marker."""
    if isinstance(value, SessionPage):
        return {"items": _norm(value.items), "more": value.next_cursor is not None}
    if isinstance(value, SweepReport):
        return {"expired": value.expired, "purged": value.purged, "damaged": value.damaged}
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _norm(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_norm(v) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def _error(exc: BaseException) -> tuple[Any, ...]:
    field_name = exc.field if isinstance(exc, SessionValidationError) else None
    return ("error", type(exc).__name__, field_name)


# ------------------------------------------------------------- deterministic ids
_current: list[Side] = []


def _next(kind: str) -> int:
    side = _current[-1]
    side.counters[kind] = side.counters.get(kind, 0) + 1
    return side.counters[kind]


@contextmanager
def _deterministic_ids(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Ids the manager draws at random become ``auto-N``/``cp-N``/``b-N`` per backend."""
    from lexigram.ai.session.branching import branch_manager as branch_module

    monkeypatch.setattr(core_module, "new_turn_id", lambda: f"auto-{_next('turn')}")
    monkeypatch.setattr(checkpoints_module, "new_checkpoint_id", lambda: f"cp-{_next('cp')}")
    monkeypatch.setattr(branch_module, "new_session_id", lambda: f"b-{_next('branch')}")
    yield


@dataclass
class Side:
    """One backend: its store, manager, branch manager and sweeper."""

    name: str
    store: SessionStore
    manager: SessionManagerImpl
    branches: BranchManager
    sweeper: SessionCleanupScheduler
    counters: dict[str, int] = field(default_factory=dict)


Op = Callable[[Side], Awaitable[Any]]


@asynccontextmanager
async def _sides(clock: FakeClock) -> AsyncIterator[list[Side]]:
    config = SessionConfig(
        session_ttl=200,
        auto_checkpoint_interval=5,
        max_turns_per_session=12,
        max_sessions_per_user=4,
        max_checkpoints_per_session=3,
        max_branches_per_session=2,
        purge_after_s=600,
    )
    async with AsyncExitStack() as stack:
        sides: list[Side] = []
        for spec in SPECS:
            factory = await stack.enter_async_context(spec.open())
            store = await factory()
            store.clock = clock
            manager = SessionManagerImpl(store, config)
            branches = BranchManager(
                store,
                config.max_branches_per_session,
                max_sessions_per_user=config.max_sessions_per_user,
                max_turns_per_session=config.max_turns_per_session,
                notifier=manager.notifier,
            )
            sweeper = SessionCleanupScheduler(manager)
            sides.append(Side(spec.name, store, manager, branches, sweeper))
        yield sides


# ------------------------------------------------------------------ the script
#: For each argument a call may get wrong: the invalid values to draw from.
BAD: dict[str, list[Any]] = {
    "id": BAD_IDS,
    "user": ["", "u\ud800", HUGE],
    "tokens": BAD_TOKENS,
    "cost": BAD_COSTS,
    "text": BAD_TEXT,
    "json": BAD_JSON,
    "role": ["", " ", "r\ud800"],
    "calls": [[{"a": math.inf}], ["not a dict"]],
    "names": [["\ud800"], "search"],
}


class Script:
    """Random manager calls over small pools of ids; about one in four carries one bad value."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.n = 0
        self.created: list[str] = []
        self.last_kind = ""
        self.last_sid: Any = None

    def observe(self, outcome: Any) -> None:
        """Learn from the reference's outcome which ids exist, to aim most calls at them."""
        if outcome[0] != "ok":
            return
        if self.last_kind in ("create", "fork"):
            made = outcome[1]["session_id"]
            if made not in self.created:
                self.created.append(made)
        elif self.last_kind == "delete" and self.last_sid in self.created:
            self.created.remove(self.last_sid)

    def spoil(self, values: dict[str, Any], kinds: dict[str, str], p: float = 0.25) -> None:
        """With probability ``p``, replace one of ``values`` by an invalid one of its kind."""
        if self.rng.random() < p:
            name = self.rng.choice(sorted(kinds))
            values[name] = self.rng.choice(BAD[kinds[name]])

    def sid(self) -> Any:
        if self.rng.random() < 0.03:
            return self.rng.choice(BAD_IDS)
        if self.created and self.rng.random() < 0.8:
            return self.rng.choice(self.created)
        return self.rng.choice(SESSIONS + BRANCHES[:1])

    def tokens(self) -> int:
        if self.rng.random() < 0.05:
            return MAX_SAFE_INT - self.rng.randrange(3)  # totals may go past the limit
        return self.rng.choice([0, 1, 7, 1000])

    def cost(self) -> float:
        if self.rng.random() < 0.04:
            return 1e308  # two of them make the total infinite
        return self.rng.choice([0.0, 0.25, 1.5, 0.125, 2.0])

    def text(self) -> str:
        self.n += 1
        return self.rng.choice([f"message {self.n}", f"ünï 😀 {self.n}"])

    def json(self) -> Any:
        return self.rng.choice(
            [{}, {"k": self.n}, {"nested": {"a": [1, 2.5, None, True]}}, {"t": (1, "a")}]
        )

    def turn(self, p_bad: float) -> SessionTurn:
        self.n += 1
        values: dict[str, Any] = {
            "turn_id": f"t{self.rng.randrange(8)}",
            "role": self.rng.choice(["user", "assistant"]),
            "content": self.text(),
            "tool_calls": self.rng.choice([[], [{"name": "search", "args": {"q": "x"}}]]),
            "metadata": self.json(),
            "tokens_used": self.tokens(),
            "cost": self.cost(),
            "model": self.rng.choice([None, "m-1"]),
        }
        self.spoil(
            values,
            {"turn_id": "id", "role": "role", "content": "text", "tool_calls": "calls",
             "metadata": "json", "tokens_used": "tokens", "cost": "cost", "model": "text"},
            p_bad,
        )  # fmt: skip
        return SessionTurn(timestamp=T0 + timedelta(seconds=self.n), **values)

    def operation(self, clock: FakeClock) -> tuple[str, Op | None, list[str]]:
        """(kind, the call, the pool sessions it may change); a None call is a clock tick."""
        rng = self.rng
        kind = rng.choice(
            ["create", "create", "create", "turn", "turn", "turns", "turns", "message",
             "message", "message", "update", "suspend", "resume", "close", "pop", "clear",
             "checkpoint", "checkpoint", "restore", "fork", "merge", "merge", "delete", "tick",
             "sweep", "list", "get", "count"]
        )  # fmt: skip
        sid = self.sid()
        if kind == "create" and rng.random() < 0.7:
            sid = rng.choice(SESSIONS)  # mostly new ids; the rest are taken ones
        self.last_kind, self.last_sid = kind, sid
        touched = [sid] if isinstance(sid, str) and len(sid) < 300 else []
        if kind == "create":
            args: dict[str, Any] = {
                "user_id": rng.choice(USERS),
                "metadata": self.json(),
                "variables": self.json(),
                "system_prompt": rng.choice([None, "be brief"]),
            }
            self.spoil(
                args,
                {"user_id": "user", "metadata": "json", "variables": "json",
                 "system_prompt": "text"},
            )  # fmt: skip
            return kind, lambda s: s.manager.create(session_id=sid, **args), touched
        if kind == "turn":
            turn = self.turn(0.25)
            return kind, lambda s: s.manager.add_turn(sid, turn), touched
        if kind == "turns":
            batch = [self.turn(0.1) for _ in range(rng.choice([1, 2, 3]))]
            return kind, lambda s: s.manager.add_turns(sid, batch), touched
        if kind == "message":
            margs: dict[str, Any] = {
                "role": rng.choice(["user", "assistant"]),
                "content": self.text(),
                "tokens_used": self.tokens(),
                "cost": self.cost(),
                "metadata": self.json(),
            }
            self.spoil(
                margs,
                {"role": "role", "content": "text", "tokens_used": "tokens", "cost": "cost",
                 "metadata": "json"},
            )  # fmt: skip
            return kind, lambda s: s.manager.add_message(sid, **margs), touched
        if kind == "update":
            uargs: dict[str, Any] = {"variables": self.json(), "active_tools": ["search"]}
            self.spoil(uargs, {"variables": "json", "active_tools": "names"})
            return kind, lambda s: s.manager.update(sid, **uargs), touched
        if kind in ("suspend", "resume", "close", "pop", "clear", "delete", "get"):
            if kind == "delete" and rng.random() < 0.5:
                kind = "get"  # deletes are rarer, so that sessions live long enough
            name = {"pop": "pop_turn", "clear": "clear_turns", "get": "get_state"}.get(kind, kind)
            return kind, lambda s: getattr(s.manager, name)(sid), touched
        if kind == "checkpoint":
            cargs = {"metadata": self.json()}
            self.spoil(cargs, {"metadata": "json"}, 0.15)
            return kind, lambda s: s.manager.checkpoint(sid, cargs["metadata"]), touched
        if kind == "restore":
            cp = rng.choice(BAD_IDS) if rng.random() < 0.05 else rng.choice(CHECKPOINTS)
            return kind, lambda s: s.manager.restore(cp), SESSIONS + BRANCHES
        if kind == "fork":
            name = rng.choice(BAD_IDS) if rng.random() < 0.05 else rng.choice(["idea", "other"])
            return kind, lambda s: s.branches.fork(sid, name), [*touched, *BRANCHES]
        if kind == "merge":
            branch = rng.choice(BRANCHES)
            parent = sid if isinstance(sid, str) else rng.choice(SESSIONS)
            picked = [f"t{rng.randrange(8)}", f"auto-{rng.randrange(1, 20)}"]
            strategy = SelectiveMerge(picked) if rng.random() < 0.3 else None
            return (
                kind,
                lambda s: s.branches.merge(parent, branch, strategy=strategy),
                [parent, branch],
            )
        if kind == "sweep":
            return kind, lambda s: s.sweeper.sweep(), SESSIONS + BRANCHES
        if kind == "list":
            user, status = rng.choice(USERS), rng.choice([None, "active", "expired", "closed"])
            return kind, lambda s: s.manager.list_sessions(user, status=status, limit=3), []
        if kind == "count":
            user = rng.choice(USERS)
            return kind, lambda s: s.manager.count_live_sessions(user), []
        clock.now += timedelta(seconds=rng.choice([1, 5, 20, 60, 60, 250]))
        return kind, None, []


async def _outcome(op: Op, side: Side) -> Any:
    _current.append(side)
    try:
        return ("ok", _norm(await op(side)))
    except SessionError as exc:
        return _error(exc)
    finally:
        _current.pop()


async def _stored(side: Side, session_id: str) -> Any:
    """What the backend holds for one session (state and checkpoints), comparable."""
    try:
        state = await side.manager.get_state(session_id)
        cps = await side.manager.list_checkpoints(session_id) if state is not None else []
    except SessionError as exc:
        return _error(exc)
    return _norm(state), _norm(cps)


async def _check_totals(side: Side, session_id: str) -> None:
    """The reference's totals are the count and sums over the live turns, within limits."""
    try:
        state = await side.manager.get_state(session_id)
    except SessionValidationError:
        return
    if isinstance(state, SessionState):
        assert state.turn_count == len(state.turns)
        assert state.total_tokens == sum(t.tokens_used for t in state.turns) <= MAX_SAFE_INT
        cost = 0.0
        for turn in state.turns:
            cost += turn.cost
        assert state.total_cost == cost and math.isfinite(cost)


@pytest.mark.parametrize("seed", SEEDS)
async def test_same_results_errors_and_stored_state_on_every_backend(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert [s.name for s in SPECS] == list(BACKENDS)
    clock = FakeClock(T0)
    script = Script(seed)
    with _deterministic_ids(monkeypatch):
        async with _sides(clock) as sides:
            reference, others = sides[0], sides[1:]
            for step in range(STEPS):
                kind, op, touched = script.operation(clock)
                if op is None:
                    continue
                expected = await _outcome(op, reference)
                script.observe(expected)
                for side in others:
                    got = await _outcome(op, side)
                    assert got == expected, f"seed {seed} step {step} ({kind}) on {side.name}"
                for sid in touched:
                    want = await _stored(reference, sid)
                    await _check_totals(reference, sid)
                    for side in others:
                        got = await _stored(side, sid)
                        assert got == want, (
                            f"seed {seed} step {step} ({kind}): {sid} on {side.name}"
                        )
                if step % 10 == 9:
                    await _compare_everything(sides, f"seed {seed} step {step}")
                clock.now += timedelta(milliseconds=1)
            await _compare_everything(sides, f"seed {seed} end")
            await _export_and_erase_everyone(sides, f"seed {seed}")


async def _export_and_erase_everyone(sides: list[Side], where: str) -> None:
    """Export then erase each user in turn (one process): same answers everywhere."""
    reference, others = sides[0], sides[1:]
    for user in USERS:
        for call in (
            lambda s, u=user: s.manager.export_user(u),
            lambda s, u=user: s.manager.erase_user(u),
        ):
            want = await _outcome(call, reference)
            assert want[0] == "ok", want
            for side in others:
                assert await _outcome(call, side) == want, f"{where}: {user} on {side.name}"
        await _compare_everything(sides, f"{where} after erasing {user}")


async def _compare_everything(sides: list[Side], where: str) -> None:
    reference, others = sides[0], sides[1:]
    for sid in SESSIONS + BRANCHES:
        want = await _stored(reference, sid)
        for side in others:
            assert await _stored(side, sid) == want, f"{where}: {sid} on {side.name}"
    for user in USERS:
        want_count = await reference.manager.count_live_sessions(user)
        want_ids = [s.session_id for s in await reference.manager.list_sessions(user, limit=100)]
        for side in others:
            assert await side.manager.count_live_sessions(user) == want_count, where
            got_ids = [s.session_id for s in await side.manager.list_sessions(user, limit=100)]
            assert got_ids == want_ids, f"{where}: sessions of {user} on {side.name}"


async def test_an_identical_second_append_gets_the_same_answer_everywhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = FakeClock(T0)
    turn = SessionTurn(turn_id="t1", role="user", content="hello", timestamp=T0)
    answers: dict[str, Any] = {}
    with _deterministic_ids(monkeypatch):
        async with _sides(clock) as sides:
            for side in sides:
                await side.manager.create("alice", session_id="again")
                await side.manager.add_turn("again", turn)
                answers[side.name] = await _outcome(
                    lambda s: s.manager.add_turn("again", turn), side
                )
                stored = await side.manager.get_state("again")
                assert stored is not None and stored.turn_count == 1
    assert len({repr(a) for a in answers.values()}) == 1, answers
