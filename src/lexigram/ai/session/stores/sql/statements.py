"""Every statement the SQL store runs, for one table prefix and dialect, by area.

Each area's statements are defined beside the scripts that run them
(:class:`~.ops_sessions.SessionStatements`, :class:`~.ops_turns.TurnStatements`,
:class:`~.ops_checkpoints.CheckpointStatements`) from the pieces they share
(:class:`~.fragments.SqlParts`); a script reads them as ``ctx.q.<area>.<name>``.
"""

from __future__ import annotations

from lexigram.ai.session.stores.sql.fragments import SqlParts
from lexigram.ai.session.stores.sql.ops_checkpoints import CheckpointStatements
from lexigram.ai.session.stores.sql.ops_sessions import SessionStatements
from lexigram.ai.session.stores.sql.ops_turns import TurnStatements

__all__ = ["Statements"]


class Statements:
    """The statements of every area, built once per store (prefix and dialect)."""

    __slots__ = ("checkpoints", "dialect", "ping", "sessions", "turns")

    def __init__(self, prefix: str, dialect: str) -> None:
        parts = SqlParts(prefix, dialect)
        self.dialect = dialect
        self.sessions = SessionStatements(parts)
        self.turns = TurnStatements(parts)
        self.checkpoints = CheckpointStatements(parts)
        self.ping = "SELECT 1"

    @property
    def is_postgres(self) -> bool:
        """True when the statements are for PostgreSQL."""
        return self.dialect == "postgresql"
