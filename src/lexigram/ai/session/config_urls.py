"""The URL rules of :class:`~lexigram.ai.session.config.SessionConfig`.

``database_url`` and ``redis_url`` are checked here, without importing a store or
a driver; each problem is returned as text that shows the URL redacted
(:func:`~lexigram.ai.session.redaction.redact_url`), never with its password.
"""

from __future__ import annotations

import math
import re
import ssl
from types import ModuleType
from urllib.parse import SplitResult, parse_qs, parse_qsl, urlsplit

from lexigram.ai.session.redaction import redact_text, redact_url

__all__ = [
    "CLUSTER_PREFIX_BRACES",
    "REDIS_SCHEMES",
    "SQL_SCHEMES",
    "database_url_problem",
    "redis_db",
    "redis_query_problem",
    "redis_url_problem",
    "sql_query_problem",
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
    query = sql_query_problem(parts.scheme, parts.query)
    if query is not None:
        return f"{query} (in {shown})"
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
    query = redis_query_problem(parts, cluster=cluster)
    if query is not None:
        return ("redis_url",), f"{query} (in {shown})"
    return None


# ------------------------------------------------------------- Redis URL queries
# redis-py hands every query parameter of the URL to its connection class as a keyword
# (``redis.asyncio.connection.parse_url``), typed by ``URL_QUERY_ARGUMENT_PARSERS``
# or else as text. A name the class does not take failed at boot with a bare
# TypeError; some it takes change what the store reads back. These lists say which
# the store accepts (tests/config/test_limits_and_url_queries.py checks them against
# the installed redis-py).

_FLOAT = "a number of seconds"
_INT = "a whole number"
_BOOL = "true or false"
#: Accepted on every Redis URL: name -> the kind of value.
REDIS_QUERY_COMMON: dict[str, str] = {
    "db": _INT,
    "socket_timeout": _FLOAT,
    "socket_connect_timeout": _FLOAT,
    "socket_read_size": "a whole number above 0",
    "retry_on_error": "a comma-separated list of redis exception names",
    "health_check_interval": _INT,
    "client_name": "a name without spaces (printable ASCII)",
    "username": "a user name",
    "password": "a password",
    "protocol": "2",
}
#: Accepted on ``redis://`` and ``rediss://`` (a TCP connection).
REDIS_QUERY_TCP: dict[str, str] = {"socket_keepalive": _BOOL}
#: Accepted with one server (not with ``redis_cluster``, whose client does not take them).
REDIS_QUERY_SINGLE: dict[str, str] = {"retry_on_timeout": _BOOL}
#: Accepted on ``rediss://`` only (TLS).
REDIS_QUERY_TLS: dict[str, str] = {
    "ssl_cert_reqs": "none, optional or required",
    "ssl_check_hostname": _BOOL,
    "ssl_ca_certs": "a file",
    "ssl_ca_path": "a directory",
    "ssl_ca_data": "PEM text",
    "ssl_certfile": "a file",
    "ssl_keyfile": "a file",
    "ssl_password": "a password",
    "ssl_ciphers": "an OpenSSL cipher list",
    "ssl_min_version": "an ssl.TLSVersion value",
    "ssl_include_verify_flags": "a comma-separated list of ssl.VerifyFlags names",
    "ssl_exclude_verify_flags": "a comma-separated list of ssl.VerifyFlags names",
}
#: TLS options the Cluster client does not take.
REDIS_QUERY_TLS_SINGLE = ("ssl_ca_path", "ssl_password")
#: Refused whatever the URL, with the reason.
REDIS_QUERY_REFUSED: dict[str, str] = {
    "decode_responses": "the store reads replies as bytes; decoded replies break every read",
    "encoding": "the store encodes its keys and values as UTF-8 itself",
    "encoding_errors": "the store encodes its keys and values as UTF-8 itself",
    "legacy_responses": "it changes the types of the replies the store reads",
    "max_connections": "the pool size is ai_session.redis_pool_size (the URL's would "
    "override it behind the store's back)",
    "lib_name": "deprecated by redis-py (use client_name)",
    "lib_version": "deprecated by redis-py (use client_name)",
}
#: redis-py's ``to_bool`` reads these (any case) as false and any other text as true;
#: the store takes the true ones that mirror them, so a typo is not read as true.
_FALSE_WORDS = frozenset({"0", "f", "false", "n", "no", "off"})
_TRUE_WORDS = frozenset({"1", "t", "true", "y", "yes", "on"})
_CERT_REQS = frozenset({"none", "optional", "required"})
#: ``ssl.TLSVersion`` values (redis-py parses ``ssl_min_version`` with ``int``).
_TLS_VERSIONS = {int(v): v.name for v in ssl.TLSVersion}
#: ``ssl.VerifyFlags`` names (redis-py looks each name up on the class).
_VERIFY_FLAGS = frozenset(ssl.VerifyFlags.__members__)
#: Redis refuses a client name with a character outside ``!``..``~`` (a space, a newline).
_CLIENT_NAME = re.compile(r"[!-~]+")


def _redis_exception_names(value: str) -> str | None:
    """Why ``value`` is no list of redis exception names (as redis-py parses it), or None."""
    exceptions: ModuleType | None
    try:
        from redis import exceptions
    except ImportError:  # pragma: no cover - the redis extra is not installed
        exceptions = None
    for name in value.replace("[", "").replace("]", "").split(","):
        name = name.strip()
        if not name:
            return "a comma-separated list of redis exception names (an entry is empty)"
        if exceptions is not None:
            exc = getattr(exceptions, name, None)
            if not (isinstance(exc, type) and issubclass(exc, Exception)):
                return (
                    f"a comma-separated list of redis exception names ({name!r} is none; "
                    "e.g. ConnectionError,TimeoutError)"
                )
    return None


def _verify_flags(value: str) -> str | None:
    """Why ``value`` is no list of ``ssl.VerifyFlags`` names (as redis-py parses it)."""
    for flag in value.replace("[", "").replace("]", "").split(","):
        if flag.strip() not in _VERIFY_FLAGS:
            return "a comma-separated list of ssl.VerifyFlags names: " + ", ".join(
                sorted(_VERIFY_FLAGS)
            )
    return None


def _int_value(value: str) -> int | None:
    """``value`` as redis-py's ``int()`` reads it, or None."""
    try:
        return int(value)
    except ValueError:
        return None


def redis_query_names(scheme: str, *, cluster: bool) -> dict[str, str]:
    """The query parameters a ``scheme`` URL may carry (with or without ``redis_cluster``)."""
    names = dict(REDIS_QUERY_COMMON)
    if scheme in ("redis", "rediss"):
        names.update(REDIS_QUERY_TCP)
    if not cluster:
        names.update(REDIS_QUERY_SINGLE)
    if scheme == "rediss":
        names.update(REDIS_QUERY_TLS)
        if cluster:
            for name in REDIS_QUERY_TLS_SINGLE:
                del names[name]
    return names


def _redis_value_problem(name: str, kind: str, value: str) -> str | None:
    """What is wrong with ``value`` for the query parameter ``name`` of kind ``kind``."""
    problem: str | None = None
    if kind == _FLOAT:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number > 0):
            problem = "a number of seconds above 0"
    elif kind == _INT and name != "db":
        whole = _int_value(value)
        if whole is None or whole < 0:
            problem = "a whole number"
    elif name == "socket_read_size":
        whole = _int_value(value)
        if whole is None or whole <= 0:
            problem = "a whole number above 0"
    elif name == "ssl_min_version":
        if _int_value(value) not in _TLS_VERSIONS:
            problem = "an ssl.TLSVersion value: " + ", ".join(
                f"{v} ({n})" for v, n in _TLS_VERSIONS.items()
            )
    elif name == "client_name":
        if _CLIENT_NAME.fullmatch(value) is None:
            problem = (
                "a name without spaces, newlines or other special characters "
                "(Redis refuses them)"
            )
    elif name == "retry_on_error":
        problem = _redis_exception_names(value)
    elif name in ("ssl_include_verify_flags", "ssl_exclude_verify_flags"):
        problem = _verify_flags(value)
    elif kind == _BOOL:
        if value.lower() not in _TRUE_WORDS | _FALSE_WORDS:
            problem = "true or false"
    elif name == "protocol":
        if value.strip() != "2":
            problem = "2 (RESP2: RESP3 changes the types of the replies the store reads)"
    elif name == "ssl_cert_reqs":
        if value.lower() not in _CERT_REQS:
            problem = "none, optional or required"
    elif not value:
        problem = kind
    return None if problem is None else f"query parameter {name}={value!r} must be {problem}"


def redis_query_problem(parts: SplitResult, *, cluster: bool) -> str | None:
    """What is wrong with the query parameters of a Redis URL (already split), or None.

    A name redis-py does not take for this kind of URL, one that breaks the store
    (:data:`REDIS_QUERY_REFUSED`), a parameter given twice, or a value of the wrong kind.
    A blank value is accepted as redis-py takes it: dropped. Values of secrets
    (``password``, ``ssl_password``) are never shown.
    """
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False)
    except ValueError as exc:  # pragma: no cover - parse_qsl is lenient unless strict
        return f"malformed query: {exc}"
    allowed = redis_query_names(parts.scheme, cluster=cluster)
    seen: set[str] = set()
    for name, value in pairs:
        if name in REDIS_QUERY_REFUSED:
            return f"query parameter {name!r} is not accepted: {REDIS_QUERY_REFUSED[name]}"
        if name not in allowed:
            where = _redis_where(name, parts.scheme, cluster=cluster)
            return f"query parameter {name!r} is not accepted{where}; accepted: " + ", ".join(
                sorted(allowed)
            )
        if not value:
            continue  # redis-py drops a blank value (parse_qs): the name is not used
        if name in seen and name != "db":  # two db values are named by redis_db()
            return f"query parameter {name!r} is given twice"
        seen.add(name)
        if name in ("password", "ssl_password", "username"):
            value_problem = None  # any text (a secret's is never shown)
        else:
            value_problem = _redis_value_problem(name, allowed[name], value)
        if value_problem is not None:
            return value_problem
    return None


def _redis_where(name: str, scheme: str, *, cluster: bool) -> str:
    """Why ``name`` is refused on this URL when redis-py takes it elsewhere."""
    if name in REDIS_QUERY_TLS and scheme != "rediss":
        return f" on a {scheme}:// URL (TLS options need rediss://)"
    if name in REDIS_QUERY_TCP and scheme == "unix":
        return f" on a {scheme}:// URL (a Unix socket has no TCP keepalive)"
    if (name in REDIS_QUERY_SINGLE or name in REDIS_QUERY_TLS_SINGLE) and cluster:
        return " with redis_cluster (the Cluster client does not take it)"
    return ""


# --------------------------------------------------------------- SQL URL queries
# SQLAlchemy hands every query parameter of a PostgreSQL or MariaDB URL to the async
# driver as a keyword (asyncpg's ``connect()``, asyncmy's ``Connection``). A libpq or
# libmysqlclient name (``sslmode``, ``connect_timeout``, ``ssl_mode``) failed only when
# the store connected, as a TypeError reported like an unreachable server.

#: libpq's ``sslmode`` values, which asyncpg's ``ssl`` takes as they are.
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
#: asyncpg's ``target_session_attrs`` values.
_SESSION_ATTRS = ("any", "primary", "standby", "read-write", "read-only", "prefer-standby")
#: Accepted on a PostgreSQL URL: name -> what it must be (``sslmode`` becomes ``ssl``).
POSTGRES_QUERY: dict[str, str] = {
    "sslmode": "one of " + ", ".join(SSL_MODES),
    "ssl": "one of " + ", ".join(SSL_MODES),
    "host": "a host or a Unix socket directory",
    "user": "a user name",
    "password": "a password",
    "passfile": "a password file",
    "port": "a port number (1..65535), or one per host separated by commas",
    "target_session_attrs": "one of " + ", ".join(_SESSION_ATTRS),
    "command_timeout": "a number of seconds above 0",
    "prepared_statement_cache_size": "a whole number",
}
#: Refused on a PostgreSQL URL, with the reason.
POSTGRES_QUERY_REFUSED: dict[str, str] = {
    "connect_timeout": "the store connects with its own timeout (10 s)",
    "timeout": "the store connects with its own timeout (10 s)",
    "application_name": "the store names its connections lexigram-ai-session:<table_prefix>",
    "server_settings": "the store sets the connections' server settings",
    "options": "asyncpg takes no libpq options string",
    **{
        name: f"asyncpg reads it from the environment variable {env}, not from the URL"
        for name, env in (
            ("sslrootcert", "PGSSLROOTCERT"),
            ("sslcert", "PGSSLCERT"),
            ("sslkey", "PGSSLKEY"),
            ("sslcrl", "PGSSLCRL"),
            ("sslpassword", "PGSSLPASSWORD"),
        )
    },
}
#: Accepted on a MariaDB URL (SQLAlchemy turns the ``ssl_*`` ones into asyncmy's ``ssl``).
MYSQL_QUERY: dict[str, str] = {
    "charset": "utf8mb4 (utf8 and utf8mb3 are accepted: the store always uses utf8mb4)",
    "unix_socket": "a socket file",
    "user": "a user name",
    "password": "a password",
    "read_timeout": "a whole number of seconds above 0",
    "ssl_ca": "a file",
    "ssl_cert": "a file",
    "ssl_key": "a file",
    "ssl_capath": "a directory",
    "ssl_cipher": "an OpenSSL cipher list",
    "ssl_check_hostname": "true or false",
}
#: Refused on a MariaDB URL, with the reason.
MYSQL_QUERY_REFUSED: dict[str, str] = {
    "ssl_mode": "asyncmy has no ssl_mode: give ssl_ca (and ssl_cert, ssl_key, "
    "ssl_check_hostname=false as needed) to connect with TLS",
    "sslmode": "asyncmy has no sslmode: give ssl_ca (and ssl_cert, ssl_key, "
    "ssl_check_hostname=false as needed) to connect with TLS",
    "connect_timeout": "the store connects with its own timeout",
    "init_command": "the store sets its own session settings",
}


def _sql_value_problem(name: str, value: str) -> str | None:
    """Whether ``value`` fits the query parameter ``name`` (PostgreSQL or MariaDB)."""
    ok = True
    if name in ("sslmode", "ssl"):
        ok = value in SSL_MODES
    elif name == "target_session_attrs":
        ok = value in _SESSION_ATTRS
    elif name == "command_timeout":
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        ok = math.isfinite(number) and number > 0
    elif name == "prepared_statement_cache_size":
        ok = value.isdecimal()
    elif name == "read_timeout":
        ok = value.isdecimal() and int(value) > 0
    elif name == "charset":
        ok = value.lower() in ("utf8mb4", "utf8mb3", "utf8")
    elif name == "port":
        ok = all(p.strip().isdecimal() and 0 < int(p) < 65536 for p in value.split(","))
    elif name == "ssl_check_hostname":
        ok = value.lower() in _TRUE_WORDS | _FALSE_WORDS
    else:
        ok = bool(value)
    if ok:
        return None
    return f"query parameter {name}={value!r} must be {_sql_kind(name)}"


def _sql_kind(name: str) -> str:
    return POSTGRES_QUERY.get(name) or MYSQL_QUERY.get(name, "a value")


def sql_query_problem(scheme: str, query: str) -> str | None:
    """What is wrong with the query of a PostgreSQL or MariaDB ``database_url``, or None.

    A parameter the store's driver does not take (with what to do instead, for the
    libpq and libmysqlclient names users bring from other tools), a parameter given
    twice, or a value of the wrong kind. ``sslmode`` is accepted on PostgreSQL: the
    store hands it to asyncpg as ``ssl``. SQLite URLs are not judged here.
    """
    if scheme.startswith("sqlite"):
        return None
    postgres = scheme.startswith("postgres")
    allowed, refused = (
        (POSTGRES_QUERY, POSTGRES_QUERY_REFUSED) if postgres else (MYSQL_QUERY, MYSQL_QUERY_REFUSED)
    )
    driver = "asyncpg" if postgres else "asyncmy"
    seen: set[str] = set()
    for name, value in parse_qsl(query, keep_blank_values=True):
        if not value and name in allowed:
            continue  # SQLAlchemy drops a blank value (make_url): the name is not used
        if name in refused:
            return f"query parameter {name!r} is not accepted: {refused[name]}"
        if name not in allowed:
            return (
                f"query parameter {name!r} is not accepted (the store connects with "
                f"{driver}); accepted: {', '.join(sorted(allowed))}"
            )
        if name in seen and name != "host":  # several hosts: asyncpg tries each
            return f"query parameter {name!r} is given twice"
        seen.add(name)
        problem = _sql_value_problem(name, value)
        if problem is not None:
            return problem
    if postgres and {"ssl", "sslmode"} <= seen:
        return "query parameters 'ssl' and 'sslmode' are both given; keep one"
    return None
