"""The built distributions: the sdist is complete, and user code type-checks against the wheel.

The fixture builds an sdist of the working tree with setuptools' own build backend (in a
throw-away build environment, as ``python -m build`` does), builds the wheel from that
sdist, and installs the wheel in a new virtual environment outside the repository. The
dependencies come from the test environment's ``site-packages``, added with a ``.pth``
line: a directory added that way has its own ``.pth`` files ignored, so the test
environment's editable install of this project is invisible, and ``lexigram.ai.session``
resolves to the wheel only (checked).

``mypy --strict`` then runs, with no project configuration and outside the repository,
on the README's Python blocks and on ``examples/``, as a user's code would be checked.
Building needs the package index (``setuptools>=77`` for the build environment).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.packaging.readme import code_blocks

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Built:
    """The distributions built from the working tree and the venv holding the wheel."""

    sdist: Path
    wheel: Path
    python: Path
    work: Path


def _run(args: list[str | Path], cwd: Path, timeout: float = 300) -> str:
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


_SKIP_DIRS = {".git", ".venv", "venv", "build", "dist", "__pycache__", ".hypothesis"}
_SKIP_SUFFIXES = (".egg-info", ".pyc", ".db", ".sqlite3", "_cache")


def _project_files() -> list[str]:
    """The project's files: what git would commit, or (no checkout) the tree minus junk."""
    if (REPO / ".git").exists():
        out = _run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], REPO)
        return [line for line in out.splitlines() if (REPO / line).is_file()]
    found = []
    for path in REPO.rglob("*"):
        parts = path.relative_to(REPO).parts
        if any(p in _SKIP_DIRS or p.endswith(_SKIP_SUFFIXES) for p in parts):
            continue
        if path.is_file():
            found.append(path.relative_to(REPO).as_posix())
    return sorted(found)


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _purelib(python: Path, cwd: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(_run([python, "-c", code], cwd).strip())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    work = tmp_path_factory.mktemp("dist")
    tree = work / "tree"
    for name in _project_files():
        target = tree / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)

    build_env = work / "build-env"
    _run([sys.executable, "-m", "venv", build_env], work)
    build_python = _venv_python(build_env)
    _run([build_python, "-m", "pip", "install", "-q", "setuptools>=77"], work)
    out = work / "out"
    build_sdist = f"import setuptools.build_meta as b; print(b.build_sdist({str(out)!r}))"
    sdist = out / _run([build_python, "-c", build_sdist], tree).strip().splitlines()[-1]
    with tarfile.open(sdist) as archive:
        archive.extractall(work / "unpacked", filter="data")
    unpacked = work / "unpacked" / sdist.name.removesuffix(".tar.gz")
    build_wheel = f"import setuptools.build_meta as b; print(b.build_wheel({str(out)!r}))"
    wheel = out / _run([build_python, "-c", build_wheel], unpacked).strip().splitlines()[-1]

    venv = work / "user-env"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], work)
    python = _venv_python(venv)
    pip: list[str | Path] = [sys.executable, "-m", "pip", "--python", python]
    _run([*pip, "install", "-q", "--no-deps", wheel], work)
    # The dependencies: the test environment's site-packages, without its .pth files.
    deps = Path(sysconfig.get_paths()["purelib"])
    (_purelib(python, work) / "test-environment-deps.pth").write_text(f"{deps}\n")
    return Built(sdist=sdist, wheel=wheel, python=python, work=work)


def test_sdist_holds_sources_tests_docs_and_examples(built: Built) -> None:
    with tarfile.open(built.sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    for name in _project_files():
        if name.startswith(("src/", "tests/", "docs/", "examples/", "benchmarks/")):
            assert name in names, f"{name} is missing from the sdist"
    for name in ("README.md", "LICENSE", "CHANGELOG.md", "pyproject.toml", ".ci/run"):
        assert name in names
    assert "src/lexigram/ai/session/py.typed" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".db"))]


def test_wheel_holds_the_package_and_its_metadata(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as archive:
        names = set(archive.namelist())
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        text = archive.read(metadata).decode()
    assert "lexigram/ai/session/py.typed" in names
    assert "lexigram/ai/session/__init__.py" in names
    # The Redis store's Lua sources are package data.
    assert "lexigram/ai/session/stores/redis/lua/append.lua" in names
    assert "lexigram/ai/session/stores/redis/lua/session_prelude.lua" in names
    assert not [n for n in names if n.startswith(("lexigram/__init__", "tests/"))]
    for label in ("Homepage", "Documentation", "Repository", "Issues"):
        assert f"Project-URL: {label}, https://github.com/lexigram/lexigram-ai-session" in text


def test_the_user_environment_imports_the_wheel(built: Built) -> None:
    code = "import lexigram.ai.session as s; print(s.__file__)"
    location = Path(_run([built.python, "-c", code], built.work).strip().splitlines()[-1])
    assert location.is_relative_to(built.python.parent.parent)  # the wheel, not src/


def _mypy(built: Built, folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file=",  # no project configuration: what a user gets
            "--python-executable",
            str(built.python),
            "--cache-dir",
            str(built.work / "mypy-cache"),
            "--no-error-summary",
            ".",
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_mypy_strict_accepts_the_readme_and_the_examples(built: Built) -> None:
    user = built.work / "user-code"
    user.mkdir()
    blocks = code_blocks()
    assert len(blocks) >= 2
    for i, block in enumerate(blocks, 1):
        (user / f"readme_block_{i}.py").write_text(block, encoding="utf-8")
    examples = sorted((REPO / "examples").glob("*.py"))
    assert examples
    for example in examples:
        shutil.copy2(example, user / f"example_{example.name}")
    result = _mypy(built, user)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_mypy_sees_every_export_typed(built: Built) -> None:
    """A misspelt name is an error, and the exports are real types, never ``Any``."""
    probe = built.work / "probe"
    probe.mkdir()
    (probe / "probe.py").write_text(
        "import lexigram.ai.session as s\n"
        "from lexigram.ai.session import CacheSessionStore, SessionModule, SessionMiddleware\n"
        "from lexigram.ai.session.context import SessionContext\n"
        "from lexigram.ai.session.middleware import CookieCodec\n"
        "reveal_type(SessionModule)\n"
        "reveal_type(SessionMiddleware)\n"
        "reveal_type(SessionContext)\n"
        "reveal_type(CookieCodec)\n"
        "reveal_type(CacheSessionStore)\n"
        "s.NotAName\n",
        encoding="utf-8",
    )
    result = _mypy(built, probe)
    lines = result.stdout.splitlines()
    revealed = [line for line in lines if "Revealed type" in line]
    assert len(revealed) == 5, result.stdout
    for line, owner in zip(
        revealed,
        (
            "lexigram.ai.session.module.SessionModule",
            "lexigram.ai.session.middleware.session_middleware.SessionMiddleware",
            "lexigram.ai.session.context.session_context.SessionContext",
            "lexigram.ai.session.middleware.cookies.CookieCodec",
            "lexigram.ai.session.stores.redis.store.CacheSessionStore",
        ),
        strict=True,
    ):
        assert line.endswith(f'-> {owner}"'), line
    errors = [line for line in lines if ": error:" in line]
    assert len(errors) == 1, result.stdout
    assert 'has no attribute "NotAName"' in errors[0]
