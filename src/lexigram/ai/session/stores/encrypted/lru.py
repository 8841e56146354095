"""``Lru``: a bounded least-recently-used map that several threads may share.

An encrypting store keeps data keys per session and per envelope in this process. A
store may be used from event loops in several threads at once (see
docs/event-loops.md), and a look-up that marks an entry as recently used while another
thread pushes it out must not fail, so each operation holds a lock for its few steps.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["Lru"]

K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    """At most ``size`` entries; the least recently used goes first."""

    def __init__(self, size: int) -> None:
        self._items: OrderedDict[K, V] = OrderedDict()
        self._size = max(size, 1)
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        """The entry of ``key`` (now the most recently used), or None."""
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` under ``key`` as the most recently used; push out the oldest."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def pop(self, key: K) -> V | None:
        """Remove and return the entry of ``key``, or None."""
        with self._lock:
            return self._items.pop(key, None)

    def clear(self) -> None:
        """Remove every entry."""
        with self._lock:
            self._items.clear()

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)
