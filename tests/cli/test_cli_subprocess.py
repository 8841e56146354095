"""``python -m lexigram.ai.session.cli`` in a subprocess against SQLite."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lexigram.contracts.ai.session import SessionStatus

from lexigram.ai.session import SessionConfig, SessionManagerImpl
from lexigram.ai.session.stores.database import DatabaseSessionStore

from .conftest import Seeded, sqlite_url


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI; the environment carries no LEX_AI_SESSION__ setting of the caller."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LEX_AI_SESSION__")}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "lexigram.ai.session.cli", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def without_time(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "exported_at"}


def test_commands_in_a_subprocess_round_trip_an_export(seeded: Seeded, tmp_path: Path) -> None:
    fresh = sqlite_url(tmp_path / "fresh.db")
    setup = cli("--database-url", fresh, "schema-setup", cwd=tmp_path)
    assert setup.returncode == 0, setup.stderr
    assert "ai_session_" in setup.stdout and (tmp_path / "fresh.db").exists()

    listed = cli("--database-url", seeded.url, "list", "alice", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["session_id"] for r in rows] == list(reversed(seeded.alice))  # newest first

    shown = cli("--database-url", seeded.url, "show", "--json", "--", seeded.alice[0], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["header"]["variables"] == {"city": "Paris"}
    assert data["header"]["turn_count"] == 3
    assert [c["checkpoint_id"] for c in data["checkpoints"]] == [seeded.checkpoint]
    assert data["analytics"]["tools_invoked"] == ["weather"]
    assert data["analytics"]["tool_call_counts"] == {"weather": 1}
    assert [t["content"] for t in data["turns"]] == ["Weather in Paris?", "Sunny.", "And tomorrow?"]

    out = tmp_path / "alice.json"
    exported = cli(
        "--database-url", seeded.url, "export", "--user", "alice", "-o", str(out), cwd=tmp_path
    )
    assert exported.returncode == 0, exported.stderr
    assert "exported: 3/3" in exported.stderr  # progress
    doc = json.loads(out.read_bytes())
    assert sorted(s["header"]["session_id"] for s in doc["sessions"]) == sorted(seeded.alice)

    target = sqlite_url(tmp_path / "target.db")
    imported = cli("--database-url", target, "import", str(out), cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert "imported 3, replaced 0, skipped 0" in imported.stdout
    assert "imported: 3/3" in imported.stderr

    again = tmp_path / "again.json"
    re_exported = cli(
        "--database-url", target, "export", "--user", "alice", "-o", str(again), cwd=tmp_path
    )
    assert re_exported.returncode == 0, re_exported.stderr
    assert without_time(json.loads(again.read_bytes())) == without_time(doc)

    # the imported copy is a working store: a checkpoint restores, turns can be added
    async def use_copy() -> None:
        store = DatabaseSessionStore(target)
        await store.initialize()
        try:
            manager = SessionManagerImpl(store, SessionConfig(auto_checkpoint_interval=None))
            restored = await manager.restore(seeded.checkpoint)
            assert [t.content for t in restored.turns] == ["Weather in Paris?", "Sunny."]
            await manager.add_message(seeded.alice[0], "user", "new turn after import")
            branch = await manager.get_state(seeded.branch)
            assert branch is not None and branch.parent_session_id == seeded.alice[0]
            closed = await manager.get_state(seeded.closed)
            assert closed is not None and closed.status == SessionStatus.CLOSED
        finally:
            await store.close()

    asyncio.run(use_copy())


def test_sweep_in_a_subprocess_expires_idle_sessions(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "sweep.db")

    async def seed() -> None:
        store = DatabaseSessionStore(url)
        await store.initialize()
        try:
            manager = SessionManagerImpl(store, SessionConfig(session_ttl=1))
            made = [(await manager.create(f"user-{i}")).session_id for i in range(5)]
            await manager.close(made[0])
        finally:
            await store.close()

    asyncio.run(seed())
    time.sleep(1.2)
    env = {"LEX_AI_SESSION__SESSION_TTL": "1"}
    swept = cli("--database-url", url, "sweep", "--purge-after", "3600", cwd=tmp_path, env=env)
    assert swept.returncode == 0, swept.stderr
    assert "expired 4, purged 0" in swept.stdout
    assert "expire: 4" in swept.stderr  # progress
