"""Re-reading a session whose stored turns have not changed, as a plaintext store would.

A backend whose whole read shows the encrypted store its turns' stored texts before
decoding them (``SessionStore.load_reusing``: the SQL and Redis stores) lets a
re-read skip both the decoding of the sealed turns and their opening. A
:class:`StoredRun` holds what the session's last whole read found: the stored texts
(each one, or the JSON array SQLite joins them into), the raw data key they opened
under, and the opened turns as one plaintext JSON array. When a new read's texts are
exactly those, under the same key, the plaintext array is decoded afresh (each read
gets its own turns and containers), the way a plaintext store decodes what it
stores. Opening depends on the stored texts and the key alone, so equal texts under
one key open to equal turns, whatever the texts hold (a value planted in clear
beside a sealed text is part of the text compared).

When the texts start with the run's and go on (turns appended since), only those
after the run are decoded and opened, and the run grows by them. Anything else (a
popped or replaced turn, a restore, another key, a damaged text) reads the usual
way, which names any problem.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session.stores.base import StoredTurns
from lexigram.ai.session.stores.codec import turns_from_array, turns_from_texts

__all__ = ["StoredRun", "extended_stored_run", "new_stored_run", "stored_prefix", "stored_tail"]


@dataclass(frozen=True, slots=True, eq=False)
class StoredRun:
    """The stored texts of a session's last whole read and its turns, opened."""

    raw_key: bytes
    count: int
    texts: list[str | bytes] | None  # each stored text, in order; or
    array: str | bytes | None  # all of them joined as one JSON array (SQLite)
    plain: bytes  # the opened turns as one JSON array
    size: int  # bytes held, roughly (what the cache's budget counts)

    def turns(self) -> list[SessionTurn] | None:
        """The run's turns, decoded afresh (None: not decodable, read the usual way)."""
        return turns_from_array(self.plain, self.count)


def _plain(opened: list[SessionTurn]) -> bytes | None:
    """``opened`` as one JSON array (None when a value has no exact JSON form)."""
    try:
        return orjson.dumps(opened)
    except (orjson.JSONEncodeError, TypeError):
        return None


def _run(raw_key: bytes, stored: StoredTurns, plain: bytes) -> StoredRun | None:
    """The run of ``stored`` as read, its turns opened to ``plain``."""
    texts = stored.texts
    if texts is not None:
        kept: list[str | bytes] = texts if type(texts) is list else list(texts)
        return StoredRun(raw_key, stored.count, kept, None, plain, sum(map(len, kept)) + len(plain))
    if stored.array is None:
        return None
    size = len(stored.array) + len(plain)
    return StoredRun(raw_key, stored.count, None, stored.array, plain, size)


def new_stored_run(
    raw_key: bytes, stored: StoredTurns, opened: list[SessionTurn]
) -> StoredRun | None:
    """The run of ``stored`` (as read) whose turns opened to ``opened`` under ``raw_key``."""
    if not opened or stored.count != len(opened):
        return None
    plain = _plain(opened)
    return None if plain is None else _run(raw_key, stored, plain)


def stored_prefix(run: StoredRun, stored: StoredTurns) -> bool:
    """Whether ``stored`` starts with exactly the run's texts (all of them, in order)."""
    count = run.count
    if stored.count < count:
        return False
    if run.texts is not None:
        texts = stored.texts
        if texts is None:
            return False
        head = texts if stored.count == count else texts[:count]
        return (head if type(head) is list else list(head)) == run.texts
    array, before = stored.array, run.array
    if array is None or before is None:
        return False
    if stored.count == count:
        return array == before
    # before is "[t1,...,tn]"; array must be "[t1,...,tn," followed by the rest.
    head_len = len(before) - 1
    if isinstance(array, str) and isinstance(before, str):
        return array.startswith(before[:head_len]) and array[head_len] == ","
    if isinstance(array, bytes) and isinstance(before, bytes):
        return array.startswith(before[:head_len]) and array[head_len : head_len + 1] == b","
    return False


def stored_tail(run: StoredRun, stored: StoredTurns) -> list[SessionTurn] | None:
    """The turns of ``stored`` after the run's (still sealed), or None when not decodable.

    The count is checked, so a text that does not hold exactly one JSON value is
    never taken for a turn here.
    """
    rest = stored.count - run.count
    if stored.texts is not None:
        return turns_from_texts(stored.texts[run.count :])
    array, before = stored.array, run.array
    if array is None or before is None:
        return None
    tail = array[len(before) :]  # after "[t1,...,tn,"
    opening = "[" if isinstance(tail, str) else b"["
    return turns_from_array(opening + tail, rest)  # type: ignore[operator]


def extended_stored_run(
    run: StoredRun, stored: StoredTurns, opened_tail: list[SessionTurn]
) -> StoredRun | None:
    """``run`` grown by the turns after it (``opened_tail``), as ``stored`` now holds them."""
    tail = _plain(opened_tail)
    if tail is None or not opened_tail:
        return None
    return _run(run.raw_key, stored, run.plain[:-1] + b"," + tail[1:])
