"""What every SQL script needs besides its transaction: statements, clock, TTL."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import orjson

from lexigram.ai.session.stores.base import SessionRecord
from lexigram.ai.session.stores.sql.mysql_replies import HeaderReplies
from lexigram.ai.session.stores.sql.rows import record_from_row

__all__ = ["NO_LIMIT", "Ctx", "StatementSet"]

#: Stands for "no limit" in ``LIMIT`` / cap comparisons (fits a signed 64-bit integer).
NO_LIMIT = 2**62


class StatementSet(Protocol):
    """What the context reads of its statements (``q``): the dialect.

    The statements of every area are a :class:`~.statements.Statements`; each script
    module types ``ctx.q`` with a protocol of the areas its scripts read (e.g.
    :class:`~.ops_turns.TurnScripts`), so this module, which every script imports,
    names no area and imports no script.
    """

    @property
    def dialect(self) -> str:
        """``sqlite``, ``postgresql`` or ``mysql``."""
        ...


Q = TypeVar("Q", bound=StatementSet, covariant=True)


class Ctx(Generic[Q]):
    """One operation's context: the statements, the clock and the TTL, in microseconds.

    ``now`` is read from the store's clock the first time a script asks for it, that
    is inside the transaction: on SQLite after ``BEGIN IMMEDIATE`` has the write
    lock. A script that waits for a row lock (PostgreSQL) calls :meth:`locked` once
    it holds it, so that a deadline is judged when the write is applied, not when
    the caller started waiting. ``now`` never goes backwards within an operation.
    ``replies``: on MariaDB, the store's copies of the headers it appended to (see
    :mod:`.mysql_replies`).
    """

    __slots__ = ("_clock", "_now", "lock_ns", "q", "replies", "ttl")

    def __init__(
        self,
        q: Q,
        clock: Callable[[], int],
        ttl: int,
        lock_ns: str,
        replies: HeaderReplies | None = None,
    ) -> None:
        self.q = q
        self.ttl = ttl
        self.lock_ns = lock_ns
        self.replies = replies
        self._clock = clock
        self._now: int | None = None

    @property
    def now(self) -> int:
        """The operation's current time (read once, on first use)."""
        now = self._now
        if now is None:
            now = self._now = self._clock()
        return now

    def locked(self) -> int:
        """Read the clock again now that the row lock is held; the new ``now``."""
        fresh = self._clock()
        if self._now is not None and fresh < self._now:
            fresh = self._now
        self._now = fresh
        return fresh

    def deadline(self, at: int) -> int | None:
        """``at + ttl``, or None when sessions do not expire."""
        return at + self.ttl if self.ttl > 0 else None

    def record(self, row: Sequence[Any]) -> SessionRecord:
        """A header row as a record with the effective status at ``now``."""
        return record_from_row(row, self.now)

    def id_list(self, ids: Sequence[str]) -> Any:
        """A list of ids as one statement parameter: text[] (PostgreSQL) or a JSON array."""
        if self.pg:
            return list(ids)
        return orjson.dumps(list(ids)).decode()

    @property
    def pg(self) -> bool:
        """True on PostgreSQL."""
        return self.q.dialect == "postgresql"
