"""A group run in its own process, for the restart test (``test_restart.py``).

    python group_worker.py start  DATABASE_URL SESSION_ID HANG_MARKER
    python group_worker.py resume DATABASE_URL SESSION_ID

``start`` runs writer/critic/editor for three rounds; the critic, on its second call,
creates HANG_MARKER and then hangs until the parent kills the process. ``resume``
continues the interrupted run with fresh agents and prints the run's final state.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("LEX_QUIET", "1")
os.environ.setdefault("LEX_LOGGING__LEVEL", "WARNING")

from lexigram.logging import configure_logging

configure_logging(level="WARNING")

from lexigram.contracts.ai.session import SessionTurn  # noqa: E402
from lexigram.result import Ok, Result  # noqa: E402

from lexigram.ai.session.config import SessionConfig  # noqa: E402
from lexigram.ai.session.manager.core import SessionManagerImpl  # noqa: E402
from lexigram.ai.session.multi_agent import GroupSession  # noqa: E402
from lexigram.ai.session.stores.registry import create_store  # noqa: E402


class Agent:
    """Answers "<name> (pid <pid>) #<n>"; may hang on one call."""

    def __init__(self, name: str, hang_on: int | None = None, marker: Path | None = None) -> None:
        self.name = name
        self.hang_on = hang_on
        self.marker = marker
        self.calls = 0

    async def execute(self, *, message: str, history: Sequence[SessionTurn]) -> Result[Any, Any]:
        self.calls += 1
        if self.calls == self.hang_on and self.marker is not None:
            self.marker.write_text(str(os.getpid()))
            await asyncio.Event().wait()  # until SIGKILL
        return Ok(f"{self.name} (pid {os.getpid()}) #{self.calls}")


async def main(mode: str, url: str, session_id: str, marker: str | None) -> None:
    config = SessionConfig(backend="database", database_url=url, auto_checkpoint_interval=None)
    store = create_store(config)
    await store.initialize()
    try:
        manager = SessionManagerImpl(store, config)
        group = GroupSession(manager)
        for name in ("writer", "critic", "editor"):
            hang = 2 if mode == "start" and name == "critic" else None
            group.add_agent(Agent(name, hang, Path(marker) if marker else None))
        if mode == "start":
            await group.run(session_id, "write a tagline", max_rounds=3)
        else:
            state = await group.run(session_id, "ignored", resume=True)
            outcome = await group.run_state(session_id)
            assert outcome is not None
            print(json.dumps({"turns": state.turn_count, "status": outcome.status}))
    finally:
        await store.close()


if __name__ == "__main__":
    marker_arg = sys.argv[4] if len(sys.argv) > 4 else None
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], marker_arg))
