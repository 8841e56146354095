"""``OpenedTurns``: a bounded in-process cache of opened turn bodies, per session.

Reading a long encrypted session again (each agent step reads its history) would
decode and decrypt every turn again. A sealed turn never changes once stored (a new
value gets a fresh nonce), so its plaintext is kept under its turn id (a header field
under ``"\\0" + field``, which no turn id holds), together with the sealed text and the
data key it was opened with. An entry answers only the same sealed text under the
same data key at the same place: a value moved to another turn or session, or sealed
under another key, is never answered from here. Looking up by turn id (short) rather
than by sealed text (hundreds of characters, a fresh string on each read) saves
hashing the whole ciphertext, and a replaced value (a popped turn's id used again, a
metadata update) takes its predecessor's place instead of piling up.

What is kept is the decrypted JSON bytes (immutable), so each read still parses
its own fresh containers; for a text-only turn body, its text (a ``str``, immutable,
so every read may share it). Beside the entries, a session keeps the :class:`.Run` of
its last whole read (:mod:`.reread`), which answers a re-read without a lookup per turn,
and, on a backend that shows its stored texts, the :class:`.StoredRun` of its last
``load`` from its second on (:mod:`.reread_stored`), which answers one without
decoding the sealed turns. The turns a store appends are entered as it seals them,
so its next read of them decrypts none. The cache is bounded by bytes (runs
included); whole sessions are dropped, oldest first, and a deleted, purged or erased
session's entries are dropped at once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from lexigram.ai.session.stores.encrypted.reread import Run
from lexigram.ai.session.stores.encrypted.reread_stored import StoredRun

__all__ = ["DEFAULT_TURN_CACHE_BYTES", "Entry", "OpenedTurns"]

#: Default budget of :class:`OpenedTurns` (plaintext bytes kept).
DEFAULT_TURN_CACHE_BYTES = 32 * 1024 * 1024
#: ``(sealed text, raw data key, plaintext)`` of one opened value (the plaintext of a
#: text-only turn body is its text).
Entry = tuple[str, bytes, bytes | str]
_MAX_ENTRY = 64 * 1024  # a larger turn is not worth holding


def _size(place: str, entry: Entry) -> int:
    return len(place) + len(entry[0]) + len(entry[2])


class OpenedTurns:
    """Opened turn bodies of recently read or written sessions, within a byte budget."""

    def __init__(self, max_bytes: int = DEFAULT_TURN_CACHE_BYTES) -> None:
        self.max_bytes = max(max_bytes, 0)
        self._sessions: OrderedDict[str, dict[str, Entry]] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._runs: dict[str, tuple[Run, int]] = {}
        self._stored_runs: dict[str, tuple[StoredRun, int]] = {}
        # Sessions with one whole read and no run yet (see admit_run).
        self._read_once: set[str] = set()
        self._total = 0
        # Event loops in several threads may share the store: each operation is atomic.
        self._lock = threading.Lock()

    def of(self, session_id: str) -> dict[str, Entry] | None:
        """Entries of ``session_id`` (turn id or ``"\\0" + field`` -> entry); None when off."""
        if not self.max_bytes:
            return None
        with self._lock:
            entries = self._sessions.get(session_id)
            if entries is None:
                entries = self._sessions[session_id] = {}
                self._sizes[session_id] = 0
            else:
                self._sessions.move_to_end(session_id)
            return entries

    def added(
        self, session_id: str, entries: dict[str, Entry], new: list[tuple[str, Entry]]
    ) -> None:
        """Record ``new`` entries (place, entry) of a session, then keep within the budget.

        Nothing is recorded when the session was dropped since ``entries`` was taken
        (:meth:`of`): a read or write that finishes after an erasure leaves nothing.
        """
        if not new:
            return
        with self._lock:
            if self._sessions.get(session_id) is not entries:
                return
            grown = 0
            for place, entry in new:
                old = entries.pop(place, None)
                if old is not None:
                    grown -= _size(place, old)
                size = _size(place, entry)
                if size <= _MAX_ENTRY:
                    entries[place] = entry
                    grown += size
            self._grow(session_id, grown)

    def run(self, session_id: str) -> Run | None:
        """The run of the session's last whole read, if kept."""
        kept = self._runs.get(session_id)
        return None if kept is None else kept[0]

    def keep_run(self, session_id: str, entries: dict[str, Entry], run: Run) -> None:
        """Keep ``run`` as the session's last whole read (``entries``: from :meth:`of`)."""
        self._keep(self._runs, session_id, entries, run, run.size)

    def stored_run(self, session_id: str) -> StoredRun | None:
        """The stored run of the session's last ``load``, if kept."""
        kept = self._stored_runs.get(session_id)
        return None if kept is None else kept[0]

    def admit_run(self, session_id: str, entries: dict[str, Entry]) -> bool:
        """Whether a whole read of the session keeps a run (either kind): from its second on.

        A run costs its making (a pass over the opened turns; a stored run, one JSON
        encoding of them) and memory while kept (a stored run, about twice the
        session's stored size); it pays back on the next read, so a session this
        process reads once does without (its first read is the cheaper).
        """
        with self._lock:
            if self._sessions.get(session_id) is not entries:
                return False
            if session_id in self._read_once or session_id in self._stored_runs:
                return True
            self._read_once.add(session_id)
            return False

    def keep_stored_run(
        self, session_id: str, entries: dict[str, Entry], run: StoredRun
    ) -> None:
        """Keep ``run`` as the session's last ``load`` (``entries``: from :meth:`of`)."""
        self._keep(self._stored_runs, session_id, entries, run, run.size)

    def _keep(
        self,
        runs: dict[str, tuple[Any, int]],
        session_id: str,
        entries: dict[str, Entry],
        run: Any,
        size: int,
    ) -> None:
        with self._lock:
            if self._sessions.get(session_id) is not entries:
                return
            old = runs.pop(session_id, None)
            grown = -old[1] if old is not None else 0
            if size <= self.max_bytes // 2:  # one that would crowd out every other is not kept
                runs[session_id] = (run, size)
                grown += size
            self._grow(session_id, grown)

    def drop(self, session_id: str) -> None:
        """Forget ``session_id``'s entries and run."""
        with self._lock:
            self._drop(session_id)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._sessions.clear()
            self._sizes.clear()
            self._runs.clear()
            self._stored_runs.clear()
            self._read_once.clear()
            self._total = 0

    def _grow(self, session_id: str, grown: int) -> None:
        """Count ``grown`` bytes more for the session, then keep within the budget (locked)."""
        self._sizes[session_id] += grown
        self._total += grown
        sessions = self._sessions
        while self._total > self.max_bytes and sessions:
            self._drop(next(iter(sessions)))

    def _drop(self, session_id: str) -> None:
        if self._sessions.pop(session_id, None) is not None:
            self._total -= self._sizes.pop(session_id, 0)
            self._runs.pop(session_id, None)
            self._stored_runs.pop(session_id, None)
            self._read_once.discard(session_id)
