"""SQLite databases for the CLI tests, and a seeded one."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lexigram.ai.session import SessionConfig, SessionManagerImpl
from lexigram.ai.session.branching import BranchManager
from lexigram.ai.session.stores.database import DatabaseSessionStore


def sqlite_url(path: Path) -> str:
    """The aiosqlite URL of a database file."""
    return f"sqlite+aiosqlite:///{path}"


@dataclass
class Seeded:
    """A database with sessions of ``alice`` (and one of ``bob``)."""

    url: str
    alice: list[str]
    closed: str
    branch: str
    checkpoint: str
    bob: str


@pytest.fixture
async def seeded(tmp_path: Path) -> AsyncIterator[Seeded]:
    url = sqlite_url(tmp_path / "source.db")
    store = DatabaseSessionStore(url)
    await store.initialize()
    try:
        manager = SessionManagerImpl(
            store, SessionConfig(auto_checkpoint_interval=None, session_ttl=0)
        )
        branches = BranchManager(store, 5, notifier=manager.notifier)
        first = await manager.create("alice", {"topic": "travel"}, system_prompt="be nice")
        await manager.add_message(first.session_id, "user", "Weather in Paris?", tokens_used=5)
        await manager.add_message(
            first.session_id, "assistant", "Sunny.", tokens_used=7, cost=0.01, model="m1",
            metadata={"agent": "planner"}, tool_calls=[{"name": "weather"}],
        )
        cp = await manager.checkpoint(first.session_id, {"label": "after-weather"})
        await manager.add_message(first.session_id, "user", "And tomorrow?", tokens_used=3)
        await manager.update(first.session_id, variables={"city": "Paris"})
        branch = await branches.fork(first.session_id, "what-if")
        await manager.add_message(branch.session_id, "user", "Rain instead?")
        second = await manager.create("alice")
        await manager.add_message(second.session_id, "user", "bye")
        await manager.close(second.session_id)
        bob = await manager.create("bob")
    finally:
        await store.close()
    yield Seeded(
        url=url,
        alice=[first.session_id, branch.session_id, second.session_id],
        closed=second.session_id,
        branch=branch.session_id,
        checkpoint=cp.checkpoint_id,
        bob=bob.session_id,
    )


@pytest.fixture
def no_env_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No layered settings: run in an empty directory, without LEX_AI_SESSION__* variables."""
    monkeypatch.chdir(tmp_path)
    for key in [k for k in os.environ if k.startswith("LEX_AI_SESSION__")]:
        monkeypatch.delenv(key)


def run(*argv: str) -> tuple[int, str, str]:
    """The CLI in this process: its exit code, stdout and stderr."""
    from lexigram.ai.session.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err, setup_logging=False)
    return code, out.getvalue(), err.getvalue()
