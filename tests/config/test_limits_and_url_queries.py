"""Settings refused when the config is built, not on every later call (an outside audit).

- Integer limits past 2**53 - 1 were accepted, then every call failed with
  ``LEX_ERR_SES_107`` naming an internal argument (``max_live_per_user``).
- Redis URL query parameters were not checked: ``?decode_responses=true`` booted and
  wrote, then reads crashed; ``?foo=bar`` or ``?ssl_cert_reqs=none`` on ``redis://``
  failed at boot with a bare ``TypeError`` from redis-py.
- libpq / libmysqlclient query parameters (``sslmode``, ``connect_timeout``,
  ``ssl_mode``) passed the config, then boot failed as an unreachable server.
- (A ``table_prefix`` with capitals, refused for a while, is accepted again: see the
  end of this file.)
"""

from __future__ import annotations

import inspect
import uuid
from typing import Any

import pytest
from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram.ai.session import SessionConfig, SessionManager
from lexigram.ai.session.exceptions import SessionValidationError, StoreUnavailableError
from lexigram.ai.session.validation import MAX_SAFE_INT
from tests.services import (
    MARIADB_URL,
    POSTGRES_URL,
    REDIS_URL,
    require_mariadb,
    require_postgres,
    require_redis,
)

# ------------------------------------------------------------------ limits
#: Every integer field but the durations (bounded at a thousand years), with its minimum.
COUNT_FIELDS = {
    "max_turns_per_session": 1,
    "max_sessions_per_user": 1,
    "max_checkpoints_per_session": 1,
    "max_branches_per_session": 0,
    "max_agents_per_group": 1,
    "sweep_batch_size": 1,
    "redis_pool_size": 1,
    "db_pool_size": 1,
    "anonymous_sessions_per_minute": 0,
    "max_anonymous_sessions": 0,
    "auto_checkpoint_interval": 0,
}


@pytest.mark.parametrize("name", sorted(COUNT_FIELDS))
@pytest.mark.parametrize("value", [MAX_SAFE_INT + 1, 2**63, 2**70])
def test_a_limit_past_2_53_is_refused_naming_the_field(name: str, value: int) -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(**{name: value})
    message = str(info.value)
    assert f"ai_session.{name}: must be in {COUNT_FIELDS[name]}..{MAX_SAFE_INT}" in message
    assert "max_live_per_user" not in message


@pytest.mark.parametrize("name", sorted(COUNT_FIELDS))
def test_the_largest_limit_is_accepted(name: str) -> None:
    assert getattr(SessionConfig(**{name: MAX_SAFE_INT}), name) == MAX_SAFE_INT


def test_a_limit_from_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEX_AI_SESSION__MAX_SESSIONS_PER_USER", str(2**70))
    with pytest.raises(ConfigurationError, match=r"ai_session\.max_sessions_per_user: must be in"):
        SessionConfig.from_env_profile()


def test_a_limit_in_a_dict_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"ai_session\.sweep_batch_size: must be in 1\.\."):
        SessionConfig(**{"sweep_batch_size": str(2**60)})


async def test_open_refuses_a_huge_cap_on_entry() -> None:
    """The audit's repro: it opened, then ``create`` failed naming ``max_live_per_user``."""
    with pytest.raises(ConfigurationError, match=r"ai_session\.max_sessions_per_user"):
        async with SessionManager.open(max_sessions_per_user=2**70) as sessions:
            await sessions.create("u")


@pytest.mark.parametrize(
    "settings",
    [
        {"max_turns_per_session": 2**70},
        {"max_checkpoints_per_session": 2**70},
        {"max_branches_per_session": 2**70},
        {"sweep_batch_size": 2**70},
    ],
)
async def test_open_refuses_every_huge_cap(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match=rf"ai_session\.{next(iter(settings))}"):
        async with SessionManager.open(**settings):
            pass


def test_a_block_option_past_2_53_names_the_key_as_written() -> None:
    with pytest.raises(ConfigurationError, match=r"ai_session\.sql\.pool_size: must be in 1\.\."):
        SessionConfig(backend="sql", sql={"pool_size": 2**60})


# ------------------------------------------------------------------ Redis URL queries
BAD_REDIS = [
    ("redis://127.0.0.1:6379/13?decode_responses=true", "'decode_responses' is not accepted"),
    ("redis://127.0.0.1:6379/13?decode_responses=false", "'decode_responses' is not accepted"),
    ("redis://127.0.0.1:6379/0?encoding=latin-1", "'encoding' is not accepted"),
    ("redis://127.0.0.1:6379/0?foo=bar", "'foo' is not accepted"),
    ("redis://127.0.0.1:6379/0?ssl_cert_reqs=none", "TLS options need rediss://"),
    ("redis://127.0.0.1:6379/0?protocol=3", "must be 2"),
    ("redis://127.0.0.1:6379/0?legacy_responses=false", "'legacy_responses' is not accepted"),
    ("redis://127.0.0.1:6379/0?max_connections=5", "redis_pool_size"),
    ("redis://127.0.0.1:6379/0?timeout=5", "'timeout' is not accepted"),
    ("redis://127.0.0.1:6379/0?socket_timeout=abc", "socket_timeout='abc' must be"),
    ("redis://127.0.0.1:6379/0?socket_timeout=0", "must be a number of seconds above 0"),
    ("redis://127.0.0.1:6379/0?socket_timeout=5&socket_timeout=6", "given twice"),
    ("redis://127.0.0.1:6379/0?socket_keepalive=maybe", "must be true or false"),
    ("unix:///tmp/redis.sock?socket_keepalive=true", "no TCP keepalive"),
    ("rediss://127.0.0.1:6379/0?ssl_cert_reqs=sometimes", "none, optional or required"),
]


@pytest.mark.parametrize(("url", "problem"), BAD_REDIS)
def test_a_redis_url_query_the_store_cannot_use_is_refused(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(redis_url=url)
    message = str(info.value)
    assert message.split("] ", 1)[-1].startswith("ai_session.redis_url: "), message
    assert problem in message


def test_a_redis_cluster_query_the_cluster_client_does_not_take_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="with redis_cluster"):
        SessionConfig(redis_url="redis://127.0.0.1:7000/0?retry_on_timeout=true",
                      redis_cluster=True)
    with pytest.raises(ConfigurationError, match="with redis_cluster"):
        SessionConfig(redis_url="rediss://127.0.0.1:7000/0?ssl_ca_path=/etc/ssl",
                      redis_cluster=True)


def test_a_redis_password_in_the_query_is_never_shown() -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(redis_url="redis://127.0.0.1:6379/0?password=hunter2&foo=1")
    assert "hunter2" not in str(info.value)


GOOD_REDIS = [
    "redis://127.0.0.1:6379/0?socket_timeout=5&health_check_interval=30",
    "redis://127.0.0.1:6379/0?socket_connect_timeout=2.5&socket_keepalive=true",
    "redis://127.0.0.1:6379/0?retry_on_timeout=yes&client_name=chat&protocol=2",
    "redis://127.0.0.1:6379/0?retry_on_error=TimeoutError,ConnectionError",
    "redis://127.0.0.1:6379/?db=3&socket_read_size=65536",
    "rediss://redis.example:6380/0?ssl_cert_reqs=none&ssl_check_hostname=false",
    "rediss://redis.example:6380/0?ssl_ca_certs=/etc/ssl/certs/ca.pem&ssl_min_version=771",
    "unix:///tmp/redis.sock?db=2&socket_timeout=1",
]


@pytest.mark.parametrize("url", GOOD_REDIS)
def test_a_redis_url_query_redis_py_supports_is_accepted(url: str) -> None:
    assert SessionConfig(redis_url=url).redis_url == url


def _redis_sample(name: str) -> str:
    samples = {
        "db": "0", "retry_on_error": "TimeoutError", "protocol": "2", "ssl_cert_reqs": "none",
        "ssl_min_version": "771", "ssl_include_verify_flags": "VERIFY_X509_STRICT",
        "ssl_exclude_verify_flags": "VERIFY_X509_STRICT", "socket_read_size": "65536",
        "health_check_interval": "30", "socket_keepalive": "true", "retry_on_timeout": "true",
        "ssl_check_hostname": "false", "socket_timeout": "5", "socket_connect_timeout": "5",
    }
    return samples.get(name, "x")


@pytest.mark.parametrize("scheme", ["redis", "rediss", "unix"])
@pytest.mark.parametrize("cluster", [False, True])
def test_every_accepted_redis_query_is_taken_by_redis_py(scheme: str, cluster: bool) -> None:
    """The lists of ``config_urls`` against the installed redis-py: each accepted name
    builds a connection (or a cluster client) without a TypeError."""
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    from lexigram.ai.session.config_urls import redis_query_names

    if cluster and scheme == "unix":
        pytest.skip("a cluster is reached over TCP")
    names = redis_query_names(scheme, cluster=cluster)
    base = "unix:///tmp/redis.sock" if scheme == "unix" else f"{scheme}://127.0.0.1:6379/0"
    for name in sorted(names):
        url = f"{base}?{name}={_redis_sample(name)}"
        assert SessionConfig(redis_url=url, redis_cluster=cluster).redis_url == url
        if cluster:
            RedisCluster.from_url(url)  # builds without connecting; a bad keyword is a TypeError
            continue
        pool = Redis.from_url(url).connection_pool
        pool.connection_class(**pool.connection_kwargs)


def test_the_refused_redis_queries_are_ones_redis_py_takes() -> None:
    """The refusals are deliberate: redis-py takes each one; the store could not."""
    from redis.asyncio.connection import URL_QUERY_ARGUMENT_PARSERS, AbstractConnection

    from lexigram.ai.session.config_urls import (
        REDIS_QUERY_COMMON,
        REDIS_QUERY_REFUSED,
        REDIS_QUERY_SINGLE,
        REDIS_QUERY_TCP,
        REDIS_QUERY_TLS,
    )

    taken = set(URL_QUERY_ARGUMENT_PARSERS) | set(
        inspect.signature(AbstractConnection.__init__).parameters
    )
    assert set(REDIS_QUERY_REFUSED) <= taken
    accepted = {*REDIS_QUERY_COMMON, *REDIS_QUERY_TCP, *REDIS_QUERY_SINGLE, *REDIS_QUERY_TLS}
    assert not accepted & set(REDIS_QUERY_REFUSED)


async def test_redis_connect_refuses_a_query_before_any_connection() -> None:
    """The store built without a SessionConfig says the same (the bare TypeError of
    ``?foo=bar`` came from here)."""
    from lexigram.ai.session.stores.redis.client import connect

    with pytest.raises(SessionValidationError) as info:
        connect("redis://127.0.0.1:6379/0?foo=bar", cluster=False, pool_size=2)
    assert info.value.field == "redis_url"


async def test_a_redis_store_with_connection_options_reads_what_it_wrote() -> None:
    from tests.services import drop_redis_keys

    require_redis()
    prefix = f"lxtest:q{uuid.uuid4().hex[:8]}"
    query = ("socket_timeout=5&socket_connect_timeout=5&health_check_interval=30"
             "&socket_keepalive=true&retry_on_timeout=true&client_name=lxq&protocol=2")
    url = REDIS_URL + ("&" if "?" in REDIS_URL else "?") + query
    try:
        async with SessionManager.open(redis_url=url, key_prefix=prefix) as sessions:
            state = await sessions.create("u")
            await sessions.add_message(state.session_id, "user", "hello")
            turns = await sessions.get_turns(state.session_id)
            assert [t.content for t in turns] == ["hello"]
    finally:
        from redis.asyncio import Redis

        client = Redis.from_url(REDIS_URL)
        await drop_redis_keys(client, prefix)
        await client.aclose()


# ------------------------------------------------------------------ SQL URL queries
BAD_SQL = [
    ("postgresql+psycopg2://u:pw@127.0.0.1:5432/test?connect_timeout=5", "'connect_timeout'"),
    ("postgresql://u:pw@127.0.0.1:5432/test?application_name=x", "'application_name'"),
    ("postgresql://u@127.0.0.1:5432/test?sslrootcert=/ca.pem", "PGSSLROOTCERT"),
    ("postgresql://u@127.0.0.1:5432/test?sslmode=sometimes", "sslmode='sometimes' must be"),
    ("postgresql://u@127.0.0.1:5432/test?sslmode=require&ssl=require", "both given"),
    ("postgresql://u@127.0.0.1:5432/test?foo=bar", "'foo' is not accepted"),
    ("mysql://root:pw@127.0.0.1:3306/test?ssl_mode=REQUIRED", "'ssl_mode'"),
    ("mysql://root@127.0.0.1:3306/test?connect_timeout=5", "'connect_timeout'"),
    ("mariadb://root@127.0.0.1:3306/test?charset=latin1", "charset='latin1' must be utf8mb4"),
    ("mysql+asyncmy://root@127.0.0.1:3306/test?foo=bar", "'foo' is not accepted"),
]


@pytest.mark.parametrize(("url", "problem"), BAD_SQL)
def test_a_sql_query_the_driver_does_not_take_is_refused(url: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(database_url=url)
    message = str(info.value)
    assert message.split("] ", 1)[-1].startswith("ai_session.database_url: "), message
    assert problem in message
    assert ":pw@" not in message


@pytest.mark.parametrize(("url", "problem"), BAD_SQL)
def test_the_sql_store_refuses_the_same_query(url: str, problem: str) -> None:
    from lexigram.ai.session.stores.sql.urls import normalise_url

    with pytest.raises(SessionValidationError) as info:
        normalise_url(url)
    assert info.value.field == "database_url" and problem in str(info.value)


GOOD_SQL = [
    "postgresql+psycopg2://u:pw@127.0.0.1:5432/test?sslmode=require",
    "postgresql://u@127.0.0.1:5432/test?ssl=verify-full&target_session_attrs=read-write",
    "postgresql://u@127.0.0.1:5432/test?command_timeout=30&prepared_statement_cache_size=0",
    "postgresql://u@/test?host=/var/run/postgresql",
    "mysql://root@127.0.0.1:3306/test?ssl_ca=/etc/ca.pem&ssl_check_hostname=false",
    "mariadb://root@127.0.0.1:3306/test?read_timeout=30&charset=utf8mb4",
]


@pytest.mark.parametrize("url", GOOD_SQL)
def test_a_sql_query_the_driver_takes_is_accepted(url: str) -> None:
    assert SessionConfig(database_url=url).database_url == url


def test_every_accepted_sql_query_is_a_driver_keyword() -> None:
    import asyncpg

    from lexigram.ai.session.config_urls import MYSQL_QUERY, POSTGRES_QUERY

    taken = set(inspect.signature(asyncpg.connect).parameters) | {
        "host", "prepared_statement_cache_size",  # SQLAlchemy's own (host: several)
    }
    assert set(POSTGRES_QUERY) - {"sslmode"} <= taken  # sslmode is translated to ssl
    ssl_keys = {"ssl_ca", "ssl_cert", "ssl_key", "ssl_capath", "ssl_cipher", "ssl_check_hostname"}
    others = {"charset", "unix_socket", "read_timeout", "user", "password"}
    assert set(MYSQL_QUERY) <= {*others, *ssl_keys}


def test_sslmode_becomes_asyncpgs_ssl() -> None:
    from lexigram.ai.session.stores.sql.urls import normalise_url

    url = normalise_url("postgresql+psycopg2://u:pw@127.0.0.1:5432/test?sslmode=require").url
    assert url.drivername == "postgresql+asyncpg"
    assert dict(url.query) == {"ssl": "require"}


@pytest.mark.parametrize("mode", ["prefer", "disable", "allow"])
async def test_postgres_with_an_sslmode_the_server_allows_connects(mode: str) -> None:
    from lexigram.ai.session.stores.database import drop_schema

    require_postgres()
    prefix = f"lxq{uuid.uuid4().hex[:10]}_"
    url = POSTGRES_URL + ("&" if "?" in POSTGRES_URL else "?") + f"sslmode={mode}"
    try:
        async with SessionManager.open(database_url=url, table_prefix=prefix) as sessions:
            state = await sessions.create("u")
            found = await sessions.get_state(state.session_id)
            assert found is not None and found.user_id == "u"
    finally:
        await drop_schema(POSTGRES_URL, table_prefix=prefix)


async def test_postgres_sslmode_require_without_tls_is_a_connection_error() -> None:
    """The local server has no TLS: ``require`` must fail as the server refusing it, not
    as a TypeError about a keyword."""
    require_postgres()
    url = POSTGRES_URL + ("&" if "?" in POSTGRES_URL else "?") + "sslmode=require"
    with pytest.raises(StoreUnavailableError) as info:
        async with SessionManager.open(database_url=url, table_prefix="lxq_never_"):
            pass
    assert "unexpected keyword" not in str(info.value)
    assert "SSL" in str(info.value)


async def test_mariadb_with_a_read_timeout_connects() -> None:
    from lexigram.ai.session.stores.database import drop_schema

    require_mariadb()
    prefix = f"lxq{uuid.uuid4().hex[:10]}_"
    url = MARIADB_URL + ("&" if "?" in MARIADB_URL else "?") + "read_timeout=30"
    try:
        async with SessionManager.open(database_url=url, table_prefix=prefix) as sessions:
            state = await sessions.create("u")
            found = await sessions.get_state(state.session_id)
            assert found is not None and found.user_id == "u"
    finally:
        await drop_schema(MARIADB_URL, table_prefix=prefix)


# ------------------------------------------------------------------ table_prefix case
# An upper-case table_prefix was refused for a while (b1ea35d), which cut MariaDB users
# off from the tables they had created with it: it is accepted again, as written; the
# database decides what it names (docs/backend-sql.md, docs/configuration.md).
@pytest.mark.parametrize(
    ("settings", "prefix"),
    [
        ({"table_prefix": "aud_CaseA_"}, "aud_CaseA_"),
        ({"backend": "sql", "sql": {"table_prefix": "Chat_"}}, "Chat_"),
    ],
)
def test_a_table_prefix_with_capitals_is_accepted_as_written(
    settings: dict[str, Any], prefix: str
) -> None:
    assert SessionConfig(**settings).table_prefix == prefix


def test_a_table_prefix_with_capitals_from_the_environment_is_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEX_AI_SESSION__TABLE_PREFIX", "aud_CaseA_")
    assert SessionConfig.from_env_profile().table_prefix == "aud_CaseA_"


def test_a_lower_case_table_prefix_is_accepted() -> None:
    assert SessionConfig(table_prefix="aud_casea_1_").table_prefix == "aud_casea_1_"


def test_a_table_prefix_breaking_the_other_rules_is_still_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"ai_session\.table_prefix: must start"):
        SessionConfig(table_prefix="9Chat-")


async def test_mariadb_tables_of_an_upper_case_prefix_stay_reachable() -> None:
    """Tables made with an upper-case prefix on MariaDB (Linux: case-sensitive names)
    are opened again by a SessionConfig with the same spelling."""
    from lexigram.ai.session.stores.database import drop_schema

    require_mariadb()
    prefix = f"lxQ{uuid.uuid4().hex[:8]}_"
    try:
        async with SessionManager.open(database_url=MARIADB_URL, table_prefix=prefix) as s:
            state = await s.create("u")
        config = SessionConfig(database_url=MARIADB_URL, table_prefix=prefix)
        async with SessionManager.open(config) as s:
            found = await s.get_state(state.session_id)
            assert found is not None and found.user_id == "u"
    finally:
        await drop_schema(MARIADB_URL, table_prefix=prefix)
        await drop_schema(MARIADB_URL, table_prefix=prefix.lower())
