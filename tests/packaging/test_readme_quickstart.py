"""The README's Quick start runs as copied and prints only its own lines."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packaging.readme import code_blocks, section_block

EXPECTED = "user: Hello!\nassistant: Hello, Alice.\n2 turns, closed\n"


def _clean_env() -> dict[str, str]:
    """The environment of a new shell: none of the test suite's LEX_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LEX_")}


@pytest.mark.slow
def test_quick_start_prints_exactly_its_output(tmp_path: Path) -> None:
    script = tmp_path / "quickstart.py"
    script.write_text(section_block("Quick start"), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,  # no application.yaml: the framework's defaults
        env=_clean_env(),
        capture_output=True,  # redirected: no terminal, as in a pipe or a log file
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == EXPECTED
    assert result.stderr == ""
    assert "\x1b[" not in result.stdout + result.stderr


def test_readme_states_the_quick_start_output() -> None:
    assert section_block("Quick start", "text") == EXPECTED


def test_every_python_block_is_a_complete_module() -> None:
    """Each block parses on its own (no top-level ``await``), so a reader can run it."""
    blocks = code_blocks()
    assert len(blocks) >= 2
    for block in blocks:
        ast.parse(block)
