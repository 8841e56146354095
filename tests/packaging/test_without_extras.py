"""With only the core dependencies (``pip install lexigram-ai-session``), the package works.

The test environment has every extra installed, so each optional dependency is hidden
in a subprocess (``sys.modules[name] = None`` makes ``import name`` raise ImportError,
as if it were not installed). Then the README's Quick start must run as copied, and every
public name must import except the ones documented to need an extra.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packaging.readme import section_block

# Top-level modules of the optional extras (pyproject.toml [project.optional-dependencies]).
OPTIONAL = (
    "redis",
    "asyncpg",
    "asyncmy",
    "starlette",
    "uvicorn",
    "opentelemetry",
    "typer",
    "agents",
    "cryptography",
    "pybase64",
)
# Public names that need an extra, with the module they cannot load without it.
NEED_AN_EXTRA = {"CacheSessionStore": "redis", "OpenAIAgentsSession": "agents"}

HIDE = "import sys\nfor _name in {names!r}:\n    sys.modules[_name] = None\n"


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if not k.startswith("LEX_")},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.mark.slow
def test_quick_start_runs_without_any_extra(tmp_path: Path) -> None:
    code = HIDE.format(names=OPTIONAL) + section_block("Quick start")
    result = _run(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == "user: Hello!\nassistant: Hello, Alice.\n2 turns, closed\n"


def test_every_public_name_without_extras_but_the_documented_ones(tmp_path: Path) -> None:
    code = HIDE.format(names=OPTIONAL) + (
        "import json\n"
        "import lexigram.ai.session as s\n"
        "failed = {}\n"
        "for name in s.__all__:\n"
        "    try:\n"
        "        getattr(s, name)\n"
        "    except ImportError as exc:\n"
        "        failed[name] = str(exc)\n"
        "print(json.dumps(failed))\n"
    )
    result = _run(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    failed = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(failed) == set(NEED_AN_EXTRA), failed
    for name, module in NEED_AN_EXTRA.items():
        assert module in failed[name]


@pytest.mark.parametrize(
    ("driver", "url", "extra"),
    [
        ("asyncmy", "mysql://root@127.0.0.1:3306/test", "mysql"),
        ("asyncpg", "postgresql://postgres@127.0.0.1:5432/test", "postgres"),
        ("aiosqlite", "sqlite+aiosqlite:///./never.db", "sql"),
    ],
)
def test_a_missing_sql_driver_is_one_line_naming_the_extra(
    tmp_path: Path, driver: str, url: str, extra: str
) -> None:
    code = HIDE.format(names=(driver,)) + (
        "from lexigram.ai.session.config import SessionConfig\n"
        "from lexigram.ai.session.stores.registry import create_store\n"
        "try:\n"
        f"    create_store(SessionConfig(database_url={url!r}))\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, str(exc).splitlines()[0])\n"
    )
    result = _run(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("ConfigurationError"), line
    assert "ai_session.database_url" in line and f"[{extra}]" in line and driver in line


@pytest.mark.parametrize(
    ("module", "extra"),
    [
        ("lexigram.ai.session.explorer", "explorer"),
        ("lexigram.ai.session.integrations.openai_agents", "openai-agents"),
    ],
)
def test_an_optional_package_without_its_extra_names_the_extra(
    tmp_path: Path, module: str, extra: str
) -> None:
    # Before: the explorer (embedded as docs/explorer.md shows) failed with a bare
    # "No module named 'starlette'".
    code = HIDE.format(names=OPTIONAL) + (
        "try:\n"
        f"    import {module}\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    result = _run(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("ImportError") and f"lexigram-ai-session[{extra}]" in line, line


@pytest.mark.parametrize(
    ("statement", "hint"),
    [
        ("from lexigram.ai.session import CacheSessionStore", "lexigram-ai-session[redis]"),
        ("from lexigram.ai.session.stores.cache import CacheSessionStore",
         "lexigram-ai-session[redis]"),
        ("from lexigram.ai.session.stores.encrypted import EncryptedSessionStore",
         "lexigram-ai-session[crypto]"),
        ("from lexigram.ai.session.testing import StoreConformanceSuite",
         "pip install pytest pytest-asyncio"),
    ],
)
def test_a_public_name_without_its_extra_names_the_install(
    tmp_path: Path, statement: str, hint: str
) -> None:
    """They failed with a bare "No module named 'redis'" ('cryptography', 'pytest'),
    where the Agents adapter and the explorer name their extra (an outside audit)."""
    code = HIDE.format(names=(*OPTIONAL, "pytest")) + (
        "try:\n"
        f"    {statement}\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    result = _run(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("ModuleNotFoundError") and hint in line, line

