"""Import each public name of lexigram-ai-session in its own fresh interpreter state.

Run as a script: ``python tests/packaging/fresh_import.py``. It prints one JSON object
``{"checked": [...], "failures": {target: traceback}}``.

The parent imports the third-party dependencies (the lexigram framework, pydantic,
structlog, ...) but nothing of ``lexigram.ai.session``; every target is then checked in
a child forked from that parent (one child per target, at most two at a time), so each
child starts with no module of this package loaded, as a new interpreter would, without
paying for the framework's import every time.

Targets: ``import <package>`` for every package under ``lexigram.ai.session`` (then
each name of its ``__all__`` that the import bound), and ``from <package> import <name>``
for each name of an ``__all__`` that is loaded on first use.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import sys
import traceback
from pathlib import Path

PACKAGE = "lexigram.ai.session"
SRC = Path(__file__).resolve().parents[2] / "src"
PRELOAD = (
    "lexigram",
    "lexigram.config",
    "lexigram.contracts.ai.session",
    "lexigram.di.module",
    "lexigram.hooks",
    "lexigram.logging",
    "orjson",
    "pydantic",
    "structlog",
    "yaml",
)
WORKERS = 2
TIMEOUT_S = 600.0


def packages() -> list[str]:
    """Every package of the library, found from the source tree."""
    root = SRC / "lexigram" / "ai" / "session"
    return sorted(
        ".".join(init.parent.relative_to(SRC).parts) for init in root.rglob("__init__.py")
    )


def _ours_loaded() -> list[str]:
    return sorted(m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + "."))


def _silence_stdout() -> None:
    # The framework prints log lines at import time; they are not the child's result.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def _import_package(package: str) -> tuple[str, str | None, list[str]]:
    """``import package`` and look up each eagerly bound name; return the lazy names."""
    label = f"import {package} (and each of its eagerly bound names)"
    if _ours_loaded():
        return label, f"not a fresh state: {_ours_loaded()} already imported", []
    _silence_stdout()
    try:
        module = importlib.import_module(package)
        exported = list(module.__all__)
        bound = vars(module)
        missing = [n for n in exported if n in bound and bound[n] is None]
        if missing:
            return label, f"names bound to None: {missing}", []
        return label, None, [n for n in exported if n not in bound]
    except BaseException:
        return label, traceback.format_exc(), []


def _import_lazy_name(target: tuple[str, str]) -> tuple[str, str | None]:
    """``from package import name`` for a name loaded on first use."""
    package, name = target
    label = f"from {package} import {name}"
    if _ours_loaded():
        return label, f"not a fresh state: {_ours_loaded()} already imported"
    _silence_stdout()
    try:
        exec(f"from {package} import {name}", {})
        return label, None
    except BaseException:
        return label, traceback.format_exc()


def main() -> int:
    """Check every target; print the JSON report; exit status 1 on a failure.

    A name bound by the package's own import statements needs no child of its own:
    ``from package import name`` in a fresh interpreter runs exactly ``import package``
    and then reads the name, which the package's child does for each of them. A name
    the package loads on first use (module ``__getattr__``) gets its own child.
    """
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))
    for module in PRELOAD:
        importlib.import_module(module)
    if _ours_loaded():
        print(json.dumps({"error": f"preloading imported {_ours_loaded()}"}))
        return 1
    context = multiprocessing.get_context("fork")
    with context.Pool(WORKERS, maxtasksperchild=1) as pool:
        first = pool.map_async(_import_package, packages(), chunksize=1).get(TIMEOUT_S)
        lazy = [
            (pkg, name)
            for pkg, (_, _, names) in zip(packages(), first, strict=True)
            for name in names
        ]
        second = pool.map_async(_import_lazy_name, lazy, chunksize=1).get(TIMEOUT_S)
    results = [(label, error) for label, error, _ in first] + second
    failures = {label: error for label, error in results if error is not None}
    report = {
        "checked": [label for label, _ in results],
        "lazy": [f"{pkg}.{name}" for pkg, name in lazy],
        "failures": failures,
    }
    print(json.dumps(report))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
