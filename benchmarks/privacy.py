"""Encryption at rest: add_turn and get_state with encryption on beside off, same run.

Run:  python benchmarks/privacy.py [--quick] [--backends memory,sqlite,postgres,redis]

For every backend ``benchmarks/backends_*.py`` offers (servers that answer), two
stores on fresh namespaces: plain, and the same backend behind
``EncryptedSessionStore`` (AES-256-GCM, one key). Through ``SessionManagerImpl``
(automatic checkpoints off):

* ``add_turn``: one realistic turn (~300 bytes of content, metadata, a tool call)
  appended to a session, alternating plain / encrypted call by call;
* ``get_state``: the full state of a 1,000-turn session of those turns (each with
  metadata and a tool call), alternating likewise;
* ``get_state cold``: the same read through a second encrypted store on the same
  data with its cache of opened turns off (``turn_cache_bytes=0``), as a process
  reading the session for the first time does (its data key is cached);
* ``get_state first``: the first read of a 1,000-turn session the same store has
  just written (a new session per sample): the turns it sealed are remembered
  opened, so it decrypts none of them; what a chat worker reading back the session
  it writes to does;
* ``text get_state`` / ``text cold`` / ``text first``: the same three reads of
  1,000-turn sessions of text-only turns (the same ~300 bytes of content, no metadata,
  no tool call: what most chat turns are), which are sealed as their text and open
  without a parse.

Prints the medians of wall time and of the process's CPU time (all threads:
aiosqlite decodes in its own) with the ratios encrypted / plain (target: <= 1.25),
and the load average. Each backend is measured with the process on one CPU
(``harness.one_cpu``): the plain and the encrypted SQLite stores each have their own
aiosqlite thread, and unpinned the one whose thread happened to sit on the other CPU
paid more per hand-off (SQLite ``add_turn`` measured 1.11-1.48x unpinned in four
runs of the same code on 2026-12-04, 1.17x pinned). On a loaded machine the wall
ratio grows with the load (the encrypted side does more work in Python while the
plain one also waits on the server); the CPU ratio moves much less.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("LEX_QUIET", "1")
os.environ.setdefault("LEX_LOGGING__LEVEL", "WARNING")

from lexigram.logging import configure_logging

configure_logging(level="WARNING")

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import bench_turn, discover, median_ms, one_cpu  # noqa: E402

from lexigram.ai.session.config import SessionConfig  # noqa: E402
from lexigram.ai.session.encryption.keyring import Keyring, new_key_text, parse_keys  # noqa: E402
from lexigram.ai.session.manager.core import SessionManagerImpl  # noqa: E402
from lexigram.ai.session.stores.encrypted.store import EncryptedSessionStore  # noqa: E402

CONFIG = SessionConfig(
    auto_checkpoint_interval=None, max_turns_per_session=100_000, session_ttl=0
)


def _turn(n: int, prefix: str):  # type: ignore[no-untyped-def]
    turn = bench_turn(n, prefix=prefix)
    return replace(turn, tool_calls=[{"name": "lookup", "arguments": {"q": "order 42"}}])


def _text_turn(n: int, prefix: str):  # type: ignore[no-untyped-def]
    return replace(bench_turn(n, prefix=prefix), metadata={})


class _Samples:
    """Wall and CPU seconds of each measured call, per operation and mode."""

    def __init__(self) -> None:
        self.wall: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}

    async def time(self, name: str, call):  # type: ignore[no-untyped-def]
        wall, cpu = time.perf_counter(), time.process_time()
        result = await call
        self.cpu.setdefault(name, []).append(time.process_time() - cpu)
        self.wall.setdefault(name, []).append(time.perf_counter() - wall)
        return result

    def medians(self) -> dict[str, tuple[float, float]]:
        return {n: (median_ms(self.wall[n]), median_ms(self.cpu[n])) for n in self.wall}


async def _long_session(manager, make, prefix: str, turns: int = 1000) -> str:  # type: ignore[no-untyped-def]
    """A new session of ``turns`` turns from ``make``, appended 100 at a time."""
    state = await manager.create("bench-user")
    for start in range(0, turns, 100):
        batch = [make(n, prefix) for n in range(start, min(turns, start + 100))]
        await manager.add_turns(state.session_id, batch)
    return state.session_id


async def _bench(backend, quick: bool) -> dict[str, tuple[float, float]]:  # type: ignore[no-untyped-def]
    keyring = Keyring(parse_keys(new_key_text("bench")))
    plain_store = await backend.make_store()
    inner = await backend.make_store()
    crypt_store = EncryptedSessionStore(inner, keyring)
    cold_store = EncryptedSessionStore(inner, keyring, turn_cache_bytes=0)
    try:
        managers = {
            "off": SessionManagerImpl(plain_store, CONFIG),
            "on": SessionManagerImpl(crypt_store, CONFIG),
        }
        appends = 150 if quick else 600
        reads = 10 if quick else 30
        long_turns = 1000
        samples = _Samples()
        cold = SessionManagerImpl(cold_store, CONFIG)
        sessions = {k: (await m.create("bench-user")).session_id for k, m in managers.items()}
        for n in range(appends):
            for mode, manager in managers.items():
                turn = _turn(n, "a")
                await samples.time(f"add_turn {mode}", manager.add_turn(sessions[mode], turn))
        long_ids: dict[tuple[str, str], str] = {}
        for kind, make in (("", _turn), ("text ", _text_turn)):
            for mode, manager in managers.items():
                long_ids[kind, mode] = await _long_session(manager, make, "l", long_turns)
        names = {"": ("get_state", "get_state cold"), "text ": ("text get_state", "text cold")}
        firsts = {"": "get_state first", "text ": "text first"}
        # Warm and cold reads in separate loops: a cold read (a thousand decryptions)
        # just before a warm one evicts what the warm one would find in the CPU caches,
        # which no process re-reading a session meets.
        for kind, (warm_name, cold_name) in names.items():
            for _ in range(reads):
                for mode, manager in managers.items():
                    full = await samples.time(
                        f"{warm_name} {mode}", manager.get_state(long_ids[kind, mode])
                    )
                    assert full is not None and len(full.turns) == long_turns
            for _ in range(reads):
                for mode, manager in (("off", managers["off"]), ("on", cold)):
                    full = await samples.time(
                        f"{cold_name} {mode}", manager.get_state(long_ids[kind, mode])
                    )
                    assert full is not None and len(full.turns) == long_turns
        for kind, make in (("", _turn), ("text ", _text_turn)):
            for sample in range(reads):
                for mode, manager in managers.items():
                    sid = await _long_session(manager, make, f"f{sample}", long_turns)
                    full = await samples.time(f"{firsts[kind]} {mode}", manager.get_state(sid))
                    assert full is not None and len(full.turns) == long_turns
        return samples.medians()
    finally:
        await backend.drop_store(plain_store)
        await backend.drop_store(inner)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backends", help="comma-separated names (default: all available)")
    args = parser.parse_args()
    backends, notes = discover()
    wanted = set(args.backends.split(",")) if args.backends else None
    for note in notes:
        print(f"# {note}")
    print(f"# load average {os.getloadavg()[0]:.2f} (1 min) at start")
    print(
        f"{'backend':<10} {'op':<14} {'off ms':>9} {'on ms':>9} {'on/off':>7}"
        f" {'cpu off':>9} {'cpu on':>9} {'on/off':>7}"
    )
    for backend in backends:
        if wanted is not None and backend.name not in wanted:
            continue
        try:
            with one_cpu():
                result = await _bench(backend, args.quick)
        except Exception as exc:  # a server that does not answer: skip it
            print(f"# {backend.name}: skipped ({type(exc).__name__}: {exc})")
            continue
        for op in (
            "add_turn",
            "get_state",
            "get_state cold",
            "get_state first",
            "text get_state",
            "text cold",
            "text first",
        ):
            (off, cpu_off), (on, cpu_on) = result[f"{op} off"], result[f"{op} on"]
            print(
                f"{backend.name:<10} {op:<14} {off:9.3f} {on:9.3f} {on / off:7.2f}"
                f" {cpu_off:9.3f} {cpu_on:9.3f} {cpu_on / cpu_off:7.2f}"
            )
    print(f"# load average {os.getloadavg()[0]:.2f} (1 min) at end")


if __name__ == "__main__":
    asyncio.run(main())
