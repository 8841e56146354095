"""MariaDB for ``benchmarks/scale.py``: the raw driver side (asyncmy alone).

* read: one ``SELECT data … ORDER BY id DESC LIMIT 20`` + ``orjson.loads`` of each row;
* write: the fewest round trips a transaction takes without multi-statements: one
  ``INSERT`` of both rows, one ``UPDATE`` of the counters, ``COMMIT`` (the connection is
  not in autocommit mode, so the ``INSERT`` opens the transaction).

The URL is ``BENCH_MARIADB_URL`` (default ``mysql+asyncmy://root@127.0.0.1:3306/test``).
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

MARIADB_URL = os.environ.get("BENCH_MARIADB_URL", "mysql+asyncmy://root@127.0.0.1:3306/test")

__all__ = ["MARIADB_URL", "RawMariadb", "mariadb_raw_counts", "mariadb_raw_seed"]


def _connect_args() -> dict[str, Any]:
    from lexigram.ai.session.stores.sql.urls import normalise_url

    url = normalise_url(MARIADB_URL).url
    return {
        "host": url.host or "127.0.0.1",
        "port": url.port or 3306,
        "user": url.username or "root",
        "password": url.password or "",
        "db": url.database,
        "charset": "utf8mb4",
    }


class RawMariadb:
    """asyncmy: the read as one SELECT, the write as INSERT (2 rows) + UPDATE + COMMIT."""

    def __init__(self, pool: Any, prefix: str, last: int, texts: tuple[str, str]) -> None:
        self._pool = pool
        self._texts = texts
        self._read_sql = (
            f"SELECT data FROM {prefix}turns WHERE session_key = %s ORDER BY id DESC LIMIT {last}"
        )
        self._insert_sql = (
            f"INSERT INTO {prefix}turns (session_key, data) VALUES (%s, %s), (%s, %s)"
        )
        self._update_sql = (
            f"UPDATE {prefix}sessions SET turn_count = turn_count + 2, "
            "total_tokens = total_tokens + %s, updated_at = %s WHERE session_key = %s"
        )

    @classmethod
    async def open(cls, spec: Any) -> RawMariadb:
        """A pool of ``spec.pool_size`` connections (autocommit off)."""
        import asyncmy
        from scale import ASSISTANT_TEXT, LAST, USER_TEXT

        pool = await asyncmy.create_pool(
            minsize=1, maxsize=spec.pool_size, autocommit=False, **_connect_args()
        )
        return cls(pool, spec.prefix + "raw_", LAST, (USER_TEXT, ASSISTANT_TEXT))

    async def exchange(self, sid: str, n: int, tag: str) -> int:
        """One SELECT; INSERT, UPDATE, COMMIT."""
        from scale import _turn_dict

        user, assistant = self._texts
        async with self._pool.acquire() as conn:
            async with conn.cursor() as cur:
                await cur.execute(self._read_sql, (sid,))
                rows = await cur.fetchall()
            await conn.commit()  # end the read's snapshot
            recent = [orjson.loads(r[0]) for r in reversed(rows)]
            now = time.time()
            said = orjson.dumps(_turn_dict(f"{tag}u{n}", "user", user, now)).decode()
            answer = orjson.dumps(_turn_dict(f"{tag}a{n}", "assistant", assistant, now)).decode()
            async with conn.cursor() as cur:
                await cur.execute(
                    self._insert_sql,
                    (sid, said, sid, answer),
                )
                await cur.execute(self._update_sql, (152, int(now * 1e6), sid))
            await conn.commit()
        return len(recent)

    async def close(self) -> None:
        """Close the pool."""
        self._pool.close()
        await self._pool.wait_closed()


async def mariadb_raw_seed(spec: Any) -> None:
    """The raw tables under ``<prefix>raw_`` with ``spec.history`` turns per session."""
    import asyncmy
    from scale import _history_payloads

    p = spec.prefix + "raw_"
    conn = await asyncmy.connect(autocommit=True, **_connect_args())
    async with conn.cursor() as cur:
        await cur.execute(
            f"CREATE TABLE {p}turns (id BIGINT AUTO_INCREMENT PRIMARY KEY, session_key "
            "VARCHAR(255) NOT NULL, data LONGTEXT NOT NULL, KEY (session_key, id)) "
            "CHARACTER SET utf8mb4"
        )
        await cur.execute(
            f"CREATE TABLE {p}sessions (session_key VARCHAR(255) PRIMARY KEY, turn_count "
            "BIGINT, total_tokens BIGINT, updated_at BIGINT) CHARACTER SET utf8mb4"
        )
        payloads = [x.decode() for x in _history_payloads(spec.history)]
        for sid in spec.sessions:
            await cur.execute(
                f"INSERT INTO {p}sessions VALUES (%s, %s, 0, 0)", (sid, spec.history)
            )
            await cur.executemany(
                f"INSERT INTO {p}turns (session_key, data) VALUES (%s, %s)",
                [(sid, x) for x in payloads],
            )
    conn.close()


async def mariadb_raw_counts(spec: Any) -> list[tuple[str, int, int]]:
    """(session, turn_count, rows stored) of every raw session; the raw tables dropped."""
    import asyncmy

    p = spec.prefix + "raw_"
    conn = await asyncmy.connect(autocommit=True, **_connect_args())
    async with conn.cursor() as cur:
        await cur.execute(
            f"SELECT s.session_key, s.turn_count, (SELECT count(*) FROM {p}turns t"
            f" WHERE t.session_key = s.session_key) FROM {p}sessions s"
        )
        rows = await cur.fetchall()
        await cur.execute(f"DROP TABLE IF EXISTS {p}turns, {p}sessions")
    conn.close()
    return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]
