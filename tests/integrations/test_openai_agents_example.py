"""``examples/openai_agents_session.py`` runs end to end on SQLite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "openai_agents_session.py"


def test_example_runs_on_sqlite_and_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "sessions.db"
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--db", str(db)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "run 1: It is sunny and 21°C in Paris." in out
    assert "run 2: You asked about the weather in Paris." in out
    assert f"stored turns of session user_123 (SQLite file {db})" in out
    for line in (
        "1.      user [message] What's the weather in Paris?",
        "3. assistant [function_call] get_weather(",
        "4.      tool [function_call_output] sunny, 21°C in Paris",
        "7. assistant [message] You asked about the weather in Paris.",
        "turn_count=7 status=active",
        "after a restart, get_items(limit=2) -> [{'content': 'What did I just ask you?'",
    ):
        assert line in out, line
    assert db.stat().st_size > 0
