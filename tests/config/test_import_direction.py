"""The configuration is core: it imports no store (stores register their names with it)."""

from __future__ import annotations

import ast
from pathlib import Path

from .support import run_python

CORE_CONFIG = (
    "lexigram.ai.session.config",
    "lexigram.ai.session.config_urls",
    "lexigram.ai.session.redaction",
    "lexigram.ai.session.backends",
    "lexigram.ai.session.encryption.keyring",
    "lexigram.ai.session.validation",
    "lexigram.ai.session.exceptions",
)


SRC = Path(__file__).resolve().parents[2] / "src"


def _session_imports(module: str) -> set[str]:
    """The ``lexigram.ai.session`` modules ``module`` imports (anywhere in its code)."""
    path = SRC / (module.replace(".", "/") + ".py")
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("lexigram.ai.session")}


def test_config_imports_only_core_modules() -> None:
    for module in CORE_CONFIG:
        assert _session_imports(module) <= set(CORE_CONFIG), module


def test_the_store_registry_registers_names_with_the_config() -> None:
    assert "lexigram.ai.session.config" in _session_imports("lexigram.ai.session.stores.registry")


def test_registering_a_backend_makes_its_name_valid(tmp_path: Path) -> None:
    code = """
    from lexigram.ai.session.config import SessionConfig, known_backends
    from lexigram.ai.session.stores.registry import register_backend, registered_backends
    from lexigram.ai.session.stores.in_memory import InMemorySessionStore
    register_backend("dynamo_like", lambda config: InMemorySessionStore())
    print(SessionConfig(backend="dynamo_like").backend, known_backends() == registered_backends())
    """
    result = run_python(code, cwd=tmp_path)
    assert result.stdout.splitlines()[-1] == "dynamo_like True", result.stderr
