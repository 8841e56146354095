"""One merge into a parent at a time, per store object, in this process.

A merge reads the parent, lets its strategy plan the merged ``variables`` and
``metadata`` from that read, and writes them whole with the merged turns. Two merges
into one parent that read it before either wrote would each write a dict without the
other's keys: the second write would drop what the first merged. Holding the
parent's lock from the read to the end of the write makes the second merge read what
the first wrote. The lock is the store object's, whichever event loop (thread) the
merges run on; merges through another store object or in another process are not
held (see docs/time-travel.md).

The lock works across event loops: a waiter on another loop is woken on its own
loop (``call_soon_threadsafe``), and the lock is handed to it directly, so no merge
of any loop can slip in between.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque

__all__ = ["HeldMerge", "merge_lock"]


class _Entry:
    """A parent's lock: whether it is held, its waiters in order, and how many merges
    hold or wait for it (the entry is dropped when none does)."""

    __slots__ = ("held", "users", "waiters")

    def __init__(self) -> None:
        self.held = False
        self.users = 0
        self.waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()


_guard = threading.Lock()
# (id of the store object, parent id) -> its entry. Keyed by id(): a store need not be
# hashable, and the entry is dropped when its last merge ends (while the store lives).
_locks: dict[tuple[int, str], _Entry] = {}


class HeldMerge:
    """A parent's merge lock, taken by :meth:`acquire`; :meth:`release` is idempotent."""

    __slots__ = ("_entry", "_held", "_key", "writing")

    def __init__(self, store: object, parent_id: str) -> None:
        key = (id(store), parent_id)
        with _guard:
            entry = _locks.get(key)
            if entry is None:
                entry = _locks[key] = _Entry()
            entry.users += 1
        self._key, self._entry, self._held = key, entry, False
        #: Set when the merge's write has started: the write releases the lock when it
        #: ends, also after its caller was cancelled (the write goes on in the background).
        self.writing = False

    async def acquire(self) -> None:
        """Wait for the parent's earlier merges through this store object to write."""
        entry = self._entry
        loop = asyncio.get_running_loop()
        with _guard:
            if not entry.held:
                entry.held = True
                self._held = True
                return
            waiter: asyncio.Future[None] = loop.create_future()
            entry.waiters.append((loop, waiter))
        try:
            await waiter
        except BaseException:
            with _guard:
                queued = (loop, waiter) in entry.waiters
                if queued:
                    entry.waiters.remove((loop, waiter))
            # Not queued any more: the lock was handed to this waiter, and _wake passes
            # it on, seeing the waiter cancelled (or this task owns it: release it).
            if not queued and waiter.done() and not waiter.cancelled():
                self._held = True
                self.release()
            else:
                self._forget()
            raise
        self._held = True

    def release(self) -> None:
        """Let the next merge into the parent read it (once; later calls do nothing)."""
        if not self._held:
            return
        self._held = False
        _hand_on(self._entry)
        self._forget()

    def _forget(self) -> None:
        with _guard:
            self._entry.users -= 1
            if self._entry.users == 0 and _locks.get(self._key) is self._entry:
                del _locks[self._key]


def _hand_on(entry: _Entry) -> None:
    """Give the held lock to the first waiter whose loop still runs, or free it."""
    with _guard:
        while entry.waiters:
            loop, waiter = entry.waiters.popleft()
            try:
                loop.call_soon_threadsafe(_wake, entry, waiter)
            except RuntimeError:  # its loop is closed: that waiter is gone
                continue
            return  # still held: now the waiter's
        entry.held = False


def _wake(entry: _Entry, waiter: asyncio.Future[None]) -> None:
    """On the waiter's loop: it owns the lock now, or passes it on when it was cancelled."""
    if waiter.done():  # cancelled while the lock came to it
        _hand_on(entry)
    else:
        waiter.set_result(None)


def merge_lock(store: object, parent_id: str) -> HeldMerge:
    """The (not yet acquired) merge lock of ``parent_id`` in ``store``."""
    return HeldMerge(store, parent_id)
