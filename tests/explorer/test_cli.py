"""``explore`` in ``python -m lexigram.ai.session.cli`` and in ``lexigram ai-session``."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lexigram.ai.session.cli.main import build_parser, main
from lexigram.ai.session.stores.database import DatabaseSessionStore
from tests.explorer.seed import seed_story


def _run(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    code = main(list(argv), out=io.StringIO(), err=err, setup_logging=False)
    return code, err.getvalue()


def test_explore_options_are_parsed() -> None:
    args = build_parser().parse_args(
        ["--database-url", "sqlite+aiosqlite:///x.db", "explore", "--host", "::1",
         "--port", "9000", "--allow-writes", "--token", "t" * 20]
    )
    assert (args.command, args.host, args.port, args.allow_writes, args.token) == (
        "explore", "::1", 9000, True, "t" * 20
    )


def test_explore_refuses_another_host_without_a_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AI_SESSION_EXPLORER_TOKEN", raising=False)
    code, err = _run("explore", "--host", "0.0.0.0")
    assert code == 1
    assert "token" in err and "0.0.0.0" in err and "not a loopback address" in err
    code, err = _run("explore", "--host", "0.0.0.0", "--token", "short")
    assert code == 1 and "at least 12 characters" in err


def test_the_lexigram_cli_command_group_has_explore(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from lexigram.ai.session.cli import typer_app
    from lexigram.ai.session.cli.typer_app import create_app

    monkeypatch.delenv("AI_SESSION_EXPLORER_TOKEN", raising=False)
    # The group's callback points the process's logging at CliRunner's stream, which is
    # closed afterwards (a later test's log line would then raise): leave logging alone.
    monkeypatch.setattr(typer_app, "_quiet_logging", lambda verbose: None)
    result = CliRunner().invoke(create_app(), ["explore", "--host", "0.0.0.0"])
    assert result.exit_code == 1
    assert "an access token is required" in result.output
    helped = CliRunner().invoke(create_app(), ["explore", "--help"])
    assert helped.exit_code == 0 and "--allow-writes" in helped.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _seed(url: str) -> str:
    store = DatabaseSessionStore(url)
    await store.initialize()
    try:
        return (await seed_story(store)).trip
    finally:
        await store.close()


def test_explore_serves_the_configured_store(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}"
    trip = asyncio.run(_seed(url))
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEX_AI_SESSION__")}
    process = subprocess.Popen(
        [sys.executable, "-m", "lexigram.ai.session.cli", "--database-url", url, "explore",
         "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        answer = None
        for _ in range(150):  # bounded: at most ~30 s for the interpreter to start
            if process.poll() is not None:
                break
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/api/session",
                                   params={"id": trip}, timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert answer is not None, process.communicate(timeout=5)
        assert answer.status_code == 200
        assert answer.json()["turn_count"] == 9
        refused = httpx.post(f"http://127.0.0.1:{port}/actions/close",
                             data={"id": trip, "confirm": "yes"}, timeout=5)
        assert refused.status_code == 403  # read-only by default
    finally:
        process.terminate()
        _, err = process.communicate(timeout=15)
    assert f"Session explorer on http://127.0.0.1:{port}/ (read-only" in err
    assert asyncio.run(_status(url, trip)) == "active"


async def _status(url: str, session_id: str) -> str:
    store = DatabaseSessionStore(url)
    await store.initialize()
    try:
        record = await store.load_record(session_id)
        assert record is not None
        return record.state.status.value
    finally:
        await store.close()


def test_an_unreachable_store_fails_before_serving() -> None:
    port = _free_port()  # nothing listens there
    code, err = _run("--database-url", f"postgresql+asyncpg://postgres@127.0.0.1:{port}/test",
                     "explore", "--port", str(_free_port()))
    assert code == 1
    assert err.startswith("error: ") and "Traceback" not in err
    assert "Session explorer on" not in err


def test_a_read_only_explorer_creates_no_database(tmp_path: Path) -> None:
    """A mistyped path is refused as by the read-only commands, not made into a new store."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'typo' / 'sessions.db'}"
    code, err = _run("--database-url", url, "explore", "--port", str(_free_port()))
    assert code == 1 and "no SQLite database at" in err, err
    assert not (tmp_path / "typo").exists()
