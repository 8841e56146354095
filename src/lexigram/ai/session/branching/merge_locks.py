"""One merge into a parent at a time, per store and event loop, in this process.

A merge reads the parent, lets its strategy plan the merged ``variables`` and
``metadata`` from that read, and writes them whole with the merged turns. Two merges
into one parent that read it before either wrote would each write a dict without the
other's keys: the second write would drop what the first merged. Holding the
parent's lock from the read to the end of the write makes the second merge read what
the first wrote. Merges in other processes are not held (see docs/time-travel.md).
"""

from __future__ import annotations

import asyncio
import threading
import weakref

__all__ = ["HeldMerge", "merge_lock"]



class _Entry:
    """A parent's lock and how many merges hold or wait for it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


_guard = threading.Lock()
# Per store: (event loop, parent id) -> its entry, dropped when no merge uses it.
_locks: weakref.WeakKeyDictionary[object, dict[tuple[object, str], _Entry]] = (
    weakref.WeakKeyDictionary()
)


class HeldMerge:
    """A parent's merge lock, taken by :meth:`acquire`; :meth:`release` is idempotent."""

    __slots__ = ("_entry", "_held", "_key", "_table", "writing")

    def __init__(self, store: object, parent_id: str) -> None:
        key = (asyncio.get_running_loop(), parent_id)
        with _guard:
            table = _locks.setdefault(store, {})
            entry = table.get(key)
            if entry is None:
                entry = table[key] = _Entry()
            entry.users += 1
        self._table, self._key, self._entry, self._held = table, key, entry, False
        #: Set when the merge's write has started: the write releases the lock when it
        #: ends, also after its caller was cancelled (the write goes on in the background).
        self.writing = False

    async def acquire(self) -> None:
        """Wait for the parent's earlier merges in this process to write."""
        try:
            await self._entry.lock.acquire()
        except BaseException:
            self._forget()
            raise
        self._held = True

    def release(self) -> None:
        """Let the next merge into the parent read it (once; later calls do nothing)."""
        if self._held:
            self._held = False
            self._entry.lock.release()
            self._forget()

    def _forget(self) -> None:
        with _guard:
            self._entry.users -= 1
            if self._entry.users == 0 and self._table.get(self._key) is self._entry:
                del self._table[self._key]


def merge_lock(store: object, parent_id: str) -> HeldMerge:
    """The (not yet acquired) merge lock of ``parent_id`` in ``store``."""
    return HeldMerge(store, parent_id)
