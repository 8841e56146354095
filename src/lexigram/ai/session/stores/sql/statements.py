"""The SQL text of every store operation, for one table prefix and dialect.

Statements use ``:name`` parameters (SQLite binds them natively; the PostgreSQL
runner rewrites them to ``$n`` once) and only SQL that SQLite (3.35+) and PostgreSQL
both accept, except the row lock (``FOR UPDATE``) and the advisory lock, which exist
on PostgreSQL only (SQLite serialises writers with ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

from lexigram.ai.session.stores.sql.rows import HEADER_COLUMNS, TURN_COLUMNS
from lexigram.ai.session.stores.sql.schema import ENDED_SQL, LIVE_SQL

__all__ = ["Statements"]

_LIVE = LIVE_SQL
_ENDED = ENDED_SQL
_NOT_DUE = "(expires_at IS NULL OR expires_at > :now)"


class Statements:
    """Every statement the store runs, built once per store (prefix and dialect)."""

    def __init__(self, prefix: str, dialect: str) -> None:
        self.dialect = dialect
        s, t, c, tb = (
            f"{prefix}sessions", f"{prefix}turns", f"{prefix}checkpoints", f"{prefix}tombstones"
        )
        h = ", ".join(HEADER_COLUMNS)
        tc = "seq, data"
        cols = ", ".join(TURN_COLUMNS)
        lock = " FOR UPDATE" if dialect == "postgresql" else ""
        ins_cols = [c_ for c_ in HEADER_COLUMNS if c_ != "ordinal"]
        patch_set = (
            "metadata = COALESCE(CAST(:p_metadata AS TEXT), metadata), "
            "active_tools = COALESCE(CAST(:p_active_tools AS TEXT), active_tools), "
            "active_skills = COALESCE(CAST(:p_active_skills AS TEXT), active_skills), "
            "variables = COALESCE(CAST(:p_variables AS TEXT), variables), "
            "system_prompt = CASE WHEN :p_prompt_set = 1 THEN CAST(:p_prompt AS TEXT) "
            "ELSE system_prompt END"
        )
        # updated_at and expires_at never move backwards (another writer's clock may
        # run ahead); a NULL deadline (no TTL, or ended) is set as given.
        later_now = "CASE WHEN updated_at > :now THEN updated_at ELSE :now END"
        exp = "CAST(:expires AS BIGINT)"
        later_expiry = (
            f"CASE WHEN {exp} IS NULL THEN NULL WHEN expires_at > {exp} THEN expires_at "
            f"ELSE {exp} END"
        )
        # PostgreSQL: the first attempt of a conditional update skips a row another
        # transaction holds (the caller then locks it, reads the clock and retries),
        # so that no deadline is judged with a clock read before a lock wait.
        # (The row is found again by its ctid: a second index scan would cost more.)
        target = (
            f"ctid = (SELECT ctid FROM {s} WHERE session_id = :sid FOR UPDATE SKIP LOCKED) "
            "AND session_id = :sid"
            if dialect == "postgresql"
            else "session_id = :sid"
        )

        def appended(totals: str) -> str:
            return (
                f"last_seq = last_seq + :n, turn_count = turn_count + :n, {totals}, "
                f"updated_at = {later_now}, "
                "status = CASE WHEN turn_count + :n >= :max THEN 'closed' ELSE status END, "
                "expires_at = CASE WHEN turn_count + :n >= :max THEN NULL "
                f"ELSE {later_expiry} END"
            )

        delta = "total_tokens = total_tokens + :tokens, total_cost = total_cost + :cost"
        absolute = "total_tokens = :abs_tokens, total_cost = :abs_cost"
        # The totals guard keeps both sums exact and finite (see validation).
        append_where = (
            f"WHERE {target} AND status = 'active' AND {_NOT_DUE} "
            "AND turn_count < :max AND turn_count + :n <= :max "
            "AND total_tokens <= :tok_room AND total_cost <= :cost_room"
        )
        # ------------------------------------------------------------ headers
        self.header = f"SELECT {h} FROM {s} WHERE session_id = :sid"
        # PostgreSQL: header and live turns in one statement (its own snapshot, one
        # round trip instead of BEGIN, two SELECTs and COMMIT).
        self.load_one = (
            f"SELECT {h}, ARRAY(SELECT data FROM {t} WHERE session_id = :sid AND live = 1 "
            f"ORDER BY seq) FROM {s} WHERE session_id = :sid"
        )
        self.exists = f"SELECT 1 FROM {s} WHERE session_id = :sid"
        self.header_lock = f"SELECT {h} FROM {s} WHERE session_id = :sid{lock}"
        self.insert_session = (
            f"INSERT INTO {s} ({', '.join(ins_cols)}) VALUES "
            f"({', '.join(':' + c_ for c_ in ins_cols)}) RETURNING {h}"
        )
        self.replace_header = (
            f"UPDATE {s} SET user_id = :user_id, status = :status, metadata = :metadata, "
            "active_tools = :active_tools, active_skills = :active_skills, "
            "system_prompt = :system_prompt, variables = :variables, "
            "created_at = :created_at, updated_at = :updated_at, "
            "checkpoint_id = :checkpoint_id, total_tokens = :total_tokens, "
            "total_cost = :total_cost, turn_count = :turn_count, "
            "parent_session_id = :parent_session_id, branch_name = :branch_name, "
            "expires_at = CAST(:expires_at AS BIGINT) "
            "WHERE session_id = :session_id RETURNING last_seq"
        )
        self.bump_seq = f"UPDATE {s} SET last_seq = last_seq + :n WHERE session_id = :sid"
        self.append = f"UPDATE {s} SET {appended(delta)} {append_where} RETURNING {h}"
        self.append_patch = (
            f"UPDATE {s} SET {patch_set}, {appended(delta)} {append_where} RETURNING {h}"
        )
        self.append_abs = f"UPDATE {s} SET {appended(absolute)} {append_where} RETURNING {h}"
        self.append_abs_patch = (
            f"UPDATE {s} SET {patch_set}, {appended(absolute)} {append_where} RETURNING {h}"
        )
        # PostgreSQL: the whole append as one statement (one round trip, its own
        # transaction): the conditional header update, then the rows it numbers.
        rows_from = (
            "FROM h, unnest(CAST(:ids AS TEXT[]), CAST(:toks AS BIGINT[]), "
            "CAST(:costs AS DOUBLE PRECISION[]), CAST(:datas AS TEXT[])) "
            "WITH ORDINALITY AS b(turn_id, tokens_used, cost, data, ord)"
        )
        insert_rows = (
            f"INSERT INTO {t} (session_id, seq, live, turn_id, tokens_used, cost, data) "
            f"SELECT h.session_id, h.last_seq - :n + b.ord, 1, b.turn_id, b.tokens_used, "
            f"b.cost, b.data {rows_from}"
        )
        self.append_one = (
            f"WITH h AS (UPDATE {s} SET {appended(delta)} {append_where} RETURNING {h}), "
            f"ins AS ({insert_rows}) SELECT * FROM h"
        )
        self.append_one_patch = (
            f"WITH h AS (UPDATE {s} SET {patch_set}, {appended(delta)} {append_where} "
            f"RETURNING {h}), "
            f"ins AS ({insert_rows}) SELECT * FROM h"
        )
        self.update = (
            f"UPDATE {s} SET {patch_set}, updated_at = {later_now}, "
            f"expires_at = {later_expiry} "
            f"WHERE {target} AND status IN {_LIVE} AND {_NOT_DUE} RETURNING {h}"
        )
        self.set_counters = (
            f"UPDATE {s} SET turn_count = :count, total_tokens = :tokens, "
            f"total_cost = :cost, updated_at = {later_now}, expires_at = {later_expiry} "
            "WHERE session_id = :sid"
        )
        self.set_status = (
            f"UPDATE {s} SET status = :status, updated_at = {later_now}, "
            f"expires_at = {later_expiry} WHERE session_id = :sid RETURNING {h}"
        )
        self.restore_header = (
            f"UPDATE {s} SET status = 'active', metadata = :metadata, "
            "active_tools = :active_tools, active_skills = :active_skills, "
            "system_prompt = :system_prompt, variables = :variables, "
            "checkpoint_id = :checkpoint_id, total_tokens = :total_tokens, "
            "total_cost = :total_cost, turn_count = :turn_count, "
            f"updated_at = {later_now}, expires_at = {later_expiry} WHERE session_id = :sid"
        )
        self.set_checkpoint = f"UPDATE {s} SET checkpoint_id = :cp WHERE session_id = :sid"
        self.move_checkpoint = (
            f"UPDATE {s} SET checkpoint_id = :parent "
            "WHERE session_id = :sid AND checkpoint_id = :cp"
        )
        self.delete_session = f"DELETE FROM {s} WHERE session_id = :sid"
        # -------------------------------------------------------------- users
        # SQLite has no statistics on a new file: name the (partial) index it should use.
        live_ix = f" INDEXED BY {prefix}sessions_user_live_ix" if dialect == "sqlite" else ""
        self.count_live = (
            f"SELECT COUNT(*) FROM {s}{live_ix} WHERE user_id = :uid AND status IN {_LIVE} "
            f"AND {_NOT_DUE}"
        )
        self.user_lock = "SELECT pg_advisory_xact_lock(hashtext(:key))"
        self.user_all = f"SELECT {h} FROM {s} WHERE user_id = :uid ORDER BY ordinal"
        self.page = (
            f"SELECT {h} FROM {s} WHERE user_id = :uid AND ordinal < :below "
            "ORDER BY ordinal DESC LIMIT :lim"
        )
        self.page_active = (
            f"SELECT {h} FROM {s} WHERE user_id = :uid AND ordinal < :below "
            f"AND status = 'active' AND {_NOT_DUE} ORDER BY ordinal DESC LIMIT :lim"
        )
        self.page_suspended = (
            f"SELECT {h} FROM {s} WHERE user_id = :uid AND ordinal < :below "
            f"AND status = 'suspended' AND {_NOT_DUE} ORDER BY ordinal DESC LIMIT :lim"
        )
        self.page_closed = (
            f"SELECT {h} FROM {s} WHERE user_id = :uid AND ordinal < :below "
            "AND status = 'closed' ORDER BY ordinal DESC LIMIT :lim"
        )
        self.page_expired = (
            f"SELECT {h} FROM {s} WHERE user_id = :uid AND ordinal < :below "
            f"AND (status = 'expired' OR (status IN {_LIVE} AND expires_at <= :now)) "
            "ORDER BY ordinal DESC LIMIT :lim"
        )
        # ----------------------------------------------------------- branches
        self.branches = f"SELECT {h} FROM {s} WHERE parent_session_id = :sid ORDER BY ordinal"
        self.count_branches = f"SELECT COUNT(*) FROM {s} WHERE parent_session_id = :sid"
        # ------------------------------------------------------------ sweeping
        self.find_expired = (
            f"SELECT session_id FROM {s} WHERE status IN {_LIVE} AND expires_at <= :now "
            "ORDER BY expires_at LIMIT :lim"
        )
        self.mark_expired = (
            f"UPDATE {s} SET status = 'expired', expires_at = NULL WHERE session_id = :sid "
            f"AND status IN {_LIVE} AND expires_at <= :now RETURNING {h}"
        )
        # A record that cannot be decoded leaves every index of the sweeper (and the
        # per-user count): its status gets a ``quarantined:`` prefix, kept for an operator.
        self.quarantine = (
            f"UPDATE {s} SET status = 'quarantined:' || status, expires_at = NULL "
            f"WHERE session_id = :sid AND status IN ('active', 'suspended', 'closed', 'expired')"
        )
        self.find_purgeable = (
            f"SELECT session_id FROM {s} WHERE status IN {_ENDED} AND updated_at < :older "
            "ORDER BY updated_at LIMIT :lim"
        )
        # Batches (one statement each): the ids come as one parameter, a JSON array
        # on SQLite and a text[] on PostgreSQL, where rows another transaction holds
        # are skipped (a second sweeper or a writer has them; a later batch retries).
        in_ids = (
            "= ANY(CAST(:ids AS TEXT[]))"
            if dialect == "postgresql"
            else "IN (SELECT value FROM json_each(:ids))"
        )
        skip = " FOR UPDATE SKIP LOCKED" if dialect == "postgresql" else ""
        due = f"status IN {_LIVE} AND expires_at <= :now"
        self.mark_expired_batch = (
            f"UPDATE {s} SET status = 'expired', expires_at = NULL WHERE session_id IN "
            f"(SELECT session_id FROM {s} WHERE session_id {in_ids} AND {due}{skip}) "
            f"AND {due} RETURNING {h}"
        )
        self.purge_pick = (
            f"SELECT session_id FROM {s} WHERE session_id {in_ids} AND status IN {_ENDED}"
            f"{skip}"
        )
        self.delete_turns_batch = f"DELETE FROM {t} WHERE session_id {in_ids}"
        self.cp_delete_batch = f"DELETE FROM {c} WHERE session_id {in_ids}"
        self.delete_sessions_batch = f"DELETE FROM {s} WHERE session_id {in_ids}"
        ids_rows = (
            "SELECT unnest(CAST(:ids AS TEXT[])), CAST(:until AS BIGINT)"
            if dialect == "postgresql"
            else "SELECT value, :until FROM json_each(:ids) WHERE true"
        )
        self.put_tombstones = (
            f"INSERT INTO {tb} (session_id, until_at) {ids_rows} "
            "ON CONFLICT (session_id) DO UPDATE SET until_at = excluded.until_at"
        )
        self.tombstone = f"SELECT until_at FROM {tb} WHERE session_id = :sid"
        self.drop_tombstone = f"DELETE FROM {tb} WHERE session_id = :sid"
        self.put_tombstone = (
            f"INSERT INTO {tb} (session_id, until_at) VALUES (:sid, :until) "
            "ON CONFLICT (session_id) DO UPDATE SET until_at = excluded.until_at"
        )
        # --------------------------------------------------------------- turns
        self.insert_turn = (
            f"INSERT INTO {t} (session_id, seq, live, {cols}) VALUES "
            f"(:session_id, :seq, 1, {', '.join(':' + c_ for c_ in TURN_COLUMNS)})"
        )
        self.live_turns = f"SELECT {tc} FROM {t} WHERE session_id = :sid AND live = 1 ORDER BY seq"
        self.live_data = (
            f"SELECT data FROM {t} WHERE session_id = :sid AND live = 1 ORDER BY seq"
        )
        self.last_turns = (
            f"SELECT {tc} FROM {t} WHERE session_id = :sid AND live = 1 "
            "ORDER BY seq DESC LIMIT :lim"
        )
        self.last_turn_ids = (
            f"SELECT seq, turn_id, data FROM {t} WHERE session_id = :sid AND live = 1 "
            "ORDER BY seq DESC LIMIT :lim"
        )
        self.turns_after = (
            f"SELECT {tc} FROM {t} WHERE session_id = :sid AND live = 1 AND seq > :after "
            "ORDER BY seq LIMIT :lim"
        )
        self.turns_range = (
            f"SELECT {tc} FROM {t} WHERE session_id = :sid AND seq BETWEEN :first AND :last "
            "ORDER BY seq"
        )
        self.live_ranges = (
            "SELECT MIN(seq), MAX(seq) FROM (SELECT seq, seq - ROW_NUMBER() OVER "
            f"(ORDER BY seq) AS grp FROM {t} WHERE session_id = :sid AND live = 1) AS g "
            "GROUP BY grp ORDER BY 1"
        )
        self.live_has_id = (
            f"SELECT 1 FROM {t} WHERE session_id = :sid AND live = 1 AND turn_id = :tid"
        )
        self.live_costs = (
            f"SELECT tokens_used, cost FROM {t} WHERE session_id = :sid AND live = 1 "
            "ORDER BY seq"
        )
        self.unlive_one = f"UPDATE {t} SET live = 0 WHERE session_id = :sid AND seq = :seq"
        self.unlive_all = f"UPDATE {t} SET live = 0 WHERE session_id = :sid AND live = 1"
        # Restore touches only the rows whose liveness changes.
        self.live_range = (
            f"UPDATE {t} SET live = 1 WHERE session_id = :sid AND seq BETWEEN :first AND :last "
            "AND live = 0"
        )
        self.unlive_range = (
            f"UPDATE {t} SET live = 0 WHERE session_id = :sid AND seq BETWEEN :first AND :last "
            "AND live = 1"
        )
        # The first and last live seq, each one probe of the partial live index.
        self.live_bounds = (
            f"SELECT (SELECT seq FROM {t} WHERE session_id = :sid AND live = 1 "
            "ORDER BY seq LIMIT 1), "
            f"(SELECT seq FROM {t} WHERE session_id = :sid AND live = 1 "
            "ORDER BY seq DESC LIMIT 1)"
        )
        self.dead_seqs = f"SELECT seq FROM {t} WHERE session_id = :sid AND live = 0 ORDER BY seq"
        self.delete_dead = (
            f"DELETE FROM {t} WHERE session_id = :sid AND live = 0 "
            "AND seq BETWEEN :first AND :last"
        )
        self.delete_turns = f"DELETE FROM {t} WHERE session_id = :sid"
        self.copy_live = (
            f"INSERT INTO {t} (session_id, seq, live, {cols}) "
            f"SELECT :new, :offset + ROW_NUMBER() OVER (ORDER BY seq), 1, "
            f"{cols} FROM {t} WHERE session_id = :src AND live = 1"
        )
        self.copy_range = (
            f"INSERT INTO {t} (session_id, seq, live, {cols}) "
            f"SELECT :new, :offset + ROW_NUMBER() OVER (ORDER BY seq), 1, "
            f"{cols} FROM {t} WHERE session_id = :src "
            "AND seq BETWEEN :first AND :last"
        )
        # --------------------------------------------------------- checkpoints
        self.cp_get = (
            "SELECT checkpoint_id, session_id, created_at, parent_checkpoint_id, metadata, "
            f"header, ranges, inline_turns FROM {c} WHERE checkpoint_id = :cp"
        )
        self.cp_list = (
            "SELECT checkpoint_id, session_id, created_at, parent_checkpoint_id, metadata, "
            f"header, ranges, inline_turns FROM {c} WHERE session_id = :sid "
            "ORDER BY created_at, ordinal"
        )
        self.cp_exists = f"SELECT 1 FROM {c} WHERE checkpoint_id = :cp"
        self.cp_ids = (
            f"SELECT checkpoint_id FROM {c} WHERE session_id = :sid ORDER BY created_at, ordinal"
        )
        self.cp_ranges = (
            f"SELECT ranges FROM {c} WHERE session_id = :sid AND ranges IS NOT NULL"
        )
        self.cp_insert = (
            f"INSERT INTO {c} (checkpoint_id, session_id, created_at, parent_checkpoint_id, "
            "metadata, header, ranges, inline_turns) VALUES (:cp, :sid, :created, :parent, "
            "CAST(:metadata AS TEXT), CAST(:header AS TEXT), CAST(:ranges AS TEXT), "
            "CAST(:inline AS TEXT))"
        )
        self.cp_upsert = (
            f"INSERT INTO {c} (checkpoint_id, session_id, created_at, parent_checkpoint_id, "
            "metadata, header, ranges, inline_turns) VALUES (:cp, :sid, :created, :parent, "
            "CAST(:metadata AS TEXT), CAST(:header AS TEXT), CAST(:ranges AS TEXT), "
            "CAST(:inline AS TEXT)) "
            "ON CONFLICT (checkpoint_id) DO UPDATE SET session_id = excluded.session_id, "
            "created_at = excluded.created_at, "
            "parent_checkpoint_id = excluded.parent_checkpoint_id, "
            "metadata = excluded.metadata, header = excluded.header, "
            "ranges = excluded.ranges, inline_turns = excluded.inline_turns"
        )
        self.cp_delete = (
            f"DELETE FROM {c} WHERE checkpoint_id = :cp "
            "RETURNING session_id, parent_checkpoint_id"
        )
        self.cp_delete_session = f"DELETE FROM {c} WHERE session_id = :sid"
        self.ping = "SELECT 1"

    @property
    def is_postgres(self) -> bool:
        """True when the statements are for PostgreSQL."""
        return self.dialect == "postgresql"
