"""``examples/time_travel.py`` runs and prints the timeline it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "time_travel.py"


def test_the_time_travel_example_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "backend: sql" in out  # SQLite through the SQL store
    assert "restored to turn 20                turns=20 " in out
    assert "parent after AppendMerge           turns=24 " in out
    assert "parent after SelectiveMerge        turns=25 " in out
    assert "branches of the session: ['night-train', 'ideas']" in out
