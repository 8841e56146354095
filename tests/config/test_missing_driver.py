"""A missing optional driver is one short error with its pip install line."""

from __future__ import annotations

from pathlib import Path

import pytest

from .support import BOOT, run_python

#: (module made missing, settings, extra named in the hint)
CASES = [
    (
        "asyncpg",
        {"LEX_AI_SESSION__DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test"},
        "postgres",
    ),
    ("redis", {"LEX_AI_SESSION__REDIS_URL": "redis://127.0.0.1:6379/0"}, "redis"),
]
MAX_BOOT_LINES = 140
"""The framework prints a failed boot four times (two log lines, its banner, the
uncaught error): about 25 lines each here. Before, the import chain made it 173."""


@pytest.mark.parametrize(("module", "env", "extra"), CASES, ids=[c[0] for c in CASES])
def test_boot_names_the_extra(module: str, env: dict[str, str], extra: str, tmp_path: Path) -> None:
    result = run_python(BOOT, cwd=tmp_path, env=env, block=(module,))
    assert result.returncode != 0
    hint = f"pip install 'lexigram-ai-session[{extra}]'"
    assert hint in result.stderr
    assert "ModuleNotFoundError" not in result.stderr  # no import traceback chained
    assert len(result.stderr.splitlines()) < MAX_BOOT_LINES, result.stderr


@pytest.mark.parametrize(("module", "env", "extra"), CASES, ids=[c[0] for c in CASES])
def test_cli_names_the_extra(module: str, env: dict[str, str], extra: str, tmp_path: Path) -> None:
    option = "--database-url" if "DATABASE" in next(iter(env)) else "--redis-url"
    url = next(iter(env.values()))
    result = run_python(
        "",
        cwd=tmp_path,
        module="lexigram.ai.session.cli",
        args=(option, url, "list", "u"),
        block=(module,),
    )
    assert result.returncode == 1
    assert f"pip install 'lexigram-ai-session[{extra}]'" in result.stderr
    assert len(result.stderr.splitlines()) <= 3, result.stderr


def test_open_names_the_extra(tmp_path: Path) -> None:
    code = """
    import asyncio
    from lexigram.ai.session import SessionManager

    async def main() -> None:
        async with SessionManager.open(database_url="postgresql://postgres@127.0.0.1/test"):
            pass

    try:
        asyncio.run(main())
    except Exception as exc:
        print(type(exc).__name__, exc.__cause__, exc.__context__)
        print(exc)
    """
    result = run_python(code, cwd=tmp_path, block=("asyncpg",))
    assert "\nConfigurationError None None\n" in "\n" + result.stdout, result.stdout + result.stderr
    assert "pip install 'lexigram-ai-session[postgres]'" in result.stdout


def test_typer_commands_name_the_cli_extra(tmp_path: Path) -> None:
    code = """
    from lexigram.ai.session.cli.typer_app import create_app
    try:
        create_app()
    except ImportError as exc:
        print(exc)
    """
    result = run_python(code, cwd=tmp_path, block=("typer",))
    assert "pip install 'lexigram-ai-session[cli]'" in result.stdout, result.stderr


def test_the_session_cli_needs_no_typer(tmp_path: Path) -> None:
    result = run_python(
        "", cwd=tmp_path, module="lexigram.ai.session.cli", args=("list", "u"), block=("typer",)
    )
    assert result.returncode == 0, result.stderr


def test_the_middleware_needs_no_starlette(tmp_path: Path) -> None:
    code = """
    import asyncio
    from lexigram import Application
    from lexigram.ai.session import SessionModule
    from lexigram.ai.session.middleware import SessionMiddleware

    async def main() -> None:
        async with Application.boot(modules=[SessionModule.configure()]) as app:
            middleware = await app.container.resolve(SessionMiddleware)
            print("built", type(middleware).__name__)

    asyncio.run(main())
    """
    result = run_python(code, cwd=tmp_path, block=("starlette",))
    assert "built SessionMiddleware" in result.stdout, result.stderr


@pytest.mark.parametrize("args", [("--help",), ("schema-setup",), ("list", "u")])
def test_cli_runs_without_the_crypto_extra(args: tuple[str, ...], tmp_path: Path) -> None:
    """Every CLI command works on a plaintext store with ``cryptography`` not installed."""
    url = f"sqlite+aiosqlite:///{tmp_path / 's.db'}"
    options = () if args == ("--help",) else ("--database-url", url)
    if args == ("list", "u"):
        setup = ("--database-url", url, "schema-setup")
        made = run_python("", cwd=tmp_path, module="lexigram.ai.session.cli", args=setup)
        assert made.returncode == 0, made.stderr
    result = run_python(
        "",
        cwd=tmp_path,
        module="lexigram.ai.session.cli",
        args=(*options, *args),
        block=("cryptography", "pybase64"),
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_cli_keys_without_the_crypto_extra_names_it(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 's.db'}"
    result = run_python(
        "",
        cwd=tmp_path,
        module="lexigram.ai.session.cli",
        args=("--database-url", url, "keys", "status"),
        env={"LEX_AI_SESSION__ENCRYPTION_KEYS": "k1:" + "A" * 43 + "="},
        block=("cryptography",),
    )
    assert result.returncode == 1
    assert "pip install 'lexigram-ai-session[crypto]'" in result.stderr
    assert "Traceback" not in result.stderr
