"""The keys / erase-user / export-user commands in-process: errors named, both CLI front ends."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lexigram.ai.session.cli import typer_app
from lexigram.ai.session.cli.main import main
from lexigram.ai.session.cli.typer_app import create_app
from lexigram.ai.session.encryption.keyring import new_key_text


def _cli(tmp_path: Path, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    url = f"sqlite+aiosqlite:///{tmp_path / 's.db'}"
    code = main(["--database-url", url, *argv], out=out, err=err, setup_logging=False)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    monkeypatch.chdir(tmp_path)
    text = f"{new_key_text('new')},{new_key_text('old')}"
    monkeypatch.setenv("LEX_AI_SESSION__ENCRYPTION_KEYS", text)
    return text


def test_without_keys_the_key_commands_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LEX_AI_SESSION__ENCRYPTION_KEYS", raising=False)
    code, _, err = _cli(tmp_path, "keys", "rotate")
    assert code == 1 and "ai_session.encryption_keys" in err


def test_status_retire_and_bad_batch(keys: str, tmp_path: Path) -> None:
    # They only read (or change what exists): a mistyped path is not a store that needs
    # no key, nor one whose erasure is complete (erase-user created it and said so).
    for argv in (
        ("keys", "status"),
        ("keys", "retire", "old"),
        ("export-user", "u"),
        ("erase-user", "u"),
        ("erase-user", "--json", "u"),
        ("keys", "rotate"),
    ):
        code, _, err = _cli(tmp_path, *argv)
        assert code == 1 and "no SQLite database" in err, argv
    assert not (tmp_path / "s.db").exists()
    assert _cli(tmp_path, "schema-setup")[0] == 0
    code, out, _ = _cli(tmp_path, "keys", "status")
    assert code == 0 and out.splitlines() == [
        "new: 0 record(s); newest (wraps new data keys)",
        "old: 0 record(s); older",
    ]
    code, _, err = _cli(tmp_path, "keys", "retire", "new")
    assert code == 1 and "is the newest key" in err
    code, out, _ = _cli(tmp_path, "keys", "retire", "old")
    assert code == 0 and "remove it from encryption_keys" in out
    code, _, err = _cli(tmp_path, "keys", "retire", "nope")
    assert code == 1 and "'nope' is not in encryption_keys (configured: new, old)" in err
    code, _, err = _cli(tmp_path, "keys", "rotate", "--batch", "0")
    assert code == 1 and "--batch" in err
    for bad in ("zzzz", "-5", "rc1.", "rc1.!!"):
        code, _, err = _cli(tmp_path, "keys", "rotate", "--resume-from", bad)
        assert code == 1 and "resume_from" in err and "earlier rotation" in err, err
    for part in keys.split(","):
        assert part.split(":")[1] not in out + err


def test_erase_and_export_of_an_unknown_user(keys: str, tmp_path: Path) -> None:
    assert _cli(tmp_path, "schema-setup")[0] == 0
    code, out, _ = _cli(tmp_path, "erase-user", "nobody")
    assert code == 0 and "0 session(s)" in out
    code, out, _ = _cli(tmp_path, "export-user", "nobody")
    assert code == 0 and json.loads(out)["sessions"] == []
    code, _, err = _cli(tmp_path, "erase-user", " ")
    assert code == 1 and "user_id" in err


def test_the_typer_front_end_has_the_same_commands(
    keys: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The group's callback points the process's logging at CliRunner's stderr, which is
    # closed afterwards: keep the process's logging as it is.
    monkeypatch.setattr(typer_app, "_quiet_logging", lambda verbose: None)
    url = f"sqlite+aiosqlite:///{tmp_path / 's.db'}"
    assert _cli(tmp_path, "schema-setup")[0] == 0
    result = CliRunner().invoke(create_app(), ["--database-url", url, "keys", "status"])
    assert result.exit_code == 0, result.output
    assert "new: 0 record(s)" in result.output
    result = CliRunner().invoke(create_app(), ["--database-url", url, "erase-user", "nobody"])
    assert result.exit_code == 0 and "0 session(s)" in result.output


async def test_list_and_exports_name_the_key_a_session_needs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``list``, ``export --user`` and ``export-user`` called a session whose key is
    missing or wrong "damaged", without the key id (an outside privacy audit)."""
    import asyncio

    from lexigram.ai.session import SessionManager

    monkeypatch.chdir(tmp_path)
    url = f"sqlite+aiosqlite:///{tmp_path / 's.db'}"
    right = new_key_text("kX")

    async def write() -> None:
        async with SessionManager.open(
            backend="sql", database_url=url, encryption_keys=right
        ) as manager:
            state = await manager.create("ula")
            await manager.add_message(state.session_id, "user", "hello")

    await asyncio.to_thread(asyncio.run, write())
    for keys in (None, new_key_text("kX")):  # no key; the right id, other key material
        if keys is None:
            monkeypatch.delenv("LEX_AI_SESSION__ENCRYPTION_KEYS", raising=False)
        else:
            monkeypatch.setenv("LEX_AI_SESSION__ENCRYPTION_KEYS", keys)
        for argv in (("list", "ula"), ("export", "--user", "ula"), ("export-user", "ula")):
            code, _, err = await asyncio.to_thread(_cli, tmp_path, *argv)
            assert code == 1 and "key 'kX'" in err, (keys, argv, err)
