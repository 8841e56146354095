"""Regressions of the URL checks of b1ea35d (an outside audit).

1. The new URL messages showed secrets: ``ssl_password`` and percent-encoded names
   (``pass%77ord=``) were not redacted in ``(in <url>)``, nor by the CLI.
3. Redis values that passed the check failed at boot as an unreachable server
   (``client_name`` with a space, ``socket_read_size=0``, ``ssl_min_version=3``, an
   unknown ``retry_on_error`` or verify flag).
4. Values that worked before were refused: PostgreSQL ``passfile`` and ``port``,
   MariaDB ``charset=utf8`` / ``utf8mb3``, blank values, ``socket_keepalive=t``.
5. The CLI's explorer warned ``ai_session.config_in_code_ignores_layered`` about its
   own flags.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram.ai.session import SessionConfig, SessionManager
from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.redaction import redact_text, redact_url, url_secrets
from tests.services import (
    MARIADB_URL,
    POSTGRES_URL,
    REDIS_URL,
    require_mariadb,
    require_postgres,
    require_redis,
)

# ------------------------------------------------------------------ 1. secrets
LEAKY_REDIS = [
    ("rediss://127.0.0.1:6379/0?ssl_password=SECRETR1&socket_timeout=x", "SECRETR1"),
    ("rediss://127.0.0.1:6379/0?ssl_password=SECRETR2&bogus=1", "SECRETR2"),
    ("rediss://127.0.0.1:6379/0?bogus=1&ssl_password=SECRETR3", "SECRETR3"),
    ("redis://127.0.0.1:6379/11?pass%77ord=SECRETPW99&socket_timeout=abc", "SECRETPW99"),
    ("redis://127.0.0.1:6379/0?%70assword=SECRETPW98&bogus=1", "SECRETPW98"),
    ("redis://127.0.0.1:6379/0?PASS%57ORD=SECRETPW97&bogus=1", "SECRETPW97"),
    ("rediss://127.0.0.1:6379/0?ssl%5Fpassword=SECRETR4&socket_timeout=x", "SECRETR4"),
]
LEAKY_SQL = [
    ("postgresql+asyncpg://postgres@127.0.0.1/test?pass%77ord=SECRETQ4&sslmode=bogus", "SECRETQ4"),
    ("postgresql://postgres@127.0.0.1/test?sslpassword=SECRETQ5", "SECRETQ5"),
    ("postgresql://postgres@127.0.0.1/test?ssl_key_password=SECRETQ6&x=1", "SECRETQ6"),
    ("mysql+asyncmy://root@127.0.0.1:3306/test?pass%77ord=SECRETM1&foo=bar", "SECRETM1"),
]


@pytest.mark.parametrize(("url", "secret"), LEAKY_REDIS + LEAKY_SQL)
def test_redact_url_hides_ssl_passwords_and_encoded_names(url: str, secret: str) -> None:
    assert secret not in redact_url(url)
    assert secret in url_secrets(url)
    assert secret not in redact_text(f"boom: {url} / {secret}", [url])


def test_redact_url_leaves_other_parameters_alone() -> None:
    url = "rediss://127.0.0.1:6379/0?client_name=app&passfile=/home/a/.pgpass&socket_timeout=5"
    assert redact_url(url) == url


@pytest.mark.parametrize(("url", "secret"), LEAKY_REDIS)
def test_a_redis_url_message_never_shows_a_secret(url: str, secret: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(redis_url=url)
    message = str(info.value)
    assert "ai_session.redis_url" in message
    assert secret not in message


@pytest.mark.parametrize(("url", "secret"), LEAKY_REDIS)
def test_the_redis_store_never_shows_a_secret(url: str, secret: str) -> None:
    from lexigram.ai.session.stores.redis.client import connect

    with pytest.raises(SessionValidationError) as info:
        connect(url, cluster=False, pool_size=2)
    assert secret not in str(info.value)


@pytest.mark.parametrize(("url", "secret"), LEAKY_SQL)
def test_a_sql_url_message_never_shows_a_secret(url: str, secret: str) -> None:
    from lexigram.ai.session.stores.sql.urls import normalise_url

    with pytest.raises(ConfigurationError) as info:
        SessionConfig(database_url=url)
    assert "ai_session.database_url" in str(info.value)
    assert secret not in str(info.value)
    with pytest.raises(SessionValidationError) as store_info:
        normalise_url(url)
    assert secret not in str(store_info.value)


@pytest.mark.parametrize(
    ("flag", "url", "secret"),
    [("--redis-url", u, s) for u, s in LEAKY_REDIS]
    + [("--database-url", u, s) for u, s in LEAKY_SQL],
)
def test_the_cli_never_shows_a_secret(flag: str, url: str, secret: str) -> None:
    from lexigram.ai.session.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code = main([flag, url, "list", "alice"], out=out, err=err, setup_logging=False)
    assert code != 0
    assert secret not in out.getvalue() + err.getvalue()
    assert "redis_url" in err.getvalue() or "database_url" in err.getvalue()


def test_the_cli_process_never_shows_a_secret(tmp_path: Path) -> None:
    url = "redis://127.0.0.1:6379/11?pass%77ord=SECRETPW99&socket_timeout=abc"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEX_")}
    done = subprocess.run(
        [sys.executable, "-m", "lexigram.ai.session.cli", "--redis-url", url, "list", "alice"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120, check=False,
    )
    assert done.returncode != 0
    assert "socket_timeout" in done.stderr
    assert "SECRETPW99" not in done.stdout + done.stderr


# ------------------------------------------------------------------ 3. boot failures
BAD_REDIS_VALUES = [
    ("redis://127.0.0.1:6379/0?client_name=my%20app", "client_name='my app' must be"),
    ("redis://127.0.0.1:6379/0?client_name=a%0Ab", "client_name="),
    ("redis://127.0.0.1:6379/0?socket_read_size=0", "socket_read_size='0' must be"),
    ("redis://127.0.0.1:6379/0?socket_read_size=-5", "socket_read_size='-5' must be"),
    ("rediss://127.0.0.1:6379/0?ssl_min_version=3", "ssl.TLSVersion"),
    ("rediss://127.0.0.1:6379/0?ssl_min_version=abc", "ssl.TLSVersion"),
    ("redis://127.0.0.1:6379/0?retry_on_error=Bogus", "'Bogus' is none"),
    ("redis://127.0.0.1:6379/0?retry_on_error=TimeoutError,,", "an entry is empty"),
    ("redis://127.0.0.1:6379/0?retry_on_error=__name__", "'__name__' is none"),
    ("rediss://127.0.0.1:6379/0?ssl_include_verify_flags=VERIFY_BOGUS", "ssl.VerifyFlags"),
    ("rediss://127.0.0.1:6379/0?ssl_exclude_verify_flags=VERIFY_X509_STRICT,x", "VerifyFlags"),
    ("redis://127.0.0.1:6379/0?socket_keepalive=maybe", "must be true or false"),
]


@pytest.mark.parametrize(("url", "problem"), BAD_REDIS_VALUES)
def test_a_redis_value_that_fails_at_boot_is_refused_by_the_config(
    url: str, problem: str
) -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(redis_url=url)
    message = str(info.value)
    assert message.split("] ", 1)[-1].startswith("ai_session.redis_url: "), message
    assert problem in message


GOOD_REDIS_VALUES = [
    "rediss://127.0.0.1:6379/0?ssl_min_version=771",
    "rediss://127.0.0.1:6379/0?ssl_min_version=772",
    "rediss://127.0.0.1:6379/0?ssl_min_version=-2",
    "redis://127.0.0.1:6379/0?retry_on_error=[ConnectionError, TimeoutError]",
    "redis://127.0.0.1:6379/0?retry_on_error=BusyLoadingError",
    "rediss://127.0.0.1:6379/0?ssl_include_verify_flags=VERIFY_X509_STRICT,VERIFY_CRL_CHECK_LEAF",
    "rediss://127.0.0.1:6379/0?ssl_exclude_verify_flags=[VERIFY_X509_PARTIAL_CHAIN]",
    "redis://127.0.0.1:6379/0?client_name=my-app:1",
    "redis://127.0.0.1:6379/0?socket_read_size=1",
]


@pytest.mark.parametrize("url", GOOD_REDIS_VALUES)
def test_a_redis_value_redis_py_takes_is_accepted(url: str) -> None:
    from redis.asyncio import Redis

    assert SessionConfig(redis_url=url).redis_url == url
    pool = Redis.from_url(url).connection_pool
    pool.connection_class(**pool.connection_kwargs)


async def test_a_client_name_with_a_space_is_what_redis_refuses() -> None:
    """The refusal is Redis's own: the name was sent at connect time and refused."""
    from redis.asyncio import Redis
    from redis.exceptions import ResponseError

    require_redis()
    client = Redis.from_url(REDIS_URL)
    try:
        with pytest.raises(ResponseError):
            await client.client_setname("my app")
    finally:
        await client.aclose()


# ------------------------------------------------------------------ 4. over-refusal
ACCEPTED_AGAIN = [
    ("database_url", "postgresql://postgres@127.0.0.1:5432/test?passfile=/home/a/.pgpass"),
    ("database_url", "postgresql://postgres@127.0.0.1/test?port=5432"),
    ("database_url", "postgresql://postgres@/test?host=h1&host=h2&port=5432,5433"),
    ("database_url", "mysql+asyncmy://root@127.0.0.1:3306/test?charset=utf8"),
    ("database_url", "mariadb://root@127.0.0.1:3306/test?charset=utf8mb3"),
    ("database_url", "mysql+asyncmy://root@127.0.0.1:3306/test?password="),
    ("database_url", "postgresql://postgres@127.0.0.1:5432/test?password=&sslmode="),
    ("redis_url", "redis://127.0.0.1:6379/0?password="),
    ("redis_url", "redis://127.0.0.1:6379/0?password=&socket_timeout="),
    ("redis_url", "redis://127.0.0.1:6379/0?socket_keepalive=t"),
    ("redis_url", "redis://127.0.0.1:6379/0?socket_keepalive=F&retry_on_timeout=Y"),
    ("redis_url", "redis://127.0.0.1:6379/0?client_name="),
]


@pytest.mark.parametrize(("field", "url"), ACCEPTED_AGAIN)
def test_a_value_the_driver_takes_is_accepted_again(field: str, url: str) -> None:
    assert getattr(SessionConfig(**{field: url}), field) == url


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1/test?port=0",
        "postgresql://postgres@127.0.0.1/test?port=http",
        "postgresql://postgres@127.0.0.1/test?port=70000",
        "mysql+asyncmy://root@127.0.0.1:3306/test?charset=latin1",
    ],
)
def test_a_bad_port_or_charset_is_still_refused(url: str) -> None:
    with pytest.raises(ConfigurationError, match="ai_session.database_url"):
        SessionConfig(database_url=url)


@pytest.mark.parametrize("url", [u for f, u in ACCEPTED_AGAIN if f == "database_url"])
def test_the_sql_store_takes_what_the_config_takes(url: str) -> None:
    from lexigram.ai.session.stores.sql.urls import normalise_url

    parsed = normalise_url(url).url
    if parsed.drivername.startswith("mysql"):
        assert parsed.query["charset"] == "utf8mb4"  # whatever the URL said
    assert "password" not in parsed.query


async def test_redis_with_a_blank_password_and_keepalive_t_connects() -> None:
    from tests.services import drop_redis_keys

    require_redis()
    prefix = f"lxtest:r{uuid.uuid4().hex[:8]}"
    url = REDIS_URL + ("&" if "?" in REDIS_URL else "?") + "password=&socket_keepalive=t"
    try:
        async with SessionManager.open(redis_url=url, key_prefix=prefix) as sessions:
            state = await sessions.create("u")
            assert await sessions.get_state(state.session_id) is not None
    finally:
        from redis.asyncio import Redis

        client = Redis.from_url(REDIS_URL)
        await drop_redis_keys(client, prefix)
        await client.aclose()


async def test_postgres_with_port_and_passfile_connects(tmp_path: Path) -> None:
    from lexigram.ai.session.stores.database import drop_schema

    require_postgres()
    passfile = tmp_path / "pgpass"
    passfile.write_text("otherhost:5432:*:*:nothing\n")
    passfile.chmod(0o600)
    prefix = f"lxp{uuid.uuid4().hex[:10]}_"
    url = POSTGRES_URL + ("&" if "?" in POSTGRES_URL else "?") + f"port=5432&passfile={passfile}"
    try:
        async with SessionManager.open(database_url=url, table_prefix=prefix) as sessions:
            state = await sessions.create("u")
            assert await sessions.get_state(state.session_id) is not None
    finally:
        await drop_schema(POSTGRES_URL, table_prefix=prefix)


async def test_mariadb_with_charset_utf8_connects_in_utf8mb4() -> None:
    from lexigram.ai.session.stores.database import drop_schema

    require_mariadb()
    prefix = f"lxm{uuid.uuid4().hex[:10]}_"
    url = MARIADB_URL + ("&" if "?" in MARIADB_URL else "?") + "charset=utf8&password="
    try:
        async with SessionManager.open(database_url=url, table_prefix=prefix) as sessions:
            state = await sessions.create("u")
            await sessions.add_message(state.session_id, "user", "emoji \U0001f600")
            turns = await sessions.get_turns(state.session_id)
            assert [t.content for t in turns] == ["emoji \U0001f600"]
    finally:
        await drop_schema(MARIADB_URL, table_prefix=prefix)


# ------------------------------------------------------------------ 5. CLI flags
class _Recorder:
    def __init__(self) -> None:
        self.warned: list[dict[str, object]] = []

    def warning(self, event: str, **fields: object) -> None:
        self.warned.append({"event": event, **fields})

    def info(self, event: str, **fields: object) -> None:
        pass

    def debug(self, event: str, **fields: object) -> None:
        pass


LAYERED = "ai_session.config_in_code_ignores_layered"


@pytest.fixture
def layered_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> _Recorder:
    from lexigram.ai.session.manager import standalone

    recorder = _Recorder()
    monkeypatch.setattr(standalone, "logger", recorder)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEX_AI_SESSION__DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/env.db")
    return recorder


async def test_the_explorer_check_does_not_warn_about_the_cli_flags(
    tmp_path: Path, layered_env: _Recorder
) -> None:
    from lexigram.ai.session.explorer.server import check_store

    await check_store(SessionConfig(database_url=f"sqlite+aiosqlite:///{tmp_path}/ex.db"))
    assert not [w for w in layered_env.warned if w["event"] == LAYERED]


async def test_the_explorer_runtime_does_not_warn_about_the_cli_flags(
    tmp_path: Path, layered_env: _Recorder
) -> None:
    from lexigram.ai.session.explorer.runtime import ExplorerRuntime
    from lexigram.ai.session.explorer.settings import ExplorerSettings

    config = SessionConfig(database_url=f"sqlite+aiosqlite:///{tmp_path}/ex.db")
    runtime = ExplorerRuntime(ExplorerSettings.from_options(), None, config)
    await runtime.start()
    try:
        assert runtime.service_or_none is not None
    finally:
        await runtime.stop()
    assert not [w for w in layered_env.warned if w["event"] == LAYERED]


async def test_open_still_warns_and_resolve_config_only_when_asked(
    tmp_path: Path, layered_env: _Recorder
) -> None:
    from lexigram.ai.session.manager.standalone import resolve_config

    config = SessionConfig(database_url=f"sqlite+aiosqlite:///{tmp_path}/ex.db")
    resolve_config(config, {}, warn_layered=False)
    assert not [w for w in layered_env.warned if w["event"] == LAYERED]
    async with SessionManager.open(config):
        pass
    warned = [w for w in layered_env.warned if w["event"] == LAYERED]
    assert len(warned) == 1 and warned[0]["fields"] == ["database_url"]
