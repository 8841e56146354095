"""SQL pieces shared by the statements of several areas, for one table prefix and dialect.

Statements use ``:name`` parameters (SQLite binds them natively; the PostgreSQL
runner rewrites them to ``$n`` once, the MariaDB runner to ``%(name)s`` after its
own translation, see :mod:`.mysql`) and only SQL that SQLite (3.35+) and PostgreSQL
both accept, except the row lock (``FOR UPDATE``) and the advisory lock, which exist
on PostgreSQL only (SQLite serialises writers with ``BEGIN IMMEDIATE``). Each area's
statements live beside the scripts that run them: ``SessionStatements`` in
:mod:`.ops_sessions`, ``TurnStatements`` in :mod:`.ops_turns`,
``CheckpointStatements`` in :mod:`.ops_checkpoints`.
"""

from __future__ import annotations

from lexigram.ai.session.stores.sql.rows import HEADER_COLUMNS, TURN_COLUMNS
from lexigram.ai.session.stores.sql.schema import ENDED_SQL, EXPIRY_BUCKET_US, LIVE_SQL

__all__ = ["ENDED_SQL", "EXPIRY_BUCKET_US", "LIVE_SQL", "NOT_DUE", "SqlParts", "quoted_guard"]

#: A live session whose deadline has not passed at ``:now``.
NOT_DUE = "(expires_at IS NULL OR expires_at > :now)"


class SqlParts:
    """Table names, column lists and clauses that statements of several areas share."""

    __slots__ = (
        "checkpoints", "cols", "dialect", "header", "ins_cols", "key_guard", "later_expiry",
        "later_now", "lock", "patch_set", "prefix", "sessions", "target", "tc",
        "tombstones", "turns",
    )

    def __init__(self, prefix: str, dialect: str) -> None:
        self.prefix = prefix
        self.dialect = dialect
        s = self.sessions = f"{prefix}sessions"
        self.turns = f"{prefix}turns"
        self.checkpoints = f"{prefix}checkpoints"
        self.tombstones = f"{prefix}tombstones"
        #: The header columns, in :data:`.rows.HEADER_COLUMNS` order.
        self.header = ", ".join(HEADER_COLUMNS)
        #: A turn read back: its ``seq`` and its JSON.
        self.tc = "seq, data"
        self.cols = ", ".join(TURN_COLUMNS)
        self.lock = " FOR UPDATE" if dialect == "postgresql" else ""
        self.ins_cols = [c_ for c_ in HEADER_COLUMNS if c_ != "ordinal"]
        self.patch_set = (
            "metadata = COALESCE(CAST(:p_metadata AS TEXT), metadata), "
            "active_tools = COALESCE(CAST(:p_active_tools AS TEXT), active_tools), "
            "active_skills = COALESCE(CAST(:p_active_skills AS TEXT), active_skills), "
            "variables = COALESCE(CAST(:p_variables AS TEXT), variables), "
            "system_prompt = CASE WHEN :p_prompt_set = 1 THEN CAST(:p_prompt AS TEXT) "
            "ELSE system_prompt END"
        )
        # A write sealed under a data key applies only while the header's metadata
        # holds that key's envelope as a JSON string (:kguard, quoted; see
        # ``SessionStore.append_turns``): envelopes need no escaping in JSON.
        find = "strpos" if dialect == "postgresql" else "instr"
        self.key_guard = f"{find}(metadata, :kguard) > 0"
        # updated_at and expires_at never move backwards (another writer's clock may
        # run ahead); a NULL deadline (no TTL, or ended) is set as given.
        self.later_now = "CASE WHEN updated_at > :now THEN updated_at ELSE :now END"
        exp = "CAST(:expires AS BIGINT)"
        self.later_expiry = (
            f"CASE WHEN {exp} IS NULL THEN NULL WHEN expires_at > {exp} THEN expires_at "
            f"ELSE {exp} END"
        )
        # PostgreSQL: the first attempt of a conditional update skips a row another
        # transaction holds (the caller then locks it, reads the clock and retries),
        # so that no deadline is judged with a clock read before a lock wait.
        # (The row is found again by its ctid: a second index scan would cost more.)
        self.target = (
            f"ctid = (SELECT ctid FROM {s} WHERE session_id = :sid FOR UPDATE SKIP LOCKED) "
            "AND session_id = :sid"
            if dialect == "postgresql"
            else "session_id = :sid"
        )


def quoted_guard(guard: str) -> str:
    """``:kguard`` of a guarded statement: the envelope as the JSON string it is stored as."""
    return f'"{guard}"'
