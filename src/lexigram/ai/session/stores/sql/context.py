"""What every SQL script needs besides its transaction: statements, clock, TTL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lexigram.ai.session.stores.base import SessionRecord
from lexigram.ai.session.stores.sql.rows import record_from_row
from lexigram.ai.session.stores.sql.statements import Statements

__all__ = ["NO_LIMIT", "Ctx"]

#: Stands for "no limit" in ``LIMIT`` / cap comparisons (fits a signed 64-bit integer).
NO_LIMIT = 2**62


@dataclass(frozen=True, slots=True)
class Ctx:
    """One operation's context: the statements, ``now`` and the TTL, in microseconds."""

    q: Statements
    now: int
    ttl: int
    lock_ns: str

    def deadline(self, at: int) -> int | None:
        """``at + ttl``, or None when sessions do not expire."""
        return at + self.ttl if self.ttl > 0 else None

    def record(self, row: Sequence[Any]) -> SessionRecord:
        """A header row as a record with the effective status at ``now``."""
        return record_from_row(row, self.now)

    @property
    def pg(self) -> bool:
        """True on PostgreSQL."""
        return self.q.dialect == "postgresql"
