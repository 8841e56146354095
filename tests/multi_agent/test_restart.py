"""A group run on SQLite, killed mid-run (SIGKILL), resumes in a new process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.multi_agent import GroupTurnState
from lexigram.ai.session.stores.registry import create_store

from .conftest import speakers

WORKER = Path(__file__).with_name("group_worker.py")
ROOT = Path(__file__).resolve().parents[2]


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _open(url: str) -> tuple[SessionManagerImpl, object]:
    config = SessionConfig(backend="database", database_url=url, auto_checkpoint_interval=None)
    store = create_store(config)
    await store.initialize()
    return SessionManagerImpl(store, config), store


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
async def test_group_run_killed_mid_run_resumes_in_a_new_process(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'group.db'}"
    manager, store = await _open(url)
    try:
        sid = (await manager.create("alice")).session_id
    finally:
        await store.close()  # type: ignore[attr-defined]

    marker = tmp_path / "hanging"
    first = _spawn("start", url, sid, str(marker))
    deadline = time.monotonic() + 60
    while not marker.exists():
        if first.poll() is not None:
            pytest.fail(f"worker exited early: {first.communicate()}")
        if time.monotonic() > deadline:
            first.kill()
            pytest.fail("worker never reached the critic's second turn")
        await asyncio.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL

    manager, store = await _open(url)
    try:
        turns = await manager.get_turns(sid)
        assert speakers(turns) == ["writer", "critic", "editor", "writer"]
        last = GroupTurnState.from_turn(turns[-1])
        assert last is not None and last.running and last.next_speaker == "critic"

        second = _spawn("resume", url, sid)
        out, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
        assert json.loads(out.strip().splitlines()[-1]) == {"turns": 10, "status": "finished"}

        turns = await manager.get_turns(sid)
        assert speakers(turns) == ["writer", "critic", "editor"] * 3
        pids = [t.content.split("(pid ")[1].split(")")[0] for t in turns[1:]]
        assert len(set(pids[:4])) == 1 and len(set(pids[4:])) == 1 and pids[0] != pids[4]
        states = [GroupTurnState.from_turn(t) for t in turns]
        assert len({s.run_id for s in states if s is not None}) == 1
        assert states[-1] is not None and states[-1].reason == "max_rounds reached (3)"
    finally:
        await store.close()  # type: ignore[attr-defined]
