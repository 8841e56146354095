"""The library logs its normal operations at DEBUG only.

``quiet_workload.py`` runs normal operations of every part of the library with the
framework's logging at DEBUG in JSON; every line a ``lexigram.ai.session`` logger wrote
must be a DEBUG line, and the lines that used to be INFO must be there, at DEBUG.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _records(stdout: str) -> list[dict[str, Any]]:
    records = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


def test_normal_operations_log_nothing_above_debug(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEX_")}
    result = subprocess.run(
        [sys.executable, str(HERE / "quiet_workload.py")],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(HERE.parents[1])},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    records = _records(result.stdout)
    assert records and records[-1]["event"] == "workload.done"
    ours = [r for r in records if str(r.get("_logger_name", "")).startswith("lexigram.ai.session")]
    loud = [r for r in ours if r.get("level") != "debug"]
    assert not loud, json.dumps(loud, indent=1)
    events = {r["event"] for r in ours}
    # The operations that used to log at INFO ran, and were logged at DEBUG.
    assert {
        "ai_session.sweep",
        "ai_session.group.resumed",
        "ai_session.web.cookie_rejected",
        "ai_session.web.session_not_bound",
    } <= events, sorted(events)
