"""Text fields set to digits through the environment (an outside SPEC audit: the
framework's environment source turns ``2024`` into a number, and the field was refused,
so the application did not boot)."""

from __future__ import annotations

import pytest

from lexigram.ai.session import SessionConfig


def test_digits_in_text_fields_are_read_as_the_variables_text(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.chdir(str(tmp_path))
    monkeypatch.setenv("LEX_AI_SESSION__KEY_PREFIX", "007")
    monkeypatch.setenv("LEX_AI_SESSION__DEFAULT_SYSTEM_PROMPT", "42")
    monkeypatch.setenv("LEX_AI_SESSION__NAME", "2024")
    monkeypatch.setenv("LEX_AI_SESSION__HEADER_NAME", "nan")
    config = SessionConfig.from_env_profile()
    assert (config.key_prefix, config.default_system_prompt, config.name) == ("007", "42", "2024")
    assert config.header_name == "nan"


def test_a_number_given_in_code_is_still_refused_by_name() -> None:
    with pytest.raises(Exception, match="ai_session.key_prefix"):
        SessionConfig(key_prefix=7)  # type: ignore[arg-type]


def test_null_in_the_environment_unsets_a_field_that_may_be_null(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    # Before: LEX_AI_SESSION__COOKIE_NAME=null named the cookie "null" (YAML's
    # `cookie_name: null` disables cookies), and the interval's "null" was refused.
    monkeypatch.chdir(str(tmp_path))
    monkeypatch.setenv("LEX_AI_SESSION__COOKIE_NAME", "null")
    monkeypatch.setenv("LEX_AI_SESSION__DEFAULT_SYSTEM_PROMPT", "NULL")
    monkeypatch.setenv("LEX_AI_SESSION__AUTO_CHECKPOINT_INTERVAL", "null")
    monkeypatch.setenv("LEX_AI_SESSION__KEY_PREFIX", "null")  # may not be null: text
    config = SessionConfig.from_env_profile()
    assert config.cookie_name is None
    assert config.default_system_prompt is None
    assert config.auto_checkpoint_interval is None
    assert config.key_prefix == "null"


def test_null_given_in_code_is_text() -> None:
    assert SessionConfig(cookie_name="null").cookie_name == "null"


@pytest.mark.parametrize("block", ["SQL", "REDIS"])
def test_null_in_the_environment_unsets_a_backend_block(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, block: str
) -> None:
    # Before: refused, "must be a mapping ..., got str" (YAML's `sql: null` is accepted).
    monkeypatch.chdir(str(tmp_path))
    monkeypatch.setenv(f"LEX_AI_SESSION__{block}", "null")
    config = SessionConfig.from_env_profile()
    assert config.sql is None and config.redis is None


def test_a_numbered_secret_saying_null_is_refused_by_index(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    # Before: the signing secret became the word "null", silently.
    monkeypatch.chdir(str(tmp_path))
    monkeypatch.setenv("LEX_AI_SESSION__COOKIE_SECRET__0", "null")
    monkeypatch.setenv("LEX_AI_SESSION__COOKIE_SECRET__1", "a-real-old-secret")
    with pytest.raises(Exception, match=r"cookie_secret\[0\]"):
        SessionConfig.from_env_profile()


def test_null_in_the_environment_unsets_the_options_block(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.chdir(str(tmp_path))
    monkeypatch.setenv("LEX_AI_SESSION__BACKEND", "sql")
    monkeypatch.setenv("LEX_AI_SESSION__OPTIONS", "null")
    assert SessionConfig.from_env_profile().options == {}
