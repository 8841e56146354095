"""A mistyped key is refused with a suggestion, from keywords, dicts and YAML alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram import Application
from lexigram.ai.session import SessionConfig, SessionManager, SessionModule
from lexigram.ai.session.config import coerce_config


def test_keyword_typo_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigurationError, match=r"'sesion_ttl' \(did you mean 'session_ttl'\?\)"):
        SessionConfig(sesion_ttl=5)


def test_dict_typo_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigurationError, match="did you mean 'max_turns_per_session'"):
        coerce_config({"max_turn_per_session": 5})


def test_every_unknown_key_is_listed_and_far_ones_get_no_guess() -> None:
    with pytest.raises(ConfigurationError) as info:
        SessionConfig(backend="database", zzz=1, sesion_ttl=2)
    text = str(info.value)
    assert "'zzz'" in text and "did you mean 'session_ttl'" in text
    assert "'zzz' (did you mean" not in text


def test_refused_config_leaves_no_attribute_behind() -> None:
    config = SessionConfig(session_ttl=7)
    assert config.session_ttl == 7 and not hasattr(config, "sesion_ttl")


def test_model_dump_round_trips() -> None:
    config = SessionConfig(session_ttl=7, backend="database")
    again = SessionConfig(**config.model_dump())
    assert (again.session_ttl, again.backend) == (7, "database")


async def test_typo_in_module_configure_and_open() -> None:
    with pytest.raises(ConfigurationError, match="did you mean 'session_ttl'"):
        SessionModule.configure({"sesion_ttl": 5})
    with pytest.raises(ConfigurationError, match="did you mean 'session_ttl'"):
        async with SessionManager.open(sesion_ttl=5):
            pass


async def test_yaml_typo_still_refused_by_the_framework(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "application.yaml").write_text("ai_session:\n  sesion_ttl: 5\n")
    with pytest.raises(Exception, match="did you mean 'session_ttl'"):
        async with Application.boot(modules=[SessionModule.configure()]):
            pass
