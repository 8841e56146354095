"""A failed boot: our error once per framework report, without the driver's traceback chain.

Measured before the change (closed port 575 lines, missing database 767 lines):
each of the framework's four reports carried the ~110-line chain of asyncpg and
SQLAlchemy frames, plus an extra ERROR line from the provider's ``on_error``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.services import require_postgres

from .support import BOOT, closed_port, run_python

#: The framework reports a failed boot four times: its ``provider.boot.failed`` and
#: ``application.start_failed`` log lines with a traceback each, its
#: ``=== APPLICATION BOOT FAILED ===`` banner, and the script's uncaught error.
FRAMEWORK_REPORTS = 4
MAX_LINES = 130


def _boot(url: str, tmp_path: Path) -> str:
    result = run_python(BOOT, cwd=tmp_path, env={"LEX_AI_SESSION__DATABASE_URL": url})
    assert result.returncode != 0
    return result.stdout + result.stderr


def _check(output: str) -> None:
    lines = output.splitlines()
    ours = [line for line in lines if line.startswith("lexigram.ai.session.exceptions.")]
    assert len(ours) == FRAMEWORK_REPORTS, output
    assert "provider_lifecycle_error" not in output  # the provider adds no copy
    assert "The above exception was the direct cause" not in output
    assert "During handling of the above exception" not in output
    assert "asyncpg" not in output.split("BOOT FAILED")[1].split("Traceback")[0]
    assert len(lines) < MAX_LINES, len(lines)


def test_server_down(tmp_path: Path) -> None:
    output = _boot(f"postgresql://postgres@127.0.0.1:{closed_port()}/test", tmp_path)
    assert "cannot connect to the session database" in output
    _check(output)


@pytest.mark.postgres
def test_database_missing(tmp_path: Path) -> None:
    require_postgres()
    output = _boot("postgresql://postgres@127.0.0.1:5432/no_such_db_for_boot_test", tmp_path)
    assert 'database "no_such_db_for_boot_test" does not exist' in output
    _check(output)


def test_the_driver_chain_is_logged_at_debug(tmp_path: Path) -> None:
    code = f"""
    import asyncio, logging
    from lexigram.ai.session import SessionManager
    from lexigram.logging import configure_logging
    configure_logging(level="DEBUG")

    async def main() -> None:
        async with SessionManager.open(database_url="postgresql://u@127.0.0.1:{closed_port()}/d"):
            pass

    try:
        asyncio.run(main())
    except Exception as exc:
        print("raised", type(exc).__name__, exc.__cause__)
    """
    result = run_python(code, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert "raised StoreUnavailableError None" in output
    assert "ai_session.store_initialize_failed" in output
    assert "ConnectionRefusedError" in output
