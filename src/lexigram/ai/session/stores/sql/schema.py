"""The SQL schema: four tables and a version table, created by ``initialize()``.

Every table name starts with the store's ``table_prefix`` (default ``ai_session_``):

* ``sessions``: one row per session: the header columns, the totals, ``expires_at``,
  ``fork_seq``, ``last_seq`` (the per-session turn sequence) and ``ordinal``, a
  creation counter that orders a user's sessions and backs the listing cursor.
* ``turns``: one row per turn, primary key ``(session_id, seq)``; ``live`` is 1 while
  the turn is part of the session's history. A partial unique index keeps turn ids
  unique among the live turns of a session. ``data`` is the whole turn as JSON
  (orjson); ``turn_id``, ``tokens_used`` and ``cost`` are copied into columns for
  the index and for correcting the totals when a turn is popped. (SQLite, since 0.2:
  a rowid table indexed by its primary key and the unique index only; older databases
  keep ``WITHOUT ROWID`` and a partial ``(session_id, seq)`` index, and work with the
  same statements.)
* ``checkpoints``: a header snapshot plus the live ``seq`` ranges (or, for a
  checkpoint saved whole, its turns inline).
* ``tombstones``: ids of purged sessions that may not be reused before ``until_at``.
* ``schema_version``: one row per schema version applied.

MariaDB also gets a stored procedure that appends one or two turns
(:mod:`.mysql_routines`), created with the tables when the user may create routines
(the store works without it) and dropped with them.

``system_prompt`` is stored as a JSON string (PostgreSQL text cannot hold NUL; JSON
escapes it). Times are integers: microseconds since the Unix epoch, UTC, so that
comparisons are exact on every engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lexigram.logging import get_logger
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.exc import DBAPIError

from lexigram.ai.session.exceptions import SessionStoreError, SessionValidationError
from lexigram.ai.session.stores.sql.mysql_routines import routines
from lexigram.ai.session.validation import TABLE_PREFIX_RULE, table_prefix_ok

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Schema",
    "check_prefix",
    "create_or_upgrade",
]

#: Version of the schema this release writes. Raise it with every change and add the
#: step that upgrades the previous version to :data:`MIGRATIONS`.
SCHEMA_VERSION = 1

#: ``MIGRATIONS[n]`` upgrades a database at version ``n`` to ``n + 1`` in place. It
#: runs inside the transaction that records the new version.
MIGRATIONS: dict[int, Callable[[Connection, Schema], None]] = {}

#: The statuses of a live / an ended session, as SQL (the same text in the partial
#: indexes and in the queries that use them).
LIVE_SQL = "('active', 'suspended')"
ENDED_SQL = "('closed', 'expired')"

#: MariaDB's answers to a user who may not create a routine (no CREATE ROUTINE, no
#: SUPER with binary logging): the store then appends without the procedure.
_ROUTINE_REFUSED = {1044, 1142, 1227, 1370, 1419}

_log = get_logger(__name__)

_Double = Float(precision=53).with_variant(postgresql.DOUBLE_PRECISION(), "postgresql")
_Ordinal = BigInteger().with_variant(Integer(), "sqlite")
# MariaDB: ids are keys (VARCHAR: TEXT cannot be indexed whole); documents may pass
# TEXT's 64 KiB. Every table is utf8mb4 with a binary collation without padding.
_Id = Text().with_variant(String(255), "mysql")
_Doc = Text().with_variant(mysql.LONGTEXT(), "mysql")
_MYSQL_TABLE: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_nopad_bin",
}


def _made_on(*dialects: str) -> Callable[..., bool]:
    """A ``ddl_if`` condition for several dialects (its ``dialect=`` takes one name):
    the index is made from its ``Index`` there only; elsewhere a generated column
    stands in for it (:func:`_live_turn_ids`, :func:`_ended_at`)."""

    def applies(*_args: Any, dialect: Any = None, **_kw: Any) -> bool:
        return getattr(dialect, "name", "") in dialects

    return applies


def _live_turn_ids(prefix: str) -> Callable[..., None]:
    """MariaDB: turn ids unique among the live turns, through a generated column.

    ``live_turn_id`` holds the id of a live turn and NULL otherwise (NULLs never
    collide in a unique index), in place of the partial unique index of the others.
    """

    def add(_target: Any, connection: Connection, **_kw: Any) -> None:
        if connection.dialect.name == "mysql":
            connection.execute(text(
                f"ALTER TABLE {prefix}turns ADD COLUMN live_turn_id VARCHAR(255) "
                "AS (CASE WHEN live = 1 THEN turn_id END) PERSISTENT, "
                f"ADD UNIQUE INDEX {prefix}turns_live_id_ux (session_id, live_turn_id)"
            ))

    return add


#: MariaDB: the generated column standing for the partial index ``sessions_ended_ix``.
_ENDED_AT_COLUMN = (
    f"ended_at BIGINT AS (CASE WHEN status IN {ENDED_SQL} THEN updated_at END) PERSISTENT"
)


#: PostgreSQL: the width (µs) of the deadline buckets the sweeper's index holds: an
#: append moves its session's bucket (a new index entry, no HOT update) about once in
#: this time; the sweeper reads and passes over the sessions of the current bucket that
#: are not yet due. Five minutes: turns a minute apart are 4 in 5 HOT. The value is in
#: the stored column's expression: changing it needs a migration of existing tables.
EXPIRY_BUCKET_US = 300_000_000
#: PostgreSQL: the sweeper's index on each generated column (index name suffix, column).
_PG_SWEEPER_INDEXES = (("ended_ix", "ended_at"), ("expiry_ix", "expiry_bucket"))


def _pg_sweeper_columns(connection: Connection, prefix: str) -> None:
    """PostgreSQL: add the generated columns (if missing) and (re)make the sweeper's
    indexes on them; for a new table and for one made by an earlier release alike."""
    table = f"{prefix}sessions"
    connection.execute(text(
        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS ended_at BIGINT GENERATED ALWAYS AS "
        f"(CASE WHEN status IN {ENDED_SQL} THEN updated_at END) STORED, "
        "ADD COLUMN IF NOT EXISTS expiry_bucket BIGINT GENERATED ALWAYS AS "
        f"(CASE WHEN status IN {LIVE_SQL} THEN expires_at / {EXPIRY_BUCKET_US} END) STORED"
    ))
    for suffix, column in _PG_SWEEPER_INDEXES:
        index = f"{table}_{suffix}"
        connection.execute(text(f"DROP INDEX IF EXISTS {index}"))
        connection.execute(text(
            f"CREATE INDEX {index} ON {table} ({column}) WHERE {column} IS NOT NULL"
        ))


def _ended_at(prefix: str) -> Callable[..., None]:
    """MariaDB and PostgreSQL: the sweeper's indexes through generated columns.

    MariaDB has no partial index: ``ended_at`` holds ``updated_at`` of a closed or
    expired session and NULL for a live one, indexed in place of the partial index of
    the others: an index on ``updated_at`` itself would be rewritten by every append
    (each moves ``updated_at``), one more index write per chat exchange.

    PostgreSQL updates a row in place (a HOT update: no new entry in any index) only
    when no column an index refers to changes, its partial indexes' conditions
    included; a partial index on ``updated_at`` or ``expires_at`` therefore made every
    append write a new entry into each of the table's seven indexes. Its indexes are
    on ``ended_at`` (as MariaDB's) and on ``expiry_bucket``, a live session's deadline
    in 5-minute units (:data:`EXPIRY_BUCKET_US`): an append leaves the one NULL and
    moves the other only when the deadline crosses into the next 5 minutes, so most
    appends are HOT updates (all of them without a TTL).
    """

    def add(_target: Any, connection: Connection, **_kw: Any) -> None:
        if connection.dialect.name == "mysql":
            connection.execute(text(
                f"ALTER TABLE {prefix}sessions ADD COLUMN {_ENDED_AT_COLUMN}, "
                f"ADD INDEX {prefix}sessions_ended_ix (ended_at)"
            ))
        elif connection.dialect.name == "postgresql":
            _pg_sweeper_columns(connection, prefix)

    return add


def _pg_generated_indexes(conn: Connection, schema: Schema) -> None:
    """PostgreSQL tables made before ``ended_at`` and ``expiry_bucket``: move the
    sweeper's indexes onto them (see :func:`_ended_at`).

    Adding a stored generated column rewrites the sessions table once, holding its
    lock meanwhile (docs/backend-sql.md, "Schema version and upgrades").
    """
    if conn.dialect.name != "postgresql":
        return
    table = schema.sessions.name
    rows = conn.execute(
        text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename = :t"
        ),
        {"t": table},
    ).all()
    found = {str(row[0]): str(row[1]) for row in rows}
    if all(
        f"({column})" in found.get(f"{table}_{suffix}", "")
        for suffix, column in _PG_SWEEPER_INDEXES
    ):
        return
    _pg_sweeper_columns(conn, schema.prefix)


def _mysql_ended_index(conn: Connection, schema: Schema) -> None:
    """MariaDB tables made before ``ended_at``: move the purge index onto it.

    Their ``sessions_ended_ix`` is on ``updated_at``. Asked first (not ``IF [NOT]
    EXISTS``, whose notes the driver logs as warnings on every ``initialize()``);
    two initialisers doing it at once end with the same table.
    """
    if conn.dialect.name != "mysql":
        return
    table, index = schema.sessions.name, f"{schema.prefix}sessions_ended_ix"
    found = conn.execute(
        text(
            "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = "
            "DATABASE() AND TABLE_NAME = :t AND INDEX_NAME = :i"
        ),
        {"t": table, "i": index},
    ).scalars().all()
    if list(found) == ["ended_at"]:
        return
    has_column = conn.execute(
        text(
            "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
            "DATABASE() AND TABLE_NAME = :t AND COLUMN_NAME = 'ended_at'"
        ),
        {"t": table},
    ).scalar()
    changes = [] if has_column else [f"ADD COLUMN {_ENDED_AT_COLUMN}"]
    if found:
        changes.append(f"DROP INDEX {index}")
    changes.append(f"ADD INDEX {index} (ended_at)")
    conn.execute(text(f"ALTER TABLE {table} {', '.join(changes)}"))


def check_prefix(prefix: str) -> str:
    """``prefix`` when it is a safe table-name prefix; else ``SessionValidationError``."""
    if not table_prefix_ok(prefix):
        raise SessionValidationError("table_prefix", f"{TABLE_PREFIX_RULE}, got {prefix!r}")
    return prefix


@dataclass(frozen=True)
class Schema:
    """The tables of one ``table_prefix``."""

    prefix: str
    metadata: MetaData
    sessions: Table
    turns: Table
    checkpoints: Table
    tombstones: Table
    version: Table

    @classmethod
    def build(cls, prefix: str) -> Schema:
        """The table definitions for ``prefix``."""
        p = check_prefix(prefix)
        md = MetaData()
        sessions = Table(
            f"{p}sessions",
            md,
            Column("ordinal", _Ordinal, primary_key=True, autoincrement=True),
            Column("session_id", _Id, nullable=False),
            Column("user_id", _Id, nullable=False),
            Column("status", Text, nullable=False),
            Column("metadata", _Doc, nullable=False),
            Column("active_tools", _Doc, nullable=False),
            Column("active_skills", _Doc, nullable=False),
            Column("system_prompt", _Doc, nullable=True),
            Column("variables", _Doc, nullable=False),
            Column("created_at", BigInteger, nullable=False),
            Column("updated_at", BigInteger, nullable=False),
            Column("checkpoint_id", _Id, nullable=True),
            Column("total_tokens", BigInteger, nullable=False),
            Column("total_cost", _Double, nullable=False),
            Column("turn_count", BigInteger, nullable=False),
            Column("parent_session_id", _Id, nullable=True),
            Column("branch_name", _Id, nullable=True),
            Column("expires_at", BigInteger, nullable=True),
            Column("fork_seq", BigInteger, nullable=True),
            Column("last_seq", BigInteger, nullable=False),
            UniqueConstraint("session_id", name=f"{p}sessions_id_key"),
            sqlite_autoincrement=True,
            **_MYSQL_TABLE,
        )
        # Partial indexes hold only the rows their queries look for. MariaDB has none:
        # generated columns stand in (_live_turn_ids, _ended_at), as they do for the
        # sweeper's two on PostgreSQL (_ended_at); those are made there, not here.
        live, ended = text(f"status IN {LIVE_SQL}"), text(f"status IN {ENDED_SQL}")
        Index(f"{p}sessions_user_ix", sessions.c.user_id, sessions.c.ordinal)
        Index(
            f"{p}sessions_user_live_ix",
            sessions.c.user_id,
            sqlite_where=live,
            postgresql_where=live,
        )
        Index(
            f"{p}sessions_expiry_ix",
            sessions.c.expires_at,
            sqlite_where=live,
        ).ddl_if(callable_=_made_on("sqlite", "mysql"))
        Index(
            f"{p}sessions_ended_ix",
            sessions.c.updated_at,
            sqlite_where=ended,
        ).ddl_if(dialect="sqlite")
        event.listen(sessions, "after_create", _ended_at(p))
        Index(f"{p}sessions_parent_ix", sessions.c.parent_session_id, sessions.c.ordinal)

        turns = Table(
            f"{p}turns",
            md,
            Column("session_id", _Id, primary_key=True),
            Column("seq", BigInteger, primary_key=True, autoincrement=False),
            Column("turn_id", _Id, nullable=False),
            Column("live", SmallInteger, nullable=False),
            Column("tokens_used", BigInteger, nullable=False),
            Column("cost", _Double, nullable=False),
            Column("data", _Doc, nullable=False),
            # SQLite: a rowid table (new rows go to the end of the table's b-tree
            # instead of splitting full leaves in the middle of a session's range:
            # fewer pages per append). Databases created before keep WITHOUT ROWID;
            # the statements are the same for both.
            **_MYSQL_TABLE,
        )
        Index(
            f"{p}turns_live_id_ux",
            turns.c.session_id,
            turns.c.turn_id,
            unique=True,
            sqlite_where=turns.c.live == 1,
            postgresql_where=turns.c.live == 1,
        ).ddl_if(callable_=_made_on("sqlite", "postgresql"))
        # PostgreSQL only: SQLite reads a session's turns through the primary key
        # (the index would be one more page written per append; databases created
        # before keep it).
        Index(
            f"{p}turns_live_ix",
            turns.c.session_id,
            turns.c.seq,
            postgresql_where=turns.c.live == 1,
        ).ddl_if(dialect="postgresql")
        event.listen(turns, "after_create", _live_turn_ids(p))

        checkpoints = Table(
            f"{p}checkpoints",
            md,
            Column("ordinal", _Ordinal, primary_key=True, autoincrement=True),
            Column("checkpoint_id", _Id, nullable=False),
            Column("session_id", _Id, nullable=False),
            Column("created_at", BigInteger, nullable=False),
            Column("parent_checkpoint_id", _Id, nullable=True),
            Column("metadata", _Doc, nullable=False),
            Column("header", _Doc, nullable=False),
            Column("ranges", _Doc, nullable=True),
            Column("inline_turns", _Doc, nullable=True),
            UniqueConstraint("checkpoint_id", name=f"{p}checkpoints_id_key"),
            sqlite_autoincrement=True,
            **_MYSQL_TABLE,
        )
        Index(f"{p}checkpoints_session_ix", checkpoints.c.session_id, checkpoints.c.ordinal)

        tombstones = Table(
            f"{p}tombstones",
            md,
            Column("session_id", _Id, primary_key=True),
            Column("until_at", BigInteger, nullable=False),
            **_MYSQL_TABLE,
        )
        # Lapsed tombstones are deleted by each purge, oldest first (they were kept forever).
        Index(f"{p}tombstones_until_ix", tombstones.c.until_at)
        version = Table(
            f"{p}schema_version",
            md,
            Column("version", Integer, primary_key=True, autoincrement=False),
            Column("applied_at", BigInteger, nullable=False),
            Column("release", Text, nullable=False),
            **_MYSQL_TABLE,
        )
        return cls(p, md, sessions, turns, checkpoints, tombstones, version)

    @property
    def table_names(self) -> list[str]:
        """Every table of this prefix."""
        return [t.name for t in self.metadata.sorted_tables]


def current_version(conn: Connection, schema: Schema) -> int | None:
    """The highest version recorded, or None for a database without the version table."""
    if not conn.dialect.has_table(conn, schema.version.name):
        return None
    value = conn.execute(select(schema.version.c.version).order_by(
        schema.version.c.version.desc()).limit(1)).scalar()
    return None if value is None else int(value)


def create_or_upgrade(conn: Connection, schema: Schema, *, now_us: int, release: str) -> int:
    """Create missing tables and bring the schema to :data:`SCHEMA_VERSION` in place.

    Runs inside the caller's transaction (serialised against other initialisers).
    Refuses a database whose recorded version is newer than this release knows.
    Returns the version found before (0 for a new database).
    """
    found = current_version(conn, schema)
    if found is not None and found > SCHEMA_VERSION:
        raise SessionStoreError(
            f"the tables with prefix {schema.prefix!r} are at schema version {found}, newer "
            f"than this release of lexigram-ai-session supports ({SCHEMA_VERSION}); "
            "upgrade the package instead of downgrading the database"
        )
    if found is None or found == 0:
        schema.metadata.create_all(conn, checkfirst=True)
        conn.execute(
            schema.version.insert().values(
                version=SCHEMA_VERSION, applied_at=now_us, release=release
            )
        )
        # Tables may be there without a version (the version table dropped or emptied):
        # create_all keeps them as they are, so they get the later changes here.
        _repair(conn, schema)
        _create_routines(conn, schema)
        return 0
    for step in range(found, SCHEMA_VERSION):
        migrate = MIGRATIONS.get(step)
        if migrate is None:
            raise SessionStoreError(
                f"no upgrade from schema version {step} to {step + 1} (prefix {schema.prefix!r})"
            )
        migrate(conn, schema)
        conn.execute(
            schema.version.insert().values(version=step + 1, applied_at=now_us, release=release)
        )
    # Tables added in this version but absent (e.g. dropped by hand) come back.
    schema.metadata.create_all(conn, checkfirst=True)
    _repair(conn, schema)
    _create_routines(conn, schema)
    return found


def _repair(conn: Connection, schema: Schema) -> None:
    """Bring tables made by an earlier release to this one's indexes (each idempotent)."""
    _mysql_ended_index(conn, schema)
    _pg_generated_indexes(conn, schema)
    _tombstone_index(conn, schema)


def _tombstone_index(conn: Connection, schema: Schema) -> None:
    """Tables made before the index on ``tombstones.until_at`` get it (``create_all`` makes
    missing tables only).

    Names are compared without case: SQLite's are case-insensitive, so the tables made
    with prefix ``chat_`` are those of ``Chat_`` too, and their index, named as the
    first prefix spelled it, is already there (``checkfirst`` compares names exactly
    and re-created it: "index ... already exists"). MariaDB's index names are
    case-insensitive as well; PostgreSQL's prefix is lower case already.
    """
    table = schema.tombstones.name
    found = {str(ix["name"]).lower() for ix in inspect(conn).get_indexes(table)}
    for index in schema.tombstones.indexes:
        if str(index.name).lower() not in found:
            index.create(conn)


def _create_routines(conn: Connection, schema: Schema) -> None:
    """MariaDB: create each procedure that does not exist yet (last: DDL commits).

    A user who may not create routines gets a warning in the log; the store then
    runs the statements a procedure stands for.
    """
    if conn.dialect.name != "mysql":
        return
    found = _routines_found(conn)
    for name, create, _ in routines(schema.prefix):
        if not create or name.lower() in found:
            continue
        try:
            conn.execute(text(create))
        except DBAPIError as exc:
            code = exc.orig.args[0] if exc.orig is not None and exc.orig.args else None
            if code not in _ROUTINE_REFUSED:
                raise
            _log.warning(
                "ai_session.sql.no_routine", prefix=schema.prefix, error=str(exc.orig)
            )
            return


def _routines_found(conn: Connection) -> set[str]:
    """MariaDB: the (lower-cased) names of the procedures of this database we can see.

    Asked first because ``IF [NOT] EXISTS`` answers with a note the driver logs as a
    warning on every ``initialize()``.
    """
    found = conn.execute(
        text(
            "SELECT ROUTINE_NAME FROM information_schema.ROUTINES "
            "WHERE ROUTINE_SCHEMA = DATABASE() AND ROUTINE_TYPE = 'PROCEDURE'"
        )
    )
    return {str(row[0]).lower() for row in found}


def drop_all(conn: Connection, schema: Schema) -> None:
    """Drop every table of ``schema`` (destructive; tests and tooling only)."""
    schema.metadata.drop_all(conn, checkfirst=True)
    if conn.dialect.name == "mysql":
        found = _routines_found(conn)
        for name, _, drop in routines(schema.prefix):
            if name.lower() in found:
                conn.execute(text(drop))
