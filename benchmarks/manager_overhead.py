"""What the manager adds on top of a store call, in microseconds of CPU per call.

Run::

    python benchmarks/manager_overhead.py [--calls 20000] [--rounds 5]

The chat path of ``benchmarks/scale.py`` — ``get_turns(sid, last=20)`` then
``add_turns(sid, [user, assistant])`` — through ``SessionManagerImpl`` beside the same
calls made on the store directly. The store answers from a canned result (no I/O,
no store work), so the difference is the manager alone: argument checks, turn
validation, telemetry, hooks, memory, automatic checkpoints (none registered, as in
production without listeners). Also printed: what the store's own ``check_turns``
costs on the batch the manager hands it, and on a fresh list of the same turns.

Times are this process's CPU (``time.process_time``), so other load on the machine
changes them little; each figure is the best of ``--rounds`` rounds, manager and store
alternated within each round.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from lexigram.contracts.ai.session import SessionTurn
from scale import _config, exchange_turns

from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.stores.base import AppendResult
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from lexigram.ai.session.validation import check_turns

CONFIG = _config()


class CannedStore(InMemorySessionStore):
    """Answers ``get_turns``/``append_turns`` with results recorded beforehand."""

    turns: list[SessionTurn]
    result: AppendResult

    async def get_turns(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after_seq: int | None = None,
        limit: int | None = None,
    ) -> list[SessionTurn]:
        return self.turns

    async def append_turns(
        self, session_id: str, turns: Sequence[SessionTurn], **_: Any
    ) -> AppendResult:
        return self.result


async def _cpu_us(calls: int, one: Callable[[], Awaitable[Any]]) -> float:
    gc.collect()
    gc.disable()
    try:
        started = time.process_time()
        for _ in range(calls):
            await one()
        return (time.process_time() - started) / calls * 1e6
    finally:
        gc.enable()


def _sync_us(calls: int, one: Callable[[], Any]) -> float:
    started = time.process_time()
    for _ in range(calls):
        one()
    return (time.process_time() - started) / calls * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    real = InMemorySessionStore()
    sid = (await SessionManagerImpl(real, CONFIG).create("bench-user")).session_id
    for n in range(10):
        await real.append_turns(sid, exchange_turns("", n), max_turns=None)
    store = CannedStore()
    store.turns = await real.get_turns(sid, last=20)
    store.result = await real.append_turns(sid, exchange_turns("", 99), max_turns=None)
    manager = SessionManagerImpl(store, CONFIG)
    batch = exchange_turns("", 1)
    checked = check_turns(batch)

    best: dict[str, float] = {}

    def keep(name: str, value: float) -> None:
        best[name] = min(best.get(name, value), value)

    for _ in range(args.rounds):
        keep("store get_turns", await _cpu_us(args.calls, lambda: store.get_turns(sid, last=20)))
        keep(
            "manager get_turns", await _cpu_us(args.calls, lambda: manager.get_turns(sid, last=20))
        )
        keep(
            "store append_turns", await _cpu_us(args.calls, lambda: store.append_turns(sid, batch))
        )
        keep("manager add_turns", await _cpu_us(args.calls, lambda: manager.add_turns(sid, batch)))
        keep("check_turns, fresh list", _sync_us(args.calls, lambda: check_turns(list(batch))))
        keep("check_turns, manager batch", _sync_us(args.calls, lambda: check_turns(checked)))

    get = best["manager get_turns"] - best["store get_turns"]
    add = best["manager add_turns"] - best["store append_turns"]
    for name, value in best.items():
        print(f"{name:<28} {value:8.2f} us")
    print(f"manager overhead: get_turns(last=20) {get:.2f} us, add_turns(2 turns) {add:.2f} us")


if __name__ == "__main__":
    asyncio.run(main())
