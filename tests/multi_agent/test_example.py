"""``examples/group_chat.py`` runs offline on SQLite and prints the transcript."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_group_chat_example_runs_offline(tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no API keys, no proxies
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "group_chat.py"), str(db)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("[user] Write a one-line tagline")
    assert [line.split(":")[0] for line in lines[1:7]] == [
        "[round 1] writer",
        "[round 1] critic",
        "[round 1] editor",
        "[round 2] writer",
        "[round 2] critic",
        "[round 2] editor",
    ]
    assert "Run finished: stop word 'APPROVED' said by 'editor'" in done.stdout
    assert "7 turns, 66 tokens" in done.stdout
    assert db.stat().st_size > 0
