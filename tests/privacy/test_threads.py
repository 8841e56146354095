"""One encrypting store shared by event loops in several threads: its caches hold.

The store keeps data keys and opened turns per process; with tiny caches, four threads
each running their own event loop push entries out while the others look them up.
Before the caches took a lock, this raised ``KeyError`` and "OrderedDict mutated during
iteration" from inside reads and appends.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections import Counter
from collections.abc import Iterator

import pytest

from lexigram.ai.session.stores.encrypted.lru import Lru
from lexigram.ai.session.stores.encrypted.store import EncryptedSessionStore
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from lexigram.ai.session.testing import make_state, make_turn

from .helpers import keyring

THREADS = 4
CALLS = 1500
SESSIONS = [f"threads-{n}" for n in range(12)]


@pytest.fixture
def frequent_switches() -> Iterator[None]:
    """Threads switch every microsecond, so a race shows within a few thousand calls."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def _calls(store: EncryptedSessionStore, worker: int, errors: Counter[str]) -> list[str]:
    """Reads and appends from one thread's own event loop; the turn ids it appended."""
    appended: list[str] = []

    async def run() -> None:
        for n in range(CALLS):
            session_id = SESSIONS[(n * 7 + worker) % len(SESSIONS)]
            try:
                if n % 3 == 0:
                    await store.get_turns(session_id)
                elif n % 3 == 1:
                    await store.load(session_id)
                else:
                    turn_id = f"w{worker}-{n}"
                    await store.append_turns(session_id, [make_turn(n, turn_id=turn_id)])
                    appended.append(turn_id)
            except Exception as exc:  # counted, then asserted to be none
                errors[f"{type(exc).__name__}: {exc}"] += 1

    asyncio.run(run())
    return appended


@pytest.mark.usefixtures("frequent_switches")
def test_event_loops_in_threads_share_one_encrypting_store() -> None:
    inner = InMemorySessionStore()
    store = EncryptedSessionStore(inner, keyring("k1"), key_cache=3, turn_cache_bytes=4000)

    async def setup() -> None:
        for session_id in SESSIONS:
            await store.create_session(make_state("erin", session_id=session_id))
            await store.append_turns(session_id, [make_turn(n) for n in range(5)])

    asyncio.run(setup())
    errors: Counter[str] = Counter()
    appended: list[list[str]] = [[] for _ in range(THREADS)]

    def worker(k: int) -> None:
        appended[k] = _calls(store, k, errors)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, errors.most_common(3)

    async def stored_ids() -> set[str]:
        fresh = EncryptedSessionStore(inner, store.keyring)
        ids: set[str] = set()
        for session_id in SESSIONS:
            ids.update(t.turn_id for t in await fresh.get_turns(session_id))
        return ids

    expected = {turn_id for ids in appended for turn_id in ids}
    assert len(expected) == THREADS * (CALLS // 3)
    assert expected <= asyncio.run(stored_ids())


def test_lru_keeps_the_most_recently_used() -> None:
    cache: Lru[str, int] = Lru(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3)
    assert "b" not in cache and "a" in cache and "c" in cache and len(cache) == 2
    assert cache.pop("a") == 1 and cache.pop("a") is None
    cache.clear()
    assert len(cache) == 0 and cache.get("c") is None
