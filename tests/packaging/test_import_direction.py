"""The package's imports point one way: from the integrations down to the core.

Layers, lowest first (a module may import its own layer and the layers below it)::

    0 core          config, exceptions, types, validation, events, hooks, observability, ...
    1 stores        stores
    2 manager       manager
    3 features      checkpointing, branching, multi_agent, context, analytics
    4 integrations  middleware, cli, integrations, di, module, testing, explorer

Every import of a ``lexigram.ai.session`` module counts, wherever it is written: at
module level, under ``if TYPE_CHECKING:`` (a lower layer's signatures must not name a
higher layer's types either) and inside functions (a lazy import is still a
dependency). The package root ``lexigram/ai/session/__init__.py`` re-exports the public
names and sits above every layer; no module of the package imports it.

Between modules (within a part too) there is no cycle of imports made when a module
loads, counting those under ``if TYPE_CHECKING:`` (a cycle a type checker follows is
still two modules that cannot be read one without the other); an import inside a
function is left out there, as it runs once both modules are loaded.

The source is read with ``ast``; nothing is imported.
"""

from __future__ import annotations

import ast
import graphlib
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = "lexigram.ai.session"
SRC = Path(__file__).resolve().parents[2] / "src"
ROOT = SRC / "lexigram" / "ai" / "session"

LAYERS: dict[str, int] = {
    # 0 core: no dependency on any other part of the package
    "config": 0,
    "config_urls": 0,
    "exceptions": 0,
    "types": 0,
    "validation": 0,
    "events": 0,
    "hooks": 0,
    "observability": 0,
    "redaction": 0,
    "backends": 0,
    "encryption": 0,
    # 1 stores
    "stores": 1,
    # 2 manager
    "manager": 2,
    # 3 features
    "checkpointing": 3,
    "branching": 3,
    "multi_agent": 3,
    "context": 3,
    "analytics": 3,
    # 4 integrations
    "middleware": 4,
    "cli": 4,
    "integrations": 4,
    "di": 4,
    "module": 4,
    "testing": 4,
    "explorer": 4,
}
LAYER_NAMES = ("core", "stores", "manager", "features", "integrations")

# (importing module, imported module) pairs allowed against the rule, each with its reason.
# Keep this empty: a new entry needs a reason a reviewer accepts.
ALLOWED: dict[tuple[str, str], str] = {}


def modules() -> list[Path]:
    """Every module of the package except its root ``__init__``."""
    return sorted(p for p in ROOT.rglob("*.py") if p != ROOT / "__init__.py")


def dotted(path: Path) -> str:
    """The module name of a source file."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path, name: str) -> Iterator[tuple[int, str]]:
    """(line, module) for each import in module ``name`` at ``path``, relatives resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield node.lineno, module


def component(module: str) -> str | None:
    """The first name under the package (``stores`` for ``...session.stores.base``)."""
    if module == PACKAGE:
        return ""
    if not module.startswith(PACKAGE + "."):
        return None
    return module[len(PACKAGE) + 1 :].split(".")[0]


def test_every_part_of_the_package_has_a_layer() -> None:
    parts = {str(component(dotted(p))) for p in modules()}
    unknown = sorted(p for p in parts if p not in LAYERS)
    assert not unknown, f"give these a layer in LAYERS: {unknown}"
    assert len(modules()) > 50  # the source tree was found


def violations(path: Path, source: str) -> list[str]:
    """The imports of module ``source`` (file ``path``) that break the layering."""
    own = component(source)
    assert own is not None and own in LAYERS, source
    wrong: list[str] = []
    for line, target in imported(path, source):
        other = component(target)
        if other is None or other == own:
            continue
        if other == "":
            wrong.append(f"line {line}: imports the package root {PACKAGE} (a cycle)")
        elif other not in LAYERS:
            wrong.append(f"line {line}: {target} is not part of any layer")
        elif LAYERS[other] > LAYERS[own] and (source, target) not in ALLOWED:
            wrong.append(
                f"line {line}: {LAYER_NAMES[LAYERS[own]]} module imports "
                f"{LAYER_NAMES[LAYERS[other]]} module {target}"
            )
    return wrong


@pytest.mark.parametrize("path", modules(), ids=dotted)
def test_imports_point_down(path: Path) -> None:
    wrong = violations(path, dotted(path))
    assert not wrong, f"{dotted(path)}:\n" + "\n".join(wrong)


def test_the_checker_sees_type_checking_and_lazy_imports(tmp_path: Path) -> None:
    """A manager module naming a feature type for a checker, and a lazy import: both found."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "from lexigram.ai.session.stores.base import SessionStore\n"
        "from . import state_machine\n"
        "if TYPE_CHECKING:\n"
        "    from lexigram.ai.session.checkpointing import StateDiff\n"
        "def f() -> None:\n"
        "    from ..middleware import SessionMiddleware\n"
        "    import lexigram.ai.session\n",
        encoding="utf-8",
    )
    wrong = violations(probe, f"{PACKAGE}.manager.probe")
    assert wrong == [
        f"line 5: manager module imports features module {PACKAGE}.checkpointing",
        f"line 7: manager module imports integrations module {PACKAGE}.middleware",
        f"line 8: imports the package root {PACKAGE} (a cycle)",
    ]


def test_no_cycle_between_parts() -> None:
    """Within a layer too, the parts (``config``, ``exceptions``, ``branching``, ...) form no
    cycle: a cycle can fail at import time depending on which part is imported first."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in modules():
        source = component(dotted(path))
        assert source is not None
        graph[source]
        for _, target in imported(path, dotted(path)):
            other = component(target)
            if other and other != source:
                graph[source].add(other)
    try:
        order = list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle between parts of the package: {exc.args[1]}")
    assert order.index("exceptions") < order.index("manager") < order.index("middleware")


def load_time_imports(path: Path, name: str, known: set[str]) -> Iterator[tuple[int, str]]:
    """(line, module) for the package modules ``name`` imports when it loads (module level
    and ``if TYPE_CHECKING:``, not inside functions); ``from pkg import mod`` counts as
    importing ``pkg.mod``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(body: list[ast.stmt]) -> Iterator[tuple[int, str]]:
        for node in body:
            if isinstance(node, ast.Import):
                yield from ((node.lineno, alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    module = ".".join([*base, node.module] if node.module else base)
                else:
                    module = node.module or ""
                for alias in node.names:
                    sub = f"{module}.{alias.name}"
                    yield node.lineno, sub if sub in known else module
            elif isinstance(node, ast.If | ast.Try | ast.With):
                nested = [*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", [])]
                for handler in getattr(node, "handlers", []):
                    nested += handler.body
                yield from visit(nested)
            elif isinstance(node, ast.ClassDef):
                yield from visit(node.body)

    yield from visit(ast.parse(path.read_text(encoding="utf-8")).body)


def module_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles of ``graph`` (strongly connected groups of two or more modules)."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        return [list(exc.args[1])]
    return []


def test_no_cycle_between_modules() -> None:
    """No two modules need each other to load (or to be type-checked): a cycle through
    ``if TYPE_CHECKING:`` counts, an import inside a function does not."""
    known = {dotted(p) for p in modules()}
    graph: dict[str, set[str]] = {}
    for path in modules():
        name = dotted(path)
        graph[name] = {
            target
            for _, target in load_time_imports(path, name, known)
            if target in known and target != name
        }
    cycles = module_cycles(graph)
    # graphlib lists each module before the one importing it: reversed, each imports the next.
    assert not cycles, "import cycle: " + " imports ".join(reversed(cycles[0]))


def test_the_module_check_sees_a_cycle_through_type_checking(tmp_path: Path) -> None:
    """Two modules importing each other, one of them only for the type checker: a cycle;
    the same import inside a function: none."""
    first, second = tmp_path / "first.py", tmp_path / "second.py"
    first.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from lexigram.ai.session.stores.sql.second import Thing\n",
        encoding="utf-8",
    )
    second.write_text("from lexigram.ai.session.stores.sql import first\n", encoding="utf-8")
    names = {f"{PACKAGE}.stores.sql.first": first, f"{PACKAGE}.stores.sql.second": second}
    known = set(names)

    def graph() -> dict[str, set[str]]:
        return {
            name: {t for _, t in load_time_imports(path, name, known) if t in known}
            for name, path in names.items()
        }

    assert sorted(module_cycles(graph())[0][:2]) == sorted(names)
    first.write_text(
        "def f() -> None:\n    from lexigram.ai.session.stores.sql.second import Thing\n",
        encoding="utf-8",
    )
    assert module_cycles(graph()) == []
