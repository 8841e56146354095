"""Key=value connection strings and percent-encoded passwords are redacted too.

An outside audit: ``database_url="host=db user=app password=hunter2 dbname=x"`` (a
libpq DSN) was echoed with its password by the configuration error and the CLI, and
``url_secrets`` found nothing in it.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram.ai.session import SessionConfig
from lexigram.ai.session.cli.main import main as cli_main
from lexigram.ai.session.config import coerce_config
from lexigram.ai.session.redaction import (
    RedactingWriter,
    redact_text,
    redact_url,
    url_secrets,
)

from .support import SECRET, chain

#: (key=value string, its secret as the server or a driver would see it)
DSNS: list[tuple[str, str]] = [
    (f"host=db.internal user=app password={SECRET} dbname=sessions", SECRET),
    (f"password={SECRET} host=db.internal", SECRET),
    (f"host=h user=app PASSWORD = {SECRET}", SECRET),
    (f"host=h\tpwd={SECRET}\tdbname=x", SECRET),
    (f"host=h Passwd={SECRET} dbname=x", SECRET),
    (f"host=h password='{SECRET} with blanks' dbname=x", f"{SECRET} with blanks"),
    (f"host=h password='{SECRET}\\'q' dbname=x", f"{SECRET}'q"),
    (f"host=h password='{SECRET} unterminated", f"{SECRET} unterminated"),
    (f"host=h password={SECRET}@x:y dbname=x", f"{SECRET}@x:y"),
    (f"host=h sslpassword={SECRET}", SECRET),
]
DSN_IDS = [f"dsn-{i}" for i in range(len(DSNS))]


@pytest.mark.parametrize(("dsn", "secret"), DSNS, ids=DSN_IDS)
def test_redact_url_masks_a_key_value_password(dsn: str, secret: str) -> None:
    shown = redact_url(dsn)
    assert SECRET not in shown, shown
    assert "=***" in shown or "= ***" in shown
    assert "host=" in shown  # the rest stays readable


@pytest.mark.parametrize(("dsn", "secret"), DSNS, ids=DSN_IDS)
def test_url_secrets_finds_a_key_value_password(dsn: str, secret: str) -> None:
    assert secret in url_secrets(dsn)
    text = redact_text(f"connect failed for {dsn!r}; the server refused {secret!r}", [dsn])
    assert SECRET not in text, text


def test_the_exact_key_value_output() -> None:
    assert (
        redact_url("host=db user=app password=hunter2 dbname=x")
        == "host=db user=app password=*** dbname=x"
    )
    assert redact_url("host=db password='a b' dbname=x") == "host=db password=*** dbname=x"
    # not a key of its own: left alone
    assert redact_url("host=db mypassword=x") == "host=db mypassword=x"
    assert url_secrets("host=db user=app dbname=x") == []


@pytest.mark.parametrize("dsn", [d for d, _ in DSNS], ids=DSN_IDS)
def test_config_errors_on_a_key_value_string_hide_its_password(dsn: str) -> None:
    with pytest.raises(ConfigurationError, match="ai_session.database_url") as info:
        coerce_config({"backend": "sql", "database_url": dsn})
    with pytest.raises(ConfigurationError, match="ai_session.database_url") as info2:
        SessionConfig(database_url=dsn)
    for exc in (info.value, info2.value):
        for item in chain(exc):
            assert SECRET not in str(item), str(item)
            assert SECRET not in repr(item.args)


@pytest.mark.parametrize("dsn", [d for d, _ in DSNS], ids=DSN_IDS)
def test_cli_error_on_a_key_value_string_hides_its_password(
    dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    out, err = io.StringIO(), io.StringIO()
    code = cli_main(["--database-url", dsn, "list", "u"], out=out, err=err, setup_logging=False)
    assert code == 1
    assert "ai_session.database_url" in err.getvalue()
    assert SECRET not in out.getvalue() + err.getvalue(), err.getvalue()


def test_typer_cli_error_on_a_key_value_string_hides_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from lexigram.ai.session.cli.typer_app import create_app

    monkeypatch.chdir(tmp_path)
    dsn = f"host=h user=app password={SECRET} dbname=x"
    result = CliRunner().invoke(create_app(), ["--database-url", dsn, "list", "u"])
    assert result.exit_code == 1
    assert "ai_session.database_url" in result.output
    assert SECRET not in result.output, result.output


def test_sql_store_refuses_a_key_value_string_without_its_password() -> None:
    from lexigram.ai.session.exceptions import SessionValidationError
    from lexigram.ai.session.stores.sql.urls import normalise_url

    with pytest.raises(SessionValidationError) as info:
        normalise_url(f"host=h user=app password={SECRET} dbname=x")
    for item in chain(info.value):
        assert SECRET not in str(item), str(item)


# ------------------------------------------------------ percent-encoded passwords
ENCODED = SECRET.replace("-", "%2D").replace("Z", "%5A")  # decodes to SECRET


def test_url_secrets_gives_the_decoded_form_of_an_encoded_password() -> None:
    url = f"postgresql://bob:{ENCODED}@h/db"
    assert ENCODED != SECRET
    assert redact_url(url) == "postgresql://bob:***@h/db"
    assert ENCODED in url_secrets(url) and SECRET in url_secrets(url)
    # a driver quotes the password as it sent it: decoded
    text = redact_text(f"authentication failed for bob with password {SECRET}", [url])
    assert SECRET not in text


def test_an_encoded_query_password_is_found_decoded() -> None:
    url = f"postgresql://u@h/db?password={ENCODED}&sslmode=require"
    assert SECRET in url_secrets(url)
    sink = io.StringIO()
    RedactingWriter(sink, [url]).write(f"refused: {SECRET}\n")
    assert sink.getvalue() == "refused: ***\n"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://bob:{ENCODED}@h:notaport/db",
        f"postgresql://bob:{SECRET}@h:notaport/db",
        f"postgresql://bob:{ENCODED}@h:99999999/db",
        f"postgresql://bob:{ENCODED}@[h/db",
    ],
)
def test_an_unparsable_port_or_host_with_a_userinfo_password(url: str) -> None:
    assert SECRET not in redact_url(url) and ENCODED not in redact_url(url)
    with pytest.raises(ConfigurationError, match="ai_session.database_url") as info:
        coerce_config({"backend": "sql", "database_url": url})
    for item in chain(info.value):
        assert SECRET not in str(item) and ENCODED not in str(item), str(item)
    err = io.StringIO()
    assert (
        cli_main(
            ["--database-url", url, "list", "u"], out=io.StringIO(), err=err, setup_logging=False
        )
        == 1
    )
    assert SECRET not in err.getvalue() and ENCODED not in err.getvalue(), err.getvalue()


# ---- a regression audit of the key=value redaction


@pytest.mark.parametrize(
    ("url", "secret", "piece"),
    [
        ("redis://:Pa ss#Zq9?rd@127.0.0.1:1/12", "Pa ss#Zq9?rd", "Pa ss"),
        ("postgresql+asyncpg://app:Pa ss#Zq9?rd@127.0.0.1:1/db", "Pa ss#Zq9?rd", "Pa ss"),
        ("redis://user:ab@cd:TopSecret99/x@127.0.0.1:1/12", "ab@cd:TopSecret99/x", "TopSecret99"),
    ],
)
def test_a_password_with_url_delimiters_is_redacted_whole_and_in_pieces(
    url: str, secret: str, piece: str
) -> None:
    """A password holding '#', '?' or white space matched no user-info pattern and was
    printed whole; a driver cutting the URL elsewhere quoted a piece of it as a port."""
    assert secret not in redact_url(url) and piece not in redact_url(url)
    assert secret in url_secrets(url) and piece in url_secrets(url)
    echoed = f"Port could not be cast to integer value as {piece!r}"
    assert piece not in redact_text(echoed, [url])


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Driver={ODBC Driver 18};Server=h;Uid=u;Pwd={ab;Zq9cd};", "Zq9cd"),
        ('host=h user=app password="ab Zq9cd" dbname=x', "Zq9cd"),
    ],
)
def test_braced_and_double_quoted_values_are_redacted_whole(text: str, secret: str) -> None:
    assert secret not in redact_url(text)
    assert any(secret in found for found in url_secrets(text))


def test_a_multi_host_url_the_dialect_refuses_names_the_field_without_a_traceback() -> None:
    from lexigram.contracts.exceptions.config import ConfigurationError

    from lexigram.ai.session import SessionConfig
    from lexigram.ai.session.stores.registry import create_store

    config = SessionConfig(database_url="postgresql://app:secretpw@/db?host=h1:5432&host=h2")
    with pytest.raises(ConfigurationError, match="ai_session.database_url") as caught:
        create_store(config)
    assert "secretpw" not in str(caught.value) and caught.value.__cause__ is None


# ---- a second regression audit of the redaction


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("redis://:p@ssw0rd#2024@127.0.0.1:1/0", "ssw0rd#2024"),  # '@' and '#' both
        ("postgresql+asyncpg://app:Adm1n@Corp?2024@127.0.0.1/db", "Corp?2024"),
        ("redis://127.0.0.1:1/0?password=abc;defgh", "defgh"),  # drivers keep the ';'
    ],
)
def test_the_whole_secret_is_masked(url: str, secret: str) -> None:
    assert secret not in redact_url(url)


def test_short_or_joined_pieces_a_driver_quotes_are_masked() -> None:
    urls = ["redis://:ab:cd:ef:gh#ijkl@127.0.0.1:1/0", "redis://:Ab1#Cd2?Ef3@h:1/0"]
    message = "Port could not be cast to integer value as 'ab:cd:ef:gh', then 'Ab1'"
    redacted = redact_text(message, urls)
    assert "ab:cd" not in redacted and "Ab1" not in redacted


def test_a_url_without_user_info_and_an_at_sign_in_its_query_is_shown_as_it_is() -> None:
    """The loose pattern took the port for a password: 'connecting to 127.0.0.1:***'."""
    url = "redis://127.0.0.1:6390/0?client_name=ops@team"
    assert redact_url(url) == url
    message = "Error connecting to 127.0.0.1:6390. ('127.0.0.1', 6390)"
    assert redact_text(message, [url]) == message


def test_a_piece_the_redacted_url_shows_anyway_is_not_masked_in_messages() -> None:
    url = "redis://:admin:localhost@localhost:1/0"
    assert redact_url(url) == "redis://:***@localhost:1/0"
    assert "localhost" not in url_secrets(url)
    assert (
        redact_text("Error connecting to localhost:1.", [url]) == "Error connecting to localhost:1."
    )
