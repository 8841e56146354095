"""A rotated cookie secret given through the environment: a JSON array in the one
variable, or numbered variables; a plain value (commas included) is one secret."""

from __future__ import annotations

import pytest
from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram.ai.session import SessionConfig

NEW, OLD = "new-secret-" + "n" * 30, "old-secret-" + "o" * 30


def test_a_json_array_in_the_variable_is_the_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEX_AI_SESSION__COOKIE_SECRET", f'["{NEW}", "{OLD}"]')
    assert SessionConfig.from_env_profile().cookie_secret == [NEW, OLD]


def test_numbered_variables_are_the_list_newest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEX_AI_SESSION__COOKIE_SECRET__1", OLD)
    monkeypatch.setenv("LEX_AI_SESSION__COOKIE_SECRET__0", NEW)
    assert SessionConfig.from_env_profile().cookie_secret == [NEW, OLD]


def test_a_plain_value_is_one_secret_even_with_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEX_AI_SESSION__COOKIE_SECRET", f"{NEW},{OLD}")
    assert SessionConfig.from_env_profile().cookie_secret == f"{NEW},{OLD}"
    assert SessionConfig(cookie_secret="[not json").cookie_secret == "[not json"


def test_numbered_secrets_with_a_gap_are_refused_by_name() -> None:
    with pytest.raises(ConfigurationError, match="cookie_secret"):
        SessionConfig(cookie_secret={"0": NEW, "2": OLD})
    with pytest.raises(ConfigurationError, match=r"cookie_secret\[1\]"):
        SessionConfig(cookie_secret=f'["{NEW}", 3]')


def test_both_forms_at_once_are_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one variable beside numbered ones: a bare TypeError from the framework's
    environment source, or the numbered ones dropped silently, by the variables' order."""
    monkeypatch.setenv("LEX_AI_SESSION__COOKIE_SECRET", NEW)
    monkeypatch.setenv("LEX_AI_SESSION__COOKIE_SECRET__0", OLD)
    with pytest.raises(ConfigurationError, match="cookie_secret") as caught:
        SessionConfig.from_env_profile()
    assert "COOKIE_SECRET__0" in str(caught.value)
    assert NEW not in str(caught.value) and OLD not in str(caught.value)
