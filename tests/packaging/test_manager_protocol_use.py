"""Outside the manager layer, a session manager is taken by its API, not by its class.

The middleware, the context, group sessions, the Agents SDK adapter, the explorer and
the CLI accept any object with the manager's API (``SessionManagerAPI``), so a wrapped,
proxied or fake manager works. This reads the source with ``ast`` and refuses, in every
module, an ``isinstance``/``issubclass`` test against ``SessionManagerImpl``, and, outside
``manager/``, a parameter annotated with it. Building one (``SessionManagerImpl(store,
config)``, ``.open(config)``) and binding it in the container stay allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .test_import_direction import component, dotted, modules

CONCRETE = "SessionManagerImpl"


def _names(node: ast.AST | None) -> set[str]:
    """Every name an expression (or a string annotation) mentions."""
    if node is None:
        return set()
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            node = ast.parse(node.value, mode="eval")
        except SyntaxError:
            return set()
    found: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            found.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            found.add(sub.attr)
        elif isinstance(sub, ast.Constant) and isinstance(sub.value, str) and sub is not node:
            found |= _names(sub)
    return found


def misuses(source: str, *, manager_layer: bool) -> list[str]:
    """Where ``source`` tests for the concrete class or (outside the layer) requires it."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("isinstance", "issubclass")
            and len(node.args) == 2
            and CONCRETE in _names(node.args[1])
        ):
            found.append(f"line {node.lineno}: {node.func.id}(..., {CONCRETE})")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not manager_layer:
            params = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
            params += [a for a in (node.args.vararg, node.args.kwarg) if a is not None]
            found += [
                f"line {arg.lineno}: parameter {arg.arg!r} of {node.name}() is a {CONCRETE}"
                for arg in params
                if CONCRETE in _names(arg.annotation)
            ]
    return found


@pytest.mark.parametrize("path", modules(), ids=dotted)
def test_no_module_requires_the_concrete_manager(path: Path) -> None:
    layer = component(dotted(path))
    wrong = misuses(path.read_text(encoding="utf-8"), manager_layer=layer == "manager")
    assert not wrong, f"{dotted(path)} (take a SessionManagerAPI):\n" + "\n".join(wrong)


def test_the_checker_finds_both_kinds() -> None:
    probe = (
        "def f(m: SessionManagerImpl, *, n: 'SessionManagerImpl | None' = None) -> None:\n"
        "    if isinstance(m, (core.SessionManagerImpl, int)):\n"
        "        pass\n"
        "def g(m: SessionManagerAPI) -> SessionManagerImpl:\n"
        "    return SessionManagerImpl(m.store)\n"
    )
    assert misuses(probe, manager_layer=False) == [
        "line 1: parameter 'm' of f() is a SessionManagerImpl",
        "line 1: parameter 'n' of f() is a SessionManagerImpl",
        "line 2: isinstance(..., SessionManagerImpl)",
    ]
    assert misuses(probe, manager_layer=True) == ["line 2: isinstance(..., SessionManagerImpl)"]
