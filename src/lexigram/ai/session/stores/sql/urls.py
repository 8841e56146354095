"""Database URLs: normalise what users write to the async drivers, and mask passwords."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from lexigram.ai.session.config_urls import sql_query_problem
from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.redaction import redact_text, redact_url

__all__ = ["DatabaseURL", "mask_url", "normalise_url"]

_SQLITE = "sqlite+aiosqlite"
_POSTGRES = "postgresql+asyncpg"
_MYSQL = "mysql+asyncmy"
_ALIASES = {
    "sqlite": _SQLITE,
    "sqlite+aiosqlite": _SQLITE,
    "sqlite+pysqlite": _SQLITE,
    "postgresql": _POSTGRES,
    "postgres": _POSTGRES,
    "postgresql+asyncpg": _POSTGRES,
    "postgresql+psycopg2": _POSTGRES,
    "postgres+asyncpg": _POSTGRES,
    "mysql": _MYSQL,
    "mysql+asyncmy": _MYSQL,
    "mysql+aiomysql": _MYSQL,
    "mysql+pymysql": _MYSQL,
    "mariadb": _MYSQL,
    "mariadb+asyncmy": _MYSQL,
    "mariadb+aiomysql": _MYSQL,
    "mariadb+pymysql": _MYSQL,
}


@dataclass(frozen=True, slots=True)
class DatabaseURL:
    """A parsed, normalised database URL."""

    url: URL
    """The SQLAlchemy URL with the async driver (``sqlite+aiosqlite``,
    ``postgresql+asyncpg`` or ``mysql+asyncmy``)."""

    @property
    def is_sqlite(self) -> bool:
        """True for SQLite, False for PostgreSQL."""
        return self.url.get_backend_name() == "sqlite"

    @property
    def is_mysql(self) -> bool:
        """True for MariaDB (``mysql+asyncmy``)."""
        return self.url.get_backend_name() == "mysql"

    @property
    def is_memory(self) -> bool:
        """True for an in-memory SQLite database (gone with the last connection)."""
        database = self.url.database or ""
        return self.is_sqlite and database in ("", ":memory:")

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file, or None (PostgreSQL, in-memory)."""
        if not self.is_sqlite or self.is_memory:
            return None
        database = self.url.database or ""
        if database.startswith("file:"):
            return None
        return Path(database)

    @property
    def masked(self) -> str:
        """The URL with its secrets replaced by ``***`` (for messages and logs): the
        password, and ``password=`` / ``token=`` query parameters."""
        return redact_url(self.url.render_as_string(hide_password=True))

    def render(self) -> str:
        """The URL in full (password included), for the engine."""
        return self.url.render_as_string(hide_password=False)


def normalise_url(url: str | URL, *, field: str = "database_url") -> DatabaseURL:
    """Parse ``url`` and switch it to the async driver.

    ``sqlite:///path`` becomes ``sqlite+aiosqlite:///path``; ``postgresql://``,
    ``postgres://`` (and ``+psycopg2``) become ``postgresql+asyncpg://``; ``mysql://``,
    ``mariadb://`` (and ``+aiomysql``, ``+pymysql``) become ``mysql+asyncmy://`` with
    ``charset=utf8mb4``. A PostgreSQL ``sslmode`` (libpq's name) becomes asyncpg's
    ``ssl``; a query parameter the driver does not take is refused
    (``config_urls.sql_query_problem``). Anything else is refused with
    :class:`SessionValidationError` naming ``field``.
    """
    if isinstance(url, str):
        if not url.strip():
            raise SessionValidationError(field, "must be a non-empty database URL")
        problem = ""
        try:
            parsed = make_url(url.strip())
        except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
            problem = redact_text(str(exc), [url, url.strip()])
        if problem:
            # Raised outside the handler: the parser's error is not chained to it.
            raise SessionValidationError(
                field, f"malformed database URL {redact_url(url)}: {problem}"
            )
    elif isinstance(url, URL):
        parsed = url
    else:
        raise SessionValidationError(field, f"expected a URL string, got {type(url).__name__}")
    scheme = parsed.drivername
    target = _ALIASES.get(scheme)
    if target is None:
        raise SessionValidationError(
            field,
            f"unsupported database URL scheme {scheme!r} in {mask_url(parsed)}; use "
            "sqlite+aiosqlite:///<file>, postgresql+asyncpg://user@host/db or "
            "mysql+asyncmy://user@host/db",
        )
    if target != _SQLITE and isinstance(url, str):  # an engine's URL is its maker's business
        query_problem = sql_query_problem(target, urlencode(_query_pairs(parsed)))
        if query_problem is not None:
            raise SessionValidationError(field, f"{query_problem} (in {mask_url(parsed)})")
    parsed = parsed.set(drivername=target)
    if target == _POSTGRES and "sslmode" in parsed.query:
        # libpq's name (hosted PostgreSQL URLs carry sslmode=require): asyncpg's
        # connect() takes the same values as ``ssl``.
        mode = parsed.query["sslmode"]
        parsed = parsed.difference_update_query(["sslmode"]).update_query_dict({"ssl": mode})
    if target == _POSTGRES and not parsed.host and not parsed.query.get("host"):
        raise SessionValidationError(field, f"no host in {mask_url(parsed)}")
    if target == _MYSQL:
        if not parsed.host and not parsed.query.get("unix_socket"):
            raise SessionValidationError(field, f"no host in {mask_url(parsed)}")
        if not parsed.database:
            raise SessionValidationError(field, f"no database in {mask_url(parsed)}")
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return DatabaseURL(parsed)


def _query_pairs(url: URL) -> list[tuple[str, str]]:
    """The query of ``url`` as (name, value) pairs, a repeated name once per value."""
    pairs: list[tuple[str, str]] = []
    for name, value in url.query.items():
        values = (value,) if isinstance(value, str) else value
        pairs.extend((name, item) for item in values)
    return pairs


def mask_url(url: str | URL) -> str:
    """``url`` with its secrets hidden (also a string that does not parse)."""
    if isinstance(url, URL):
        return redact_url(url.render_as_string(hide_password=True))
    try:
        return redact_url(make_url(url).render_as_string(hide_password=True))
    except (ArgumentError, ValueError):
        return redact_url(url)
