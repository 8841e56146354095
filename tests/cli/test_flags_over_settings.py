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


@pytest.mark.parametrize(
    ("yaml", "field"),
    [
        ("backend: redis\n  redis_url: redis://127.0.0.1:6379/9\n  sql:\n    url: sqlite:///x.db",
         "ai_session.sql"),
        ("backend: memory\n  redis:\n    pool_size: 3", "ai_session.redis"),
        ("backend: in_memory\n  sql:\n    urll: x", "ai_session.sql.urll"),
        ("backend: sql\n  redis: nope", "ai_session.redis"),
    ],
)
def test_without_flags_a_stray_block_is_refused_as_the_application_refuses_it(
    tmp_path: Path, yaml: str, field: str
) -> None:
    """No flag chooses anything: the settings are judged as SessionConfig.from_env_profile()
    and the application judge them (the CLI dropped another backend's block silently)."""
    from lexigram.contracts.exceptions.config import ConfigurationError

    from lexigram.ai.session.config import SessionConfig

    (tmp_path / "application.yaml").write_text(f"ai_session:\n  {yaml}\n")
    with pytest.raises(ConfigurationError) as app:
        SessionConfig.from_env_profile()
    with pytest.raises(ConfigurationError) as cli:
        build_config()
    assert field in str(app.value) and field in str(cli.value)


def test_a_flag_that_keeps_the_backend_keeps_the_settings_judged(tmp_path: Path) -> None:
    from lexigram.contracts.exceptions.config import ConfigurationError

    (tmp_path / "application.yaml").write_text(
        "ai_session:\n  backend: redis\n  sql:\n    url: sqlite:///x.db\n"
    )
    with pytest.raises(ConfigurationError, match=r"ai_session\.sql"):
        build_config(backend="redis", redis_url=REDIS)


def test_a_block_selected_by_its_url_is_left_out_when_the_flags_choose_another(
    tmp_path: Path,
) -> None:
    (tmp_path / "application.yaml").write_text(
        "ai_session:\n  sql:\n    url: sqlite+aiosqlite:///yaml.db\n    table_prefix: y_\n"
    )
    config = build_config(redis_url=REDIS)
    assert (config.backend, config.redis_url) == ("redis", REDIS)


@pytest.mark.parametrize("profile", [None, "prod"])
def test_a_yaml_syntax_error_is_named_with_its_file_and_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, profile: str | None
) -> None:
    """It was a Python traceback naming "<unicode string>", even with the URL as a flag."""
    from lexigram.contracts.exceptions.config import ConfigurationError

    broken = "ai_session:\n  database_url: [unclosed\n"
    if profile is None:
        (tmp_path / "application.yaml").write_text(broken)
        name = "application.yaml"
    else:
        monkeypatch.setenv("LEX_PROFILE", profile)
        (tmp_path / "application.yaml").write_text("ai_session:\n  backend: sql\n")
        (tmp_path / f"application.{profile}.yaml").write_text(broken)
        name = f"application.{profile}.yaml"
    with pytest.raises(ConfigurationError, match=rf"{name}: not valid YAML \(line 3"):
        build_config(database_url=SQLITE, table_prefix="flag_")


def test_a_json_application_file_with_tabs_is_read_and_a_directory_is_named(
    tmp_path: Path,
) -> None:
    """The YAML check refused JSON the framework's loader takes (tab-indented), and a
    path that cannot be read (a directory) was a traceback."""
    from lexigram.contracts.exceptions.config import ConfigurationError

    (tmp_path / "application.yaml").write_text(
        '{\n\t"ai_session": {"backend": "sql", "table_prefix": "json_"}\n}\n'
    )
    config = build_config(database_url=SQLITE)
    assert config.table_prefix == "json_"
    # JSON that is no object is read as YAML by the framework: named as YAML then.
    (tmp_path / "application.yaml").write_text('[\n\t"ai_session"\n]\n')
    with pytest.raises(ConfigurationError, match="application.yaml: not valid YAML"):
        build_config(database_url=SQLITE)
    (tmp_path / "application.yaml").unlink()
    (tmp_path / "application.yaml").mkdir()
    with pytest.raises(ConfigurationError, match="application.yaml: cannot be read"):
        build_config(database_url=SQLITE)
