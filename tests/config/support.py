"""Running a snippet in a fresh interpreter, optionally with some modules made missing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

SECRET = "hunter2-Zq81"
"""The password every redaction test puts in its URLs."""

_BLOCKER = '''
import os, sys
_blocked = {m for m in os.environ.get("TEST_BLOCK_MODULES", "").split(",") if m}
class _Blocker:
    """Makes the listed top-level modules look not installed."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in _blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Blocker())
'''


def run_python(
    code: str,
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
    block: tuple[str, ...] = (),
    args: tuple[str, ...] = (),
    module: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (or ``python -m module``) in a fresh interpreter in ``cwd``.

    The environment carries none of the caller's ``LEX_AI_SESSION__`` settings and,
    unlike the test suite, the framework's default logging. ``block`` names modules
    that a ``sitecustomize`` makes fail to import, as if not installed.
    """
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LEX_", "TEST_BLOCK"))}
    clean.update(env or {})
    if block:
        site = cwd / "_site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(_BLOCKER)
        clean["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), clean.get("PYTHONPATH")]))
        clean["TEST_BLOCK_MODULES"] = ",".join(block)
    if module:
        command = [sys.executable, "-m", module]
    else:
        command = [sys.executable, "-c", textwrap.dedent(code)]
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


BOOT = """
import asyncio
from lexigram import Application
from lexigram.ai.session import SessionModule

async def main() -> None:
    async with Application.boot(modules=[SessionModule.configure()]):
        print("booted")

asyncio.run(main())
"""
"""A script booting an application whose session config comes from the environment."""


def chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception in its ``__cause__``/``__context__`` chain."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [current.__cause__, current.__context__]
    return seen
