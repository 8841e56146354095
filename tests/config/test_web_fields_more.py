"""Web settings a browser or the middleware cannot use are refused, naming the field
(found by an outside audit).

``cookie_path: api`` was sent as ``Path=api``, which browsers ignore;
``allow_anonymous`` with cookies off was accepted, then every anonymous ``ensure()``
said to set ``allow_anonymous``; ``LEX_AI_SESSION__COOKIE_SECRET`` starting with ``[``
but not a JSON array became one literal secret (every cookie signed with the old one
stopped verifying); numbered secret variables with a bad suffix or a value of digits
named no variable.
"""

from __future__ import annotations

import os

import pytest
from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram.ai.session import SessionConfig

NEW, OLD = "new-secret-" + "n" * 30, "old-secret-" + "o" * 30
VAR = "LEX_AI_SESSION__COOKIE_SECRET"


@pytest.fixture(autouse=True)
def _no_session_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("LEX_AI_SESSION__"):
            monkeypatch.delenv(name)


# ------------------------------------------------------------------ cookie_path


@pytest.mark.parametrize("value", ["api", "null", "chat/v1", " /chat", "."])
def test_a_cookie_path_not_starting_with_a_slash_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match=r"ai_session\.cookie_path: must start with '/'"):
        SessionConfig(cookie_path=value)


def test_a_cookie_path_from_the_environment_saying_null_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEX_AI_SESSION__COOKIE_PATH", "null")
    with pytest.raises(ConfigurationError, match=r"ai_session\.cookie_path"):
        SessionConfig.from_env_profile()


@pytest.mark.parametrize("value", ["/", "/chat", "/chat/v1/"])
def test_cookie_paths_from_the_root_pass(value: str) -> None:
    assert SessionConfig(cookie_path=value).cookie_path == value


def test_an_empty_cookie_name_still_turns_cookies_off() -> None:
    assert SessionConfig(cookie_name="").cookie_name is None


# ----------------------------------------------------- anonymous needs the cookie


@pytest.mark.parametrize("cookie_name", [None, ""])
def test_anonymous_sessions_without_cookies_are_refused(cookie_name: str | None) -> None:
    with pytest.raises(ConfigurationError) as refused:
        SessionConfig(allow_anonymous=True, cookie_name=cookie_name)
    message = str(refused.value)
    assert "ai_session.allow_anonymous" in message and "ai_session.cookie_name" in message


def test_anonymous_sessions_without_cookies_from_the_environment_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEX_AI_SESSION__ALLOW_ANONYMOUS", "true")
    monkeypatch.setenv("LEX_AI_SESSION__COOKIE_NAME", "null")
    with pytest.raises(ConfigurationError, match=r"ai_session\.allow_anonymous"):
        SessionConfig.from_env_profile()


def test_anonymous_sessions_with_cookies_or_cookies_off_alone_pass() -> None:
    assert SessionConfig(allow_anonymous=True).cookie_name == "lexigram_session"
    assert SessionConfig(cookie_name=None).allow_anonymous is False


# ------------------------------------------- a list in the one environment variable


@pytest.mark.parametrize(
    "value",
    [
        f"['{NEW}', '{OLD}']",  # Python quotes
        f'["{NEW}", "{OLD}",]',  # trailing comma
        f'["{NEW}", "{OLD}"',  # no closing bracket
        f"  [{NEW}, {OLD}]  ",  # not quoted
    ],
)
def test_a_variable_starting_with_a_bracket_must_be_a_json_array(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(VAR, value)
    with pytest.raises(ConfigurationError) as refused:
        SessionConfig.from_env_profile()
    message = str(refused.value)
    assert "ai_session.cookie_secret" in message and "JSON array of strings" in message
    assert NEW not in message and OLD not in message  # never echoed


def test_a_json_array_in_the_variable_still_is_the_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, f' ["{NEW}", "{OLD}"] ')
    assert SessionConfig.from_env_profile().cookie_secret == [NEW, OLD]


# ------------------------------------------------------------- numbered variables


@pytest.mark.parametrize("suffix", ["X", "-1", "one", "1a"])
def test_a_numbered_variable_with_a_bad_suffix_is_named(
    monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    monkeypatch.setenv(f"{VAR}__0", NEW)
    monkeypatch.setenv(f"{VAR}__{suffix}", OLD)
    with pytest.raises(ConfigurationError) as refused:
        SessionConfig.from_env_profile()
    message = str(refused.value)
    assert "ai_session.cookie_secret" in message
    assert f"{VAR}__{suffix}: the suffix must be a number 0, 1, ..." in message
    assert NEW not in message and OLD not in message


def test_a_numbered_value_of_digits_gets_the_hint_and_its_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(f"{VAR}__0", "20261207")
    monkeypatch.setenv(f"{VAR}__1", OLD)
    with pytest.raises(ConfigurationError) as refused:
        SessionConfig.from_env_profile()
    message = str(refused.value)
    assert "ai_session.cookie_secret[0]" in message and f"{VAR}__0" in message
    assert "digits only is read as a number: use letters too" in message
    assert "20261207" not in message and OLD not in message


def test_good_numbered_variables_still_are_the_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{VAR}__1", OLD)
    monkeypatch.setenv(f"{VAR}__0", NEW)
    assert SessionConfig.from_env_profile().cookie_secret == [NEW, OLD]
