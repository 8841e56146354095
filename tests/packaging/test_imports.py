"""Every public name imports first, in a fresh interpreter, whatever is imported before.

``fresh_import.py`` checks each package and each name of each ``__all__`` in a process
that has imported nothing of this package (see its docstring); these tests run it and
also run the statements a new user types first in brand-new interpreters.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.packaging.fresh_import import packages

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"

# Names whose module imports an optional dependency, so the package loads them on first
# use. Anything else must be bound by the package's own import statements.
EXPECTED_LAZY = {
    "lexigram.ai.session.CacheSessionStore",
    "lexigram.ai.session.DatabaseSessionStore",
    "lexigram.ai.session.OpenAIAgentsSession",
    "lexigram.ai.session.SessionModule",
    "lexigram.ai.session.stores.CacheSessionStore",
    "lexigram.ai.session.stores.DatabaseSessionStore",
    "lexigram.ai.session.stores.encrypted.DEFAULT_KEY_CACHE",
    "lexigram.ai.session.stores.encrypted.EncryptedSessionStore",
}


@pytest.mark.slow
def test_each_public_name_imports_in_a_fresh_interpreter() -> None:
    result = subprocess.run(
        [sys.executable, str(HERE / "fresh_import.py")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.stdout.strip(), result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "error" not in report, report
    failures = "\n\n".join(f"{label}:\n{error}" for label, error in report["failures"].items())
    assert not report["failures"], failures
    assert result.returncode == 0, result.stderr
    checked = set(report["checked"])
    for package in packages():
        assert f"import {package} (and each of its eagerly bound names)" in checked
    assert set(report["lazy"]) == EXPECTED_LAZY
    for lazy in EXPECTED_LAZY:
        package, name = lazy.rsplit(".", 1)
        assert f"from {package} import {name}" in checked
    assert len(packages()) >= 16  # the source tree was found


@pytest.mark.parametrize(
    "statement",
    [
        "from lexigram.ai.session import CheckpointManager",
        "from lexigram.ai.session import StateDiff",
        "import lexigram.ai.session.checkpointing",
        "from lexigram.ai.session.checkpointing import CheckpointManager",
        "import lexigram.ai.session.manager",
    ],
)
def test_first_statement_in_a_new_interpreter(statement: str) -> None:
    code = f"{statement}\nprint('imported')"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "imported"


def _literal_all(path: Path) -> list[str] | None:
    """The ``__all__`` of a module when it is a literal list of strings, else None."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        target: ast.expr | None = None
        value: ast.expr | None = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and target.id == "__all__":
            if not isinstance(value, ast.List):
                return None
            names = [
                e.value
                for e in value.elts
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
            ]
            return names if len(names) == len(value.elts) else None
    return None


@pytest.mark.parametrize("package", packages())
def test_export_list_is_a_literal(package: str) -> None:
    """Type checkers read ``__all__`` only when it is a literal list of names."""
    init = SRC.joinpath(*package.split("."), "__init__.py")
    exported = _literal_all(init)
    assert exported is not None, f"{init}: __all__ must be a literal list of strings"
    assert len(exported) == len(set(exported)), f"{init}: a name is listed twice"
    module = __import__(package, fromlist=["__all__"])
    assert list(module.__all__) == exported


def test_version_matches_the_distribution() -> None:
    import importlib.metadata

    import lexigram.ai.session

    assert lexigram.ai.session.__version__ == importlib.metadata.version("lexigram-ai-session")


def test_every_error_is_exported_by_the_root() -> None:
    """Users catch the library's errors from ``lexigram.ai.session`` directly."""
    import lexigram.ai.session
    import lexigram.ai.session.exceptions as errors

    missing = sorted(set(errors.__all__) - set(lexigram.ai.session.__all__))
    assert not missing
    for name in errors.__all__:
        assert getattr(lexigram.ai.session, name) is getattr(errors, name)


def test_importing_the_package_and_its_cli_prints_nothing() -> None:
    """Importing never writes to stdout (the CLI's --json output depends on it)."""
    import subprocess
    import sys

    code = "import lexigram.ai.session, lexigram.ai.session.cli, lexigram.ai.session.stores"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout == ""


def test_the_cli_is_installed_as_a_console_script() -> None:
    from importlib.metadata import entry_points

    from lexigram.ai.session.cli.main import SCRIPT_NAME, main

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == SCRIPT_NAME]
    assert script.load() is main
