"""Credentials never appear: errors (and their chains), logs and CLI output show URLs redacted."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pytest
from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram import Application
from lexigram.ai.session import SessionConfig, SessionModule
from lexigram.ai.session.cli.main import main as cli_main
from lexigram.ai.session.config import coerce_config
from lexigram.ai.session.redaction import RedactingWriter, redact_text, redact_url, url_secrets

from .support import BOOT, SECRET, chain, closed_port, run_python

TOKEN = "tok_" + "A1b2C3d4" * 3
"""A user name that is really a token (``redis://<token>@host``)."""

#: (field, bad URL holding a secret, other settings) - each fails validation.
BAD_URLS: list[tuple[str, str, dict[str, Any]]] = [
    ("database_url", f"oracle://bob:{SECRET}@h/db", {}),
    ("database_url", f"postgresql://bob:{SECRET}@/db", {}),
    ("database_url", f"postgresql://bob:{SECRET}@h:notaport/db", {}),
    ("database_url", f"postgresql://bob:{SECRET}@[h/db", {}),
    ("database_url", f"sqlite+aiosqlite://bob:{SECRET}@h/x.db", {}),
    ("database_url", f"postgresql//bob:{SECRET}@h/db", {}),
    ("redis_url", f"http://bob:{SECRET}@x", {}),
    ("redis_url", f"redis://bob:{SECRET}@h:6379/abc", {}),
    ("redis_url", f"redis://:{SECRET}@h:6379/3", {"redis_cluster": True}),
    ("redis_url", f"redis://bob:{SECRET}@h:99999/0", {}),
    ("redis_url", f"rediss://{SECRET}@", {}),
    ("redis_url", f"redis://{TOKEN}@h:6379/x", {}),
]
IDS = [f"{f}-{i}" for i, (f, _, _) in enumerate(BAD_URLS)]


def secret_of(url: str) -> str:
    return TOKEN if TOKEN in url else SECRET


def assert_clean(text: str, secret: str) -> None:
    assert secret not in text, text


def assert_error_clean(exc: BaseException, secret: str) -> None:
    for item in chain(exc):
        assert_clean(str(item), secret)
        assert_clean(repr(item.args), secret)


# ------------------------------------------------------------------ redact_url
@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mysql://bob:hunter2@h/db", "mysql://bob:***@h/db"),
        ("postgresql://bob:hunter2@/db", "postgresql://bob:***@/db"),
        ("http://bob:hunter2@x", "http://bob:***@x"),
        ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
        ("rediss://default:p@ss/w:rd@h:1/0", "rediss://default:***@h:1/0"),
        (f"redis://{TOKEN}@h", "redis://***@h"),
        ("redis://bob@h/0", "redis://bob@h/0"),
        (
            "postgresql://u@h/db?password=xyz&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        ("sqlite+aiosqlite:///path/with@sign.db", "sqlite+aiosqlite:///path/with@sign.db"),
        ("http://bob:hunter2@[x", "http://bob:***@[x"),
        ("not a url", "not a url"),
        ("bob:hunter2@h/db", "bob:***@h/db"),
        ("mysql//bob:hunter2@h", "mysql//bob:***@h"),
        ("user@example.com", "user@example.com"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_covers_a_quoted_url_and_the_bare_secret() -> None:
    url = f"postgresql://bob:{SECRET}@h/db"
    text = redact_text(f"could not parse {url!r}; password {SECRET} refused", [url])
    assert SECRET not in text
    assert "postgresql://bob:***@h/db" in text
    assert url_secrets(url) == [SECRET]


def test_redacting_writer() -> None:
    sink = io.StringIO()
    writer = RedactingWriter(sink, [None, f"redis://:{SECRET}@h/0"])
    writer.add_urls([f"postgresql://u:{SECRET}x@h/db"])
    writer.write(f"failed: {SECRET} and {SECRET}x\n")
    assert sink.getvalue() == "failed: *** and ***\n"


# ------------------------------------------------------- SessionConfig / dicts
@pytest.mark.parametrize(("field", "url", "extra"), BAD_URLS, ids=IDS)
def test_keyword_config_error_is_redacted(
    field: str,
    url: str,
    extra: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigurationError, match=f"ai_session.{field}") as info:
        SessionConfig(**{field: url}, **extra)
    assert_error_clean(info.value, secret_of(url))
    assert_clean(caplog.text, secret_of(url))
    captured = capfd.readouterr()
    assert_clean(captured.out + captured.err, secret_of(url))


@pytest.mark.parametrize(("field", "url", "extra"), BAD_URLS, ids=IDS)
def test_dict_config_error_is_redacted(field: str, url: str, extra: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match=f"ai_session.{field}") as info:
        coerce_config({field: url, **extra})
    assert_error_clean(info.value, secret_of(url))


# ------------------------------------------------------- environment, at boot
# In-process boots never use capfd/capsys: the framework re-binds its log printer to
# the stream of the moment, which those fixtures close afterwards. What the process
# prints is checked in subprocesses below.
@pytest.mark.parametrize(("field", "url", "extra"), BAD_URLS, ids=IDS)
async def test_env_config_error_at_boot_is_redacted(
    field: str,
    url: str,
    extra: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(f"LEX_AI_SESSION__{field.upper()}", url)
    for name, value in extra.items():
        monkeypatch.setenv(f"LEX_AI_SESSION__{name.upper()}", str(value).lower())
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigurationError, match=f"ai_session.{field}") as info:
        async with Application.boot(modules=[SessionModule.configure()]):
            pass
    assert_error_clean(info.value, secret_of(url))
    assert_clean(caplog.text, secret_of(url))


@pytest.mark.parametrize(
    "env",
    [
        {"LEX_AI_SESSION__DATABASE_URL": f"oracle://bob:{SECRET}@h/db"},
        {"LEX_AI_SESSION__DATABASE_URL": f"postgresql://bob:{SECRET}@/db"},
        {"LEX_AI_SESSION__REDIS_URL": f"http://bob:{SECRET}@x"},
        {
            "LEX_AI_SESSION__REDIS_URL": f"redis://:{SECRET}@h/2",
            "LEX_AI_SESSION__REDIS_CLUSTER": "1",
        },
    ],
)
def test_boot_with_default_logging_never_prints_the_secret(
    env: dict[str, str], tmp_path: Path
) -> None:
    result = run_python(BOOT, cwd=tmp_path, env=env)
    assert result.returncode != 0
    assert "BOOT FAILED" in result.stderr  # the framework printed the error: redacted
    assert "ai_session." in result.stderr and ":***@" in result.stderr
    assert_clean(result.stdout + result.stderr, SECRET)


@pytest.mark.parametrize("field", ["database_url", "redis_url"])
def test_unreachable_server_at_boot_is_redacted(field: str, tmp_path: Path) -> None:
    port = closed_port()
    scheme = "postgresql" if field == "database_url" else "redis"
    url = f"{scheme}://bob:{SECRET}@127.0.0.1:{port}/0"
    result = run_python(BOOT, cwd=tmp_path, env={f"LEX_AI_SESSION__{field.upper()}": url})
    assert result.returncode != 0
    assert "StoreUnavailableError" in result.stderr
    assert f"bob:***@127.0.0.1:{port}" in result.stderr
    assert_clean(result.stdout + result.stderr, SECRET)


# --------------------------------------------------------------------------- CLI
@pytest.mark.parametrize(("field", "url", "extra"), BAD_URLS, ids=IDS)
def test_cli_option_error_is_redacted(
    field: str, url: str, extra: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in extra.items():
        monkeypatch.setenv(f"LEX_AI_SESSION__{name.upper()}", str(value).lower())
    out, err = io.StringIO(), io.StringIO()
    option = "--database-url" if field == "database_url" else "--redis-url"
    code = cli_main([option, url, "list", "u"], out=out, err=err, setup_logging=False)
    assert code == 1
    assert f"ai_session.{field}" in err.getvalue()
    assert_clean(out.getvalue() + err.getvalue(), secret_of(url))


def test_cli_unreachable_server_is_redacted(tmp_path: Path) -> None:
    port = closed_port()
    for option, url in [
        ("--database-url", f"postgresql://bob:{SECRET}@127.0.0.1:{port}/db"),
        ("--redis-url", f"redis://bob:{SECRET}@127.0.0.1:{port}/0"),
    ]:
        result = run_python(
            "", cwd=tmp_path, module="lexigram.ai.session.cli", args=(option, url, "list", "u")
        )
        assert result.returncode == 1, result.stderr
        assert "bob:***@127.0.0.1" in result.stderr
        assert_clean(result.stdout + result.stderr, SECRET)


def test_typer_cli_error_is_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from lexigram.ai.session.cli.typer_app import create_app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        create_app(), ["--database-url", f"oracle://bob:{SECRET}@h/db", "list", "u"]
    )
    assert result.exit_code == 1
    assert "ai_session.database_url" in result.output
    assert_clean(result.output, SECRET)


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://bob:{SECRET}@h:xx/db",
        f"oracle://bob:{SECRET}@h/db",
        f"postgresql://bob:{SECRET}@/db",
        f"::bob:{SECRET}@",
    ],
)
def test_sql_store_url_errors_are_redacted(url: str) -> None:
    from lexigram.ai.session.exceptions import SessionValidationError
    from lexigram.ai.session.stores.sql.urls import normalise_url

    with pytest.raises(SessionValidationError) as info:
        normalise_url(url)
    assert info.value.field == "database_url"
    assert_error_clean(info.value, SECRET)


def test_config_and_sql_store_accept_the_same_schemes() -> None:
    from lexigram.ai.session.config_urls import SQL_SCHEMES
    from lexigram.ai.session.stores.sql.urls import _ALIASES

    assert set(SQL_SCHEMES) == set(_ALIASES)


def test_config_repr_and_public_dict_hide_secrets() -> None:
    config = SessionConfig(
        database_url=f"postgresql://bob:{SECRET}@h/db", cookie_secret="cookie-" + SECRET
    )
    for text in (repr(config), str(config), str(config.public_dict())):
        assert_clean(text, SECRET)
        assert "postgresql://bob:***@h/db" in text
    assert config.database_url == f"postgresql://bob:{SECRET}@h/db"  # the value itself is kept


def test_a_cookie_secret_of_the_wrong_type_is_not_echoed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digits = "12345678901234567890123456789012345"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEX_AI_SESSION__COOKIE_SECRET", digits)  # read as a number
    with pytest.raises(
        ConfigurationError, match=r"ai_session\.cookie_secret: must be a string"
    ) as info:
        SessionConfig.from_env_profile()
    assert_error_clean(info.value, digits)


def test_store_urls_mask_secret_query_parameters() -> None:
    """A ``?password=`` given in the URL was printed in clear by the stores' connect
    errors (SQLAlchemy's masking hides the user-info password only; an outside audit)."""
    from lexigram.ai.session.stores.redis.client import mask_url as redis_mask
    from lexigram.ai.session.stores.sql.urls import mask_url as sql_mask
    from lexigram.ai.session.stores.sql.urls import normalise_url

    for url in (
        "postgresql://postgres@127.0.0.1:5439/test?password=hunter2",
        "mysql+asyncmy://root@127.0.0.1:3306/test?charset=utf8mb4&password=hunter2",
        "postgresql://u:hunter2@127.0.0.1/test",
    ):
        assert "hunter2" not in sql_mask(url)
        assert "hunter2" not in normalise_url(url).masked
    for url in ("redis://127.0.0.1:6399/12?password=hunter2", "redis://:hunter2@h:6379/0"):
        assert "hunter2" not in redis_mask(url) and "***" in redis_mask(url)


async def test_a_store_that_cannot_connect_names_no_secret_of_its_url() -> None:
    import pytest

    from lexigram.ai.session import SessionManager
    from lexigram.ai.session.exceptions import StoreUnavailableError

    for options in (
        {"backend": "sql", "database_url": "postgresql://p@127.0.0.1:1/test?password=hunter2"},
        {"backend": "redis", "redis_url": "redis://127.0.0.1:1/0?password=hunter2"},
    ):
        with pytest.raises(StoreUnavailableError) as caught:
            async with SessionManager.open(**options):  # type: ignore[arg-type]
                pass
        assert "hunter2" not in str(caught.value) and "***" in str(caught.value)
