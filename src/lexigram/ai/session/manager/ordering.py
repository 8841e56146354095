"""``SessionLocks``: one asyncio lock per session and event loop, for appends that
must not interleave in one process.

An automatic checkpoint is a snapshot of the session *after the append that crossed
the interval*. Concurrent appends to one session from tasks of one event loop would
otherwise slip in between that append and its snapshot, and the checkpoint labelled
"turn 5" would hold 20 turns. Appends from other loops or processes are not ordered by
this.
"""

from __future__ import annotations

import asyncio
import threading
import weakref

__all__ = ["SessionLocks"]


class SessionLocks:
    """Locks by session id, one table per event loop; a lock nobody holds is dropped."""

    __slots__ = ("_guard", "_tables")

    def __init__(self) -> None:
        self._tables: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, weakref.WeakValueDictionary[str, asyncio.Lock]
        ] = weakref.WeakKeyDictionary()
        self._guard = threading.Lock()  # loops in several threads share the manager

    def lock(self, session_id: str) -> asyncio.Lock:
        """The running loop's lock of ``session_id`` (hold a reference while using it)."""
        loop = asyncio.get_running_loop()
        table = self._tables.get(loop)
        if table is None:
            with self._guard:
                table = self._tables.setdefault(loop, weakref.WeakValueDictionary())
        found = table.get(session_id)
        if found is None:
            found = table[session_id] = asyncio.Lock()
        return found
