"""CLI flags are applied to the settings as written, before they are validated.

Settings meant for the backend the flags choose (``LEX_AI_SESSION__OPTIONS__...``, a
block in ``application.yaml``) are judged with that backend, and a flag wins over the
same setting written in a block.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lexigram.ai.session.cli.operations import build_config

SQLITE = "sqlite+aiosqlite:///flags.db"
REDIS = "redis://127.0.0.1:6379/9"


@pytest.fixture(autouse=True)
def _clean_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("LEX_AI_SESSION__") or name == "LEX_PROFILE":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no application.yaml


def test_env_options_hold_for_the_backend_the_flags_choose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LEX_AI_SESSION__OPTIONS__POOL_SIZE", "4")
    config = build_config(backend="redis", redis_url=REDIS, key_prefix="flags:")
    assert (config.backend, config.redis_url, config.redis_pool_size) == ("redis", REDIS, 4)
    assert config.key_prefix == "flags:"


def test_env_url_holds_for_the_backend_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEX_AI_SESSION__DATABASE_URL", SQLITE)
    monkeypatch.setenv("LEX_AI_SESSION__OPTIONS__POOL_SIZE", "3")
    config = build_config(backend="sql")
    assert (config.backend, config.database_url, config.db_pool_size) == ("sql", SQLITE, 3)


def test_a_flag_wins_over_the_same_setting_in_a_block(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "application.yaml").write_text(
        "ai_session:\n  backend: sql\n  sql:\n    url: sqlite+aiosqlite:///yaml.db\n"
        "    table_prefix: yaml_\n"
    )
    config = build_config(database_url=SQLITE, table_prefix="flag_")
    assert (config.database_url, config.table_prefix) == (SQLITE, "flag_")


def test_blocks_of_the_backend_the_flags_replace_are_left_out(tmp_path: Path) -> None:
    (tmp_path / "application.yaml").write_text(
        "ai_session:\n  backend: redis\n  redis:\n    url: redis://127.0.0.1:6379/3\n"
        "  options:\n    pool_size: 7\n"
    )
    config = build_config(database_url=SQLITE)
    assert (config.backend, config.database_url) == ("sql", SQLITE)


def test_without_flags_the_settings_are_read_as_the_framework_reads_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "application.yaml").write_text("ai_session:\n  session_ttl: 60\n")
    monkeypatch.setenv("LEX_AI_SESSION__MAX_TURNS_PER_SESSION", "12")
    config = build_config()
    assert (config.backend, config.session_ttl, config.max_turns_per_session) == ("memory", 60, 12)


def test_a_bad_setting_is_still_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from lexigram.contracts.exceptions.config import ConfigurationError

    monkeypatch.setenv("LEX_AI_SESSION__OPTIONS__POOL_SIZ", "4")
    with pytest.raises(ConfigurationError, match=r"options\.pool_siz.*did you mean 'pool_size'"):
        build_config(backend="redis", redis_url=REDIS)
