"""The URL rules of :class:`~lexigram.ai.session.config.SessionConfig`.

``database_url`` and ``redis_url`` are checked here, without importing a store or
a driver; each problem is returned as text that shows the URL redacted
(:func:`~lexigram.ai.session.redaction.redact_url`), never with its password.
"""

from __future__ import annotations

from urllib.parse import SplitResult, parse_qs, urlsplit

from lexigram.ai.session.redaction import redact_text, redact_url

__all__ = [
    "CLUSTER_PREFIX_BRACES",
    "REDIS_SCHEMES",
    "SQL_SCHEMES",
    "database_url_problem",
    "redis_db",
    "redis_url_problem",
    "sqlite_database",
]

#: Schemes ``database_url`` accepts; the SQL store maps each to its async driver.
SQL_SCHEMES = (
    "sqlite",
    "sqlite+aiosqlite",
    "sqlite+pysqlite",
    "postgresql",
    "postgres",
    "postgresql+asyncpg",
    "postgres+asyncpg",
    "postgresql+psycopg2",
    "mysql",
    "mysql+asyncmy",
    "mysql+aiomysql",
    "mysql+pymysql",
    "mariadb",
    "mariadb+asyncmy",
    "mariadb+aiomysql",
    "mariadb+pymysql",
)
#: Schemes ``redis_url`` accepts.
REDIS_SCHEMES = ("redis", "rediss", "unix")


def _split(url: str) -> tuple[SplitResult | None, str | None]:
    """``urlsplit(url)`` with its port checked, or the (redacted) reason it fails."""
    reason: str | None = None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        reason = redact_text(str(exc), [url])
    if reason is not None:
        return None, f"malformed URL {redact_url(url)}: {reason}"
    return parts, None


def sqlite_database(url: str) -> str | None:
    """The database of a ``sqlite…:///<database>`` URL (query left out); None otherwise.

    ``""`` when the URL names none, ``":memory:"`` for an in-memory database.
    """
    scheme, sep, rest = url.partition(":///")
    if not sep or not scheme.startswith("sqlite") or "/" in scheme:
        return None
    return rest.split("?", 1)[0]


def database_url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as a ``database_url``, or None."""
    parts, problem = _split(url)
    if parts is None:
        return problem
    shown = redact_url(url)
    if parts.scheme not in SQL_SCHEMES:
        return (
            f"unsupported scheme {parts.scheme!r} in {shown}; use "
            "sqlite+aiosqlite:///<file>, postgresql://user@host/db or "
            "mysql+asyncmy://user@host/db"
        )
    if parts.scheme.startswith("sqlite"):
        path = sqlite_database(url)
        if path is None:
            return f"malformed URL {shown}: expected {parts.scheme}:///<path>"
        if not path:
            return (
                f"no database file in {shown}: expected {parts.scheme}:///<path> "
                f"({parts.scheme}:///:memory: for a throwaway in-memory database)"
            )
        if path.endswith("/"):
            return f"{shown} names a directory, not a database file"
        return None
    if not parts.hostname and "host" not in parse_qs(parts.query):
        return f"no host in {shown}"
    if parts.scheme.startswith(("mysql", "mariadb")) and not parts.path.strip("/"):
        return f"no database in {shown}"
    return None


def redis_db(url: str) -> int | str:
    """The db number ``url`` selects (0 when it names none), or why it is not one."""
    parts, problem = _split(url)
    if parts is None:
        return problem or "malformed URL"
    values = parse_qs(parts.query).get("db", [])
    if parts.scheme != "unix":
        path = parts.path.strip("/")
        if path:
            values = [path, *values]
    db = 0
    for raw in values:
        if not raw.isdecimal():
            return f"db {raw!r} in {redact_url(url)} is not a database number (0..15 by default)"
        db = int(raw)
    if len({int(v) for v in values}) > 1:
        # redis-py takes the query's and ignores the path's, without a word.
        return f"{redact_url(url)} selects db {' and '.join(values)}; give it once"
    return db


#: Why a key prefix with braces is refused on Redis Cluster (config and store alike).
CLUSTER_PREFIX_BRACES = (
    "must not contain '{' or '}' with Redis Cluster: the keys of each session share a "
    "slot through their own hash tag, which a brace in the prefix replaces ('{}' "
    "spreads one session over several slots; '{x}' puts every session in one)"
)


def redis_url_problem(url: str, *, cluster: bool) -> tuple[tuple[str, ...], str] | None:
    """``(fields, problem)`` for a bad ``redis_url`` (with ``redis_cluster``), or None."""
    parts, problem = _split(url)
    if parts is None:
        return ("redis_url",), problem or "malformed URL"
    shown = redact_url(url)
    if parts.scheme not in REDIS_SCHEMES:
        problem = f"unsupported scheme {parts.scheme!r} in {shown}; use redis://host:port/db"
        return ("redis_url",), problem
    if parts.scheme != "unix" and not parts.hostname:
        return ("redis_url",), f"no host in {shown}"
    db = redis_db(url)
    if isinstance(db, str):
        return ("redis_url",), db
    if cluster and db != 0:
        return (
            ("redis_url", "redis_cluster"),
            f"Redis Cluster has only db 0, but {shown} selects db {db}",
        )
    return None
