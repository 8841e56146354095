"""Store benchmarks: every backend beside its raw driver, in one run.

Run::

    python benchmarks/stores.py [--quick] \
        [--backends memory,sqlite,postgres,redis]

Backends come from every ``benchmarks/backends_*.py`` (see ``harness.py``); one whose
module does not import or whose server is down is skipped with a note. Per backend it
prints:

* ``add_turn`` (``store.append_turns`` of one turn) median and p99 on sessions already
  holding 10, 100, 1,000 and 5,000 turns, each sample alternated with the raw driver
  doing the same write (so both see the same machine load), and the flatness ratio
  (median at 5,000 / median at 10);
* ``SessionManagerImpl.add_turn`` at 1,000 turns (the whole path: validation, hooks,
  an automatic checkpoint every 10 turns), for information;
* create throughput (sessions per second, sequential ``create_session``) beside the
  raw header INSERT;
* ``get_state`` (``store.load``: header + 1,000 turns, parsed into ``SessionTurn``)
  beside the raw driver reading the same turns and parsing them with orjson;
* 200 concurrent appends to one session (wall time, turns lost) beside 200
  concurrent raw appends;
* paging at scale: two pages of 50 of a user's sessions (the second through the
  cursor) with 100 vs 10,000 sessions, and ``get_turns(last=20)`` of a session of 10
  vs 10,000 turns (2,000 with ``--quick``), as a ratio that should stay near 1;
* on SQLite, when the OpenAI Agents SDK is importable, ``SQLiteSession.add_items`` of
  one item at 10 and 5,000 items, alternated with our ``add_turn`` at the same length.

Targets (each a ratio from this run) are shown with PASS/FAIL.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("LEX_QUIET", "1")
os.environ.setdefault("LEX_LOGGING__LEVEL", "WARNING")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import T0, BenchBackend, RawWriter, bench_turn, discover, median_ms, p99_ms
from lexigram.contracts.ai.session import SessionState, SessionStatus

from lexigram.ai.session.stores.base import SessionStore
from lexigram.ai.session.stores.codec import encode_turn

HISTORY = (10, 100, 1_000, 5_000)
READ_TURNS = 1_000
CONCURRENT = 200


@dataclass
class Plan:
    """How many samples each measurement takes."""

    appends: int
    reads: int
    creates: int
    bursts: int
    scale: int

    @classmethod
    def for_run(cls, quick: bool) -> Plan:
        """``--quick`` or the full run."""
        return cls(100, 20, 150, 1, 2_000) if quick else cls(1000, 100, 1000, 5, 10_000)


@dataclass
class Row:
    """One printed line."""

    label: str
    ours: str
    raw: str = ""
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None


@dataclass
class Report:
    """Everything measured for one backend."""

    backend: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> None:
        """Record a line."""
        self.rows.append(row)

    def print(self) -> None:
        """The table."""
        print(f"{'measurement':<36}{'ours':<26}{'raw driver':<26}{'ratio':>8}  target")
        for r in self.rows:
            ratio = "" if r.ratio is None else f"{r.ratio:6.2f}x"
            verdict = "" if r.ok is None else ("PASS" if r.ok else "FAIL")
            print(f"{r.label:<36}{r.ours:<26}{r.raw:<26}{ratio:>8}  {r.target} {verdict}".rstrip())
        for note in self.notes:
            print(f"  note: {note}")


def _ms(samples: list[float]) -> str:
    return f"{median_ms(samples):7.3f} / {p99_ms(samples):7.3f} ms"


def _header(user: str = "bench") -> SessionState:
    return SessionState(
        session_id="bench-" + uuid.uuid4().hex,
        user_id=user,
        status=SessionStatus.ACTIVE,
        created_at=T0,
        updated_at=T0,
    )


async def _session(store: SessionStore, turns: int, prefix: str) -> str:
    state = _header()
    await store.create_session(state)
    for start in range(0, turns, 250):
        batch = [bench_turn(i, prefix=prefix) for i in range(start, min(start + 250, turns))]
        await store.append_turns(state.session_id, batch)
    return state.session_id


async def _seed_raw(raw: RawWriter, key: str, turns: int) -> None:
    payloads = [encode_turn(bench_turn(i)) for i in range(turns)]
    seed = getattr(raw, "seed", None)
    create = getattr(raw, "create", None)
    if seed is not None:
        await seed(key, payloads, 12)
        return
    if create is not None:
        await create(key)
    for payload in payloads:
        await raw.append(key, payload, 12)


async def _timed(call: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await call()
    return time.perf_counter() - start


# ------------------------------------------------------------- measurements
async def bench_appends(
    store: SessionStore,
    raw: RawWriter | None,
    sdk: Any | None,
    plan: Plan,
    report: Report,
) -> None:
    """add_turn at each history length, alternated with the raw append (and the SDK).

    One session per history length; the samples go round-robin over the lengths (and
    between ours, the raw driver and the SDK), so that every figure sees the same
    machine load, WAL size and checkpoints.
    """
    targets: dict[int, tuple[str, str, Any]] = {}
    for size in HISTORY:
        sid = await _session(store, size, f"h{size}-")
        key = f"raw-{uuid.uuid4().hex}"
        if raw is not None:
            await _seed_raw(raw, key, size)
        sdk_session = await sdk.session(size) if sdk is not None and size in (10, 5_000) else None
        targets[size] = (sid, key, sdk_session)
    ours: dict[int, list[float]] = {size: [] for size in HISTORY}
    base: dict[int, list[float]] = {size: [] for size in HISTORY}
    theirs: dict[int, list[float]] = {size: [] for size in HISTORY}
    for i in range(plan.appends):
        for size, (sid, key, sdk_session) in targets.items():
            turn = bench_turn(size + i, prefix=f"h{size}-")
            start = time.perf_counter()
            await store.append_turns(sid, [turn])
            ours[size].append(time.perf_counter() - start)
            if raw is not None:
                payload = encode_turn(turn)
                start = time.perf_counter()
                await raw.append(key, payload, 12)
                base[size].append(time.perf_counter() - start)
            if sdk_session is not None:
                item = sdk.item(size + i)
                start = time.perf_counter()
                await sdk_session.add_items([item])
                theirs[size].append(time.perf_counter() - start)
    # At the store's own durability (SQLite: WAL + synchronous=NORMAL on both sides).
    judged = report.backend in ("sqlite", "redis")
    for size in HISTORY:
        mine = median_ms(ours[size])
        ratio = mine / median_ms(base[size]) if base[size] else None
        report.add(
            Row(
                f"add_turn @ {size:,} turns",
                _ms(ours[size]),
                _ms(base[size]) if base[size] else "",
                ratio,
                "<= 1.50x" if ratio is not None and judged else "",
                (ratio <= 1.5) if ratio is not None and judged else None,
            )
        )
        if theirs[size]:
            sdk_ratio = mine / median_ms(theirs[size])
            report.add(
                Row(
                    f"  vs Agents SDK add_items @ {size:,}",
                    f"{mine:7.3f} ms",
                    f"SDK {median_ms(theirs[size]):7.3f} / {p99_ms(theirs[size]):6.3f}",
                    sdk_ratio,
                    "<= 1.00x",
                    sdk_ratio <= 1.0,
                )
            )
    for _, _, sdk_session in targets.values():
        if sdk_session is not None:
            sdk_session.close()
    flat = median_ms(ours[5_000]) / median_ms(ours[10])
    report.add(Row("add_turn flatness (5,000 / 10)", f"{flat:7.2f}x", "", flat, "<= 1.20x",
                   flat <= 1.2))


async def bench_manager(
    store: SessionStore, raw: RawWriter | None, plan: Plan, report: Report
) -> None:
    """``SessionManagerImpl.add_turn`` (validation, hooks, auto-checkpoint every 10) @ 1,000."""
    from lexigram.ai.session.manager.core import SessionManagerImpl

    limits = {"max_turns_per_session": 10**6, "session_ttl": 0, "max_sessions_per_user": 10**6}
    manager = SessionManagerImpl(store, limits)
    state = await manager.create("bench-manager")
    for start in range(0, 1_000, 250):
        await store.append_turns(
            state.session_id, [bench_turn(i, prefix="m-") for i in range(start, start + 250)]
        )
    key = f"raw-{uuid.uuid4().hex}"
    if raw is not None:
        await _seed_raw(raw, key, 1_000)
    ours: list[float] = []
    base: list[float] = []
    for i in range(plan.appends // 2):
        turn = bench_turn(1_000 + i, prefix="m-")
        ours.append(await _timed(lambda t=turn: manager.add_turn(state.session_id, t)))
        if raw is not None:
            payload = encode_turn(turn)
            base.append(await _timed(lambda p=payload: raw.append(key, p, 12)))
    report.add(
        Row(
            "manager.add_turn @ 1,000 turns",
            _ms(ours),
            _ms(base) if base else "",
            median_ms(ours) / median_ms(base) if base else None,
            "(not a target)",
        )
    )


async def bench_creates(
    store: SessionStore, raw: RawWriter | None, plan: Plan, report: Report
) -> None:
    """Sequential creates (sessions/s), alternated with the raw header INSERT."""
    create = getattr(raw, "create", None) if raw is not None else None
    ours: list[float] = []
    base: list[float] = []
    for i in range(plan.creates):
        state = _header(user=f"u{i % 50}")
        ours.append(await _timed(lambda s=state: store.create_session(s)))
        if create is not None:
            key = f"raw-create-{uuid.uuid4().hex}"
            base.append(await _timed(lambda k=key: create(k)))
    rate = len(ours) / sum(ours)
    raw_rate = len(base) / sum(base) if base else None
    report.add(
        Row(
            "create throughput",
            f"{rate:9,.0f} sessions/s",
            f"{raw_rate:9,.0f} inserts/s" if raw_rate else "",
            (raw_rate / rate) if raw_rate else None,
        )
    )


async def bench_reads(
    store: SessionStore, raw: RawWriter | None, plan: Plan, report: Report
) -> None:
    """get_state of a 1,000-turn session vs the raw read + orjson parse of the same turns."""
    sid = await _session(store, READ_TURNS, "r-")
    key = f"raw-{uuid.uuid4().hex}"
    if raw is not None:
        await _seed_raw(raw, key, READ_TURNS)
    ours: list[float] = []
    base: list[float] = []
    for _ in range(plan.reads):
        start = time.perf_counter()
        state = await store.load(sid)
        ours.append(time.perf_counter() - start)
        assert state is not None and len(state.turns) == READ_TURNS
        if raw is not None:
            start = time.perf_counter()
            items = await raw.read_all(key)
            base.append(time.perf_counter() - start)
            assert len(items) == READ_TURNS
    ratio = median_ms(ours) / median_ms(base) if base else None
    report.add(
        Row(
            f"get_state, {READ_TURNS:,} turns",
            _ms(ours),
            _ms(base) if base else "",
            ratio,
            "<= 1.30x" if ratio is not None else "",
            None if ratio is None else ratio <= 1.3,
        )
    )


async def bench_burst(
    store: SessionStore, raw: RawWriter | None, plan: Plan, report: Report
) -> None:
    """200 concurrent appends to one session: wall time and turns lost."""
    ours: list[float] = []
    base: list[float] = []
    lost = raw_lost = 0
    for run in range(plan.bursts):
        sid = await _session(store, 0, "c-")
        turns = [bench_turn(i, prefix=f"c{run}-") for i in range(CONCURRENT)]
        start = time.perf_counter()
        await asyncio.gather(*(store.append_turns(sid, [t]) for t in turns))
        ours.append(time.perf_counter() - start)
        state = await store.load(sid)
        assert state is not None
        got = {t.turn_id for t in state.turns}
        lost += CONCURRENT - len(got & {t.turn_id for t in turns})
        lost += abs(CONCURRENT - state.turn_count) if len(got) == CONCURRENT else 0
        if raw is not None:
            key = f"raw-{uuid.uuid4().hex}"
            create = getattr(raw, "create", None)
            if create is not None:
                await create(key)
            payloads = [encode_turn(t) for t in turns]
            start = time.perf_counter()
            await asyncio.gather(*(raw.append(key, p, 12) for p in payloads))
            base.append(time.perf_counter() - start)
            raw_lost += CONCURRENT - len(await raw.read_all(key))
    ratio = median_ms(ours) / median_ms(base) if base else None
    report.add(
        Row(
            f"{CONCURRENT} concurrent appends",
            f"{median_ms(ours):7.1f} ms, lost {lost}",
            f"{median_ms(base):7.1f} ms, lost {raw_lost}" if base else "",
            ratio,
            "lost = 0",
            lost == 0,
        )
    )


async def bench_scale(store: SessionStore, plan: Plan, report: Report) -> None:
    """Paging reads on a small and a ``plan.scale`` user / session (same work per read)."""
    big = plan.scale
    small_user, big_user = f"few-{uuid.uuid4().hex[:6]}", f"many-{uuid.uuid4().hex[:6]}"
    for start in range(0, big, 50):
        await asyncio.gather(
            *(store.create_session(_header(big_user)) for _ in range(min(50, big - start)))
        )
    for _ in range(100):  # two full pages, as for the big user
        await store.create_session(_header(small_user))
    few_turns = await _session(store, 10, "sc-")
    many_turns = await _session(store, big, "sc-")

    async def page_deep(user: str) -> None:
        page = await store.list_user_sessions(user, limit=50)
        assert page.items
        if page.next_cursor is not None:  # a page from the middle, through the cursor
            await store.list_user_sessions(user, limit=50, cursor=page.next_cursor)

    lists: dict[str, list[float]] = {small_user: [], big_user: []}
    tails: dict[str, list[float]] = {few_turns: [], many_turns: []}
    for _ in range(plan.reads):
        for user, samples in lists.items():
            samples.append(await _timed(lambda u=user: page_deep(u)))
        for sid, samples in tails.items():
            samples.append(await _timed(lambda s=sid: store.get_turns(s, last=20)))
    for label, small, large in (
        (f"list 2 pages of 50 @ 100 / {big:,} sessions", lists[small_user], lists[big_user]),
        (f"get_turns(last=20) @ 10 / {big:,} turns", tails[few_turns], tails[many_turns]),
    ):
        ratio = median_ms(large) / median_ms(small)
        judged = report.backend != "memory"  # the reference store sorts in Python
        report.add(
            Row(
                label,
                f"{median_ms(small):7.3f} / {median_ms(large):7.3f} ms",
                "",
                ratio,
                "flat (<= 1.50x)" if judged else "(not a target)",
                ratio <= 1.5 if judged else None,
            )
        )


# -------------------------------------------------------------------- the SDK
class AgentsSdk:
    """The OpenAI Agents SDK's ``SQLiteSession`` on a file of its own."""

    def __init__(self, directory: str) -> None:
        self._dir = directory

    @staticmethod
    def load() -> AgentsSdk | None:
        """The SDK wrapper, or None when ``agents`` does not import."""
        try:
            import agents  # noqa: F401
        except Exception:
            return None
        return AgentsSdk(tempfile.mkdtemp(prefix="lexi-bench-sdk-"))

    @staticmethod
    def item(n: int) -> dict[str, Any]:
        """One message item of the same size as our bench turn."""
        turn = bench_turn(n)
        return {"role": turn.role, "content": turn.content}

    async def session(self, size: int) -> Any:
        """A ``SQLiteSession`` already holding ``size`` items."""
        from agents import SQLiteSession

        session = SQLiteSession(
            f"bench-{uuid.uuid4().hex}", db_path=str(Path(self._dir) / "sdk.db")
        )
        for start in range(0, size, 500):
            await session.add_items([self.item(i) for i in range(start, min(start + 500, size))])
        return session


# ---------------------------------------------------------------------- main
async def run_backend(backend: BenchBackend, plan: Plan, with_sdk: bool) -> Report | None:
    """Measure one backend; None (with a printed note) when it cannot run."""
    print(f"\n=== {backend.name} — {backend.notes.get('url', '')}", flush=True)
    if backend.notes.get("baseline"):
        print(f"    raw baseline: {backend.notes['baseline']}")
    try:
        store = await backend.make_store()
    except Exception as exc:
        print(f"    skipped: {type(exc).__name__}: {exc}")
        return None
    report = Report(backend.name)
    raw: RawWriter | None = None
    if backend.make_raw is not None:
        try:
            raw = await backend.make_raw()
        except Exception as exc:
            report.notes.append(f"no raw baseline: {type(exc).__name__}: {exc}")
    sdk = AgentsSdk.load() if with_sdk and backend.notes.get("sdk") else None
    if with_sdk and backend.notes.get("sdk") and sdk is None:
        report.notes.append("OpenAI Agents SDK not importable: SDK comparison skipped")
    started = time.perf_counter()
    try:
        # Warm-up: connections, prepared statements, code paths.
        sid = await _session(store, 0, "w-")
        for i in range(30):
            await store.append_turns(sid, [bench_turn(i, prefix="w-")])
            if raw is not None:
                await raw.append("warm", encode_turn(bench_turn(i)), 12)
        # Everything built so far lives to the end: keep the collector from rescanning
        # it (its full passes otherwise land in the p99 of whichever backend is running).
        gc.collect()
        gc.freeze()
        await bench_appends(store, raw, sdk, plan, report)
        await bench_manager(store, raw, plan, report)
        await bench_creates(store, raw, plan, report)
        await bench_reads(store, raw, plan, report)
        await bench_burst(store, raw, plan, report)
        await bench_scale(store, plan, report)
    finally:
        gc.unfreeze()
        if raw is not None:
            await raw.close()
        await backend.drop_store(store)
    report.notes.append(f"measured in {time.perf_counter() - started:.1f} s")
    report.print()
    return report


async def main(argv: list[str] | None = None) -> int:
    """Run the chosen backends; exit status 1 when a target failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--backends",
        default="",
        help="comma-separated names (default: every backend found)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples (well under 1 min)")
    parser.add_argument("--no-sdk", action="store_true", help="skip the OpenAI Agents SDK")
    args = parser.parse_args(argv)
    backends, notes = discover()
    for note in notes:
        print(f"note: {note}")
    wanted = [n.strip() for n in args.backends.split(",") if n.strip()]
    known = {b.name for b in backends}
    for name in wanted:
        if name not in known:
            print(f"note: no backend named {name!r} (found: {', '.join(sorted(known))})")
    chosen = [b for b in backends if not wanted or b.name in wanted]
    chosen.sort(key=lambda b: wanted.index(b.name) if b.name in wanted else len(wanted))
    plan = Plan.for_run(args.quick)
    print(
        f"store benchmarks ({'quick' if args.quick else 'full'}): {plan.appends} appends per "
        f"history length, {plan.reads} reads, {plan.creates} creates, {plan.bursts} burst(s); "
        "ratio = ours / raw (lower is better; create throughput: raw rate / ours)"
    )
    failed = False
    for backend in chosen:
        report = await run_backend(backend, plan, with_sdk=not args.no_sdk)
        if report is not None and any(r.ok is False for r in report.rows):
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
