"""MariaDB: the stored procedures (append one or two turns; load a session), and fallbacks.

A chat exchange appends two turns, ``add_turn`` one. On MariaDB the store sends such an
append as ``CALL <prefix>append_…(…)``: the procedure is compiled once per connection,
where the anonymous ``BEGIN NOT ATOMIC … END`` statement it replaces
(:meth:`.ops_turns.TurnStatements.append_rows`) was parsed and compiled by the server
on every call, and the call is a tenth of that statement's text for the client to
format and send. Both run the same transaction with the same checks and the same
outcome: the header is locked with ``SKIP LOCKED`` (a header another transaction holds,
or a check that refuses, answers one NULL column and the caller takes the locked path),
the counters and totals move, the rows are inserted numbered from ``last_seq``, the
header is returned, and any error (a live duplicate id) rolls the whole append back.
The procedure alone skips the header when the caller already holds it
(:mod:`.mysql_replies`).

The procedure is created with the tables (:func:`.schema.create_or_upgrade`, ``CREATE
PROCEDURE IF NOT EXISTS``, ``SQL SECURITY INVOKER``) and dropped with them. When the
database user may not create routines, or a store finds the procedure missing or may
not execute it, the append runs the compound statement instead (:class:`Call`), so the
procedure is an optimisation and never a requirement.

The procedure reads the header into variables under the lock and writes the new
values from them, so it does not depend on the ``sql_mode`` it was created with
(``SIMULTANEOUS_ASSIGNMENT`` and the others are captured at creation).

``get_state`` (``load``) reads the header and the live turns in one consistent snapshot.
Sent by the client that is five round trips (``SET TRANSACTION``, ``START TRANSACTION
WITH CONSISTENT SNAPSHOT``, two ``SELECT``s, ``COMMIT``); the load procedure runs the
same five statements on the server and returns the two result sets to one ``CALL``
(measured: 0.29 against 0.59-0.85 ms for 20 turns, 2.7 against 3.4-3.6 ms for 1,000).
A store that finds it missing or may not execute it reads as before.
"""

from __future__ import annotations

import zlib

from lexigram.ai.session.stores.sql.rows import HEADER_COLUMNS

__all__ = [
    "APPEND_SLOTS",
    "EXPECT_PARAMS",
    "Call",
    "append_call",
    "append_procedure",
    "create_append_procedure",
    "create_load_procedure",
    "drop_append_procedure",
    "drop_load_procedure",
    "fingerprint",
    "load_call",
    "load_procedure",
    "routines",
]

#: The most turns the procedure appends (larger batches use the compound statement).
APPEND_SLOTS = 2
#: Raise when the procedure's body or parameters change: the name carries it, so a
#: database keeps the old procedure for processes still running the old release
#: (2: the data-key guard ``kg``; 3: the caller's expected header, see
#: :mod:`.mysql_replies`; 4: ``kg`` as TEXT; :func:`routines` drops the earlier ones
#: with the tables).
_VERSION = 4
#: The same for the load procedure.
_LOAD_VERSION = 1
#: ids and documents as the tables store them (binary collation without padding).
_ID = "VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin"
_DOC = "LONGTEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin"
#: A data-key guard: a key envelope as a quoted JSON string (see ``SqlParts.key_guard``).
#: TEXT: the envelope names its session, whose id (up to 255 characters) JSON may escape
#: to 12 characters each; VARCHAR(1024) refused every append to a session of 180 emoji.
_GUARD = "TEXT CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin"
#: A header's fingerprint (:func:`fingerprint`): 64 hex digits.
_FP = "CHAR(64) CHARACTER SET ascii COLLATE ascii_bin"
#: The parameters that name the header a caller expects (see :mod:`.mysql_replies`).
EXPECT_PARAMS = (
    "e_fp", "e_count", "e_seq", "e_tokens", "e_cost", "e_updated", "e_expires",
)
#: The header columns an append leaves as they are, text first: what
#: :func:`fingerprint` covers.
_KEPT_TEXT = (
    "session_id", "user_id", "metadata", "active_tools", "active_skills", "system_prompt",
    "variables", "checkpoint_id", "parent_session_id", "branch_name",
)
_KEPT_NUMBERS = ("ordinal", "created_at", "fork_seq")


def fingerprint() -> str:
    """SQL: SHA-256 (hex) of the header columns an append leaves as they are.

    Each text is preceded by its length in characters (``-1`` for NULL), so no two
    headers encode alike; ``ordinal`` is new for every row ever inserted, so a session
    deleted and created again under the same id never matches its former self.
    """
    numbers = ", ".join(f"IFNULL({c}, 'n')" for c in _KEPT_NUMBERS)
    texts = ", ".join(f"IFNULL(CHAR_LENGTH({c}), -1), {c}" for c in _KEPT_TEXT)
    return f"SHA2(CONCAT_WS(',', {numbers}, {texts}), 256)"


class Call(str):
    """A ``CALL`` statement and the statement to run instead when the routine is not there.

    A ``str``, so it passes through the store's scripts as any statement; the MariaDB
    runner (:mod:`.mysql`) runs :attr:`fallback` when the server answers that the
    procedure does not exist or may not be executed, and from then on in that process.
    """

    __slots__ = ("fallback",)
    fallback: str

    def __new__(cls, sql: str, fallback: str) -> Call:
        """The call ``sql``; ``fallback`` takes the same ``:name`` parameters."""
        self = super().__new__(cls, sql)
        self.fallback = fallback
        return self


def append_procedure(prefix: str, version: int = _VERSION) -> str:
    """The procedure's name for ``prefix``.

    Routine names are case-insensitive and table names are not: the checksum of the
    exact prefix keeps ``"A_"`` and ``"a_"`` (two sets of tables) apart.
    """
    return f"{prefix}append_v{version}_{_checksum(prefix)}"


def _checksum(prefix: str) -> str:
    return f"{zlib.crc32(prefix.encode()):08x}"


def load_procedure(prefix: str) -> str:
    """The load procedure's name for ``prefix`` (see :func:`append_procedure`)."""
    return f"{prefix}load_v{_LOAD_VERSION}_{_checksum(prefix)}"


def load_call(prefix: str) -> str:
    """``CALL`` of the load procedure: ``:sid``; two result sets, header then turns."""
    return f"CALL {load_procedure(prefix)}(:sid)"


def append_call(prefix: str, n: int, guarded: bool = False) -> str:
    """``CALL`` of the procedure for ``n`` (1 or 2) turns with the compound's parameters.

    ``:sid, :n, :tokens, :now, :max, :expires, :tok_room, :cost_room``, the data-key
    guard (``:kguard`` when ``guarded``, else ``NULL``), per turn ``:id<i>, :tok<i>,
    :c<i>, :data<i>`` (the slots after ``n`` are ``NULL``), then the header the caller
    expects (:data:`EXPECT_PARAMS`, all ``NULL`` when it expects none).
    """
    if not 0 < n <= APPEND_SLOTS:
        raise ValueError(f"the append procedure takes 1 to {APPEND_SLOTS} turns, not {n}")
    slots = [
        f":id{i}, :tok{i}, :c{i}, :data{i}" if i <= n else "NULL, NULL, NULL, NULL"
        for i in range(1, APPEND_SLOTS + 1)
    ]
    expected = ", ".join(f":{name}" for name in EXPECT_PARAMS)
    return (
        f"CALL {append_procedure(prefix)}(:sid, :n, :tokens, :now, :max, :expires, "
        f":tok_room, :cost_room, {':kguard' if guarded else 'NULL'}, {', '.join(slots)}, "
        f"{expected})"
    )


def create_append_procedure(prefix: str) -> str:
    """``CREATE PROCEDURE IF NOT EXISTS`` of the append procedure for ``prefix``.

    Its answer (see :mod:`.mysql_replies`): no result set when it applied and the
    header it locked was exactly the one the caller expects (``e_fp`` and the
    counters); the header and its :func:`fingerprint` when it applied otherwise; one
    ``NULL`` column when a check refused it or another transaction held the header.
    """
    s, t = f"{prefix}sessions", f"{prefix}turns"
    turn_params = ", ".join(
        f"id{i} {_ID}, tok{i} BIGINT, c{i} DOUBLE, data{i} {_DOC}"
        for i in range(1, APPEND_SLOTS + 1)
    )
    insert = f"INSERT INTO {t} (session_id, seq, live, turn_id, tokens_used, cost, data) VALUES "
    inserts = " ELSE".join(
        f"IF n = {n} THEN {insert}"
        + ", ".join(f"(sid, base + {i}, 1, id{i}, tok{i}, c{i}, data{i})" for i in range(1, n + 1))
        + ";"
        for n in range(1, APPEND_SLOTS + 1)
    )
    # Added one turn at a time, as new_totals and the compound statement do.
    costs = " ".join(
        f"IF n >= {i} THEN SET cost = cost + c{i}; END IF;" for i in range(2, APPEND_SLOTS + 1)
    )
    header = ", ".join(HEADER_COLUMNS)
    return (
        f"CREATE PROCEDURE IF NOT EXISTS {append_procedure(prefix)}(sid {_ID}, n INT, "
        "tokens BIGINT, now_us BIGINT, cap BIGINT, expires BIGINT, tok_room BIGINT, "
        f"cost_room DOUBLE, kg {_GUARD}, {turn_params}, e_fp {_FP}, e_count BIGINT, "
        "e_seq BIGINT, e_tokens BIGINT, e_cost DOUBLE, e_updated BIGINT, e_expires BIGINT) "
        "MODIFIES SQL DATA SQL SECURITY INVOKER "
        "BEGIN "
        "DECLARE o, base, cnt, toks, upd, exp_at BIGINT DEFAULT NULL; "
        "DECLARE cost DOUBLE DEFAULT NULL; "
        "DECLARE ok, same BOOLEAN DEFAULT NULL; "
        f"DECLARE fp {_FP} DEFAULT NULL; "
        "DECLARE CONTINUE HANDLER FOR NOT FOUND SET ok = NULL; "
        "DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END; "
        "START TRANSACTION; "
        # The checks of the compound statement's WHERE clause, judged under the lock.
        "SELECT ordinal, last_seq, turn_count, total_tokens, total_cost, updated_at, "
        f"expires_at, n BETWEEN 1 AND {APPEND_SLOTS} AND status = 'active' "
        "AND (expires_at IS NULL OR expires_at > now_us) "
        "AND turn_count < cap AND turn_count + n <= cap AND total_tokens <= tok_room "
        "AND total_cost <= cost_room AND (kg IS NULL OR INSTR(metadata, kg) > 0), "
        f"IF(e_fp IS NULL, NULL, {fingerprint()}) "
        "INTO o, base, cnt, toks, cost, upd, exp_at, ok, fp "
        f"FROM {s} WHERE session_id = sid FOR UPDATE SKIP LOCKED; "
        "IF ok THEN "
        # Judged before the totals move: the header as the caller last saw it?
        "SET same = IFNULL(fp = e_fp AND cnt = e_count AND base = e_seq "
        "AND toks = e_tokens AND cost = e_cost AND upd = e_updated "
        "AND exp_at <=> e_expires, FALSE); "
        f"SET cost = cost + c1; {costs} "
        f"UPDATE {s} SET last_seq = base + n, turn_count = cnt + n, "
        "total_tokens = toks + tokens, total_cost = cost, "
        "updated_at = IF(upd > now_us, upd, now_us), "
        "status = IF(cnt + n >= cap, 'closed', status), "
        "expires_at = IF(cnt + n >= cap OR expires IS NULL, NULL, "
        "IF(exp_at > expires, exp_at, expires)) "
        "WHERE ordinal = o; "
        f"{inserts} END IF; "
        f"IF NOT same THEN SELECT {header}, {fingerprint()} FROM {s} WHERE ordinal = o; "
        "END IF; "
        "ELSE SELECT NULL; "
        "END IF; "
        "COMMIT; "
        "END"
    )


def drop_append_procedure(prefix: str) -> str:
    """``DROP PROCEDURE IF EXISTS`` of the append procedure for ``prefix``."""
    return f"DROP PROCEDURE IF EXISTS {append_procedure(prefix)}"


def create_load_procedure(prefix: str) -> str:
    """``CREATE PROCEDURE IF NOT EXISTS`` of the load procedure for ``prefix``.

    The statements the store sends for a snapshot read, in the same order: the
    header's columns (``HEADER_COLUMNS``, no row when there is no such session), then
    the live turns' ``seq, data`` in ``seq`` order.
    """
    s, t = f"{prefix}sessions", f"{prefix}turns"
    header = ", ".join(HEADER_COLUMNS)
    return (
        f"CREATE PROCEDURE IF NOT EXISTS {load_procedure(prefix)}(sid {_ID}) "
        "READS SQL DATA SQL SECURITY INVOKER "
        "BEGIN "
        "DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END; "
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; "
        "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY; "
        f"SELECT {header} FROM {s} WHERE session_id = sid; "
        f"SELECT seq, data FROM {t} WHERE session_id = sid AND live = 1 ORDER BY seq; "
        "COMMIT; "
        "END"
    )


def drop_load_procedure(prefix: str) -> str:
    """``DROP PROCEDURE IF EXISTS`` of the load procedure for ``prefix``."""
    return f"DROP PROCEDURE IF EXISTS {load_procedure(prefix)}"


def routines(prefix: str) -> list[tuple[str, str, str]]:
    """``(name, create, drop)`` of every procedure of ``prefix``.

    Earlier versions of a procedure come with an empty ``create``: they are dropped
    with the tables and never created again.
    """
    earlier = [
        (name, "", f"DROP PROCEDURE IF EXISTS {name}")
        for name in (append_procedure(prefix, v) for v in range(1, _VERSION))
    ]
    return [
        (
            append_procedure(prefix),
            create_append_procedure(prefix),
            drop_append_procedure(prefix),
        ),
        (load_procedure(prefix), create_load_procedure(prefix), drop_load_procedure(prefix)),
        *earlier,
    ]
