"""Key envelopes in the SQL tables: ``sessions.metadata`` and ``checkpoints.header``."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection

from lexigram.ai.session.stores.encrypted.envelopes import (
    Found,
    checkpoint_envelope,
    key_pattern,
    metadata_envelope,
    names_key,
)

__all__ = ["SqlEnvelopes"]


def _like(value: str) -> str:
    return "%" + value.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"


class SqlEnvelopes:
    """Envelopes of a ``DatabaseSessionStore`` (SQLite, PostgreSQL, MariaDB)."""

    def __init__(self, store: Any) -> None:
        self.engine = store.engine
        self.sessions = f"{store.table_prefix}sessions"
        self.checkpoints = f"{store.table_prefix}checkpoints"
        self.scope = f"sql:{store.engine.url.render_as_string(hide_password=True)}:{self.sessions}"

    async def scan(self, cursor: str | None, limit: int) -> tuple[Found, str | None]:
        """Sessions in id order after ``cursor`` (the last id of the previous batch)."""
        after = "WHERE session_id > :after " if cursor else ""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        f"SELECT session_id, metadata FROM {self.sessions} {after}"
                        "ORDER BY session_id LIMIT :n"
                    ),
                    {"after": cursor, "n": limit} if cursor else {"n": limit},
                )
            ).all()
            if not rows:
                return [], None
            ids = [row[0] for row in rows]
            found: dict[str, set[str]] = {sid: metadata_envelope(meta) for sid, meta in rows}
            query = text(
                f"SELECT session_id, header FROM {self.checkpoints} WHERE session_id IN :ids"
            ).bindparams(bindparam("ids", expanding=True))
            for sid, header in (await conn.execute(query, {"ids": ids})).all():
                found[sid] |= checkpoint_envelope(header, "metadata")
        next_cursor = ids[-1] if len(rows) == limit else None
        return [(sid, found[sid]) for sid in ids], next_cursor

    async def replace(self, changes: Mapping[str, Mapping[str, str]]) -> None:
        """One transaction per session: header and checkpoint envelopes swapped."""
        for session_id, swaps in changes.items():
            if not swaps:
                continue
            params = [{"sid": session_id, "old": old, "new": new} for old, new in swaps.items()]
            if self.engine.dialect.name in ("mysql", "mariadb"):
                await self._replace_mysql(params)
            else:
                async with self.engine.begin() as conn:
                    await self._swap(conn, params)

    async def _replace_mysql(self, params: list[dict[str, str]]) -> None:
        """The swaps in one explicit transaction: the MariaDB engine runs in autocommit
        mode (its store opens its own transactions), where ``engine.begin()`` committed
        each UPDATE alone (a failure between them left the header and the checkpoints
        under different keys)."""
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("START TRANSACTION")
            try:
                await self._swap(conn, params)
                await conn.exec_driver_sql("COMMIT")
            except BaseException:
                # Closing the connection rolls the transaction back on the server, even
                # when a ROLLBACK could not be sent (cancelled, connection lost).
                with contextlib.suppress(Exception):
                    await conn.invalidate()
                raise

    async def _swap(self, conn: AsyncConnection, params: list[dict[str, str]]) -> None:
        await conn.execute(
            text(
                f"UPDATE {self.sessions} SET metadata = REPLACE(metadata, :old, :new) "
                "WHERE session_id = :sid"
            ),
            params,
        )
        await conn.execute(
            text(
                f"UPDATE {self.checkpoints} SET header = REPLACE(header, :old, :new) "
                "WHERE session_id = :sid"
            ),
            params,
        )

    async def count(self, key_id: str) -> int:
        """Headers plus checkpoints whose stored text names ``key_id``."""
        pattern = _like(key_pattern(key_id))
        total = 0
        async with self.engine.connect() as conn:
            for table, column, path in (
                (self.sessions, "metadata", ()),
                (self.checkpoints, "header", ("metadata",)),
            ):
                # The LIKE finds candidates; only an envelope where the store puts one
                # counts (a caller's value shaped like one elsewhere is not a key's).
                result = await conn.execute(
                    text(f"SELECT {column} FROM {table} WHERE {column} LIKE :p ESCAPE '!'"),
                    {"p": pattern},
                )
                for (value,) in result:
                    total += names_key(checkpoint_envelope(value, *path), key_id)
        return total
