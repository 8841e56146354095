"""Three scripted agents -- writer, critic, editor -- take turns in one SQLite session.

    python examples/group_chat.py                 # a throw-away database in a temp dir
    python examples/group_chat.py ./group_chat.db # keep the database

No network and no API key: the agents follow a script. Swap ``ScriptedAgent`` for
anything with a ``name`` and ``async execute(*, message, history)`` returning a
``lexigram.result`` Result (an LLM-backed agent, a tool runner, ...).

The run stops when the editor says APPROVED (or after four rounds, or past a token
budget), and every turn is stored with the group's turn-taking state, so a crashed
run continues with ``group.run(session_id, resume=True)``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("LEX_QUIET", "1")  # no banner
os.environ.setdefault("LEX_LOGGING__LEVEL", "WARNING")

from lexigram.logging import configure_logging

configure_logging(level="WARNING")

from lexigram.contracts.ai.session import SessionTurn  # noqa: E402
from lexigram.result import Ok, Result  # noqa: E402

from lexigram import Application  # noqa: E402
from lexigram.ai.session import SessionModule  # noqa: E402
from lexigram.ai.session.config import SessionConfig  # noqa: E402
from lexigram.ai.session.manager.core import SessionManagerImpl  # noqa: E402
from lexigram.ai.session.multi_agent import (  # noqa: E402
    AgentReply,
    GroupSessionFactory,
    StopWordTermination,
    TokenBudgetTermination,
)

BRIEF = "Write a one-line tagline for a library that gives AI agents persistent sessions."

SCRIPTS = {
    "writer": [
        "Draft: 'Sessions that remember, so your agents don't have to.'",
        "Revised: 'Every conversation, right where you left it.'",
    ],
    "critic": [
        "The draft is long and 'don't have to' is weak. Lead with picking up where you left off.",
        "Much tighter, and it says what the library does. I would ship it.",
    ],
    "editor": [
        "Not yet: let's see the revision first.",
        "APPROVED. Final tagline: 'Every conversation, right where you left it.'",
    ],
}


class ScriptedAgent:
    """Answers with the next line of its script (one token per word, for the budget)."""

    def __init__(self, name: str, lines: list[str]) -> None:
        self.name = name
        self.lines = lines
        self.calls = 0

    async def execute(
        self, *, message: str, history: Sequence[SessionTurn]
    ) -> Result[AgentReply, str]:
        line = self.lines[min(self.calls, len(self.lines) - 1)]
        self.calls += 1
        return Ok(AgentReply(line, tokens_used=len(line.split()), model="scripted"))


def print_turn(turn: SessionTurn) -> None:
    """One line of the transcript."""
    agent = turn.metadata.get("agent")
    if agent is None:
        print(f"[{turn.role}] {turn.content}")
    else:
        print(f"[round {turn.metadata['round']}] {agent:>6}: {turn.content}")


async def main(db_path: Path) -> None:
    config = SessionConfig(
        backend="sql",
        database_url=f"sqlite+aiosqlite:///{db_path}",
        auto_checkpoint_interval=None,
    )
    module = SessionModule.configure(config, enable_cleanup_scheduler=False)
    async with Application.boot(modules=[module]) as app:
        manager = await app.container.resolve(SessionManagerImpl)
        session = await manager.create("demo-user", metadata={"example": "group_chat"})

        # The factory is wired to the manager and the configured turn strategy.
        factory = await app.container.resolve(GroupSessionFactory)
        group = factory.create(
            termination=StopWordTermination("APPROVED", agents=["editor"])
            | TokenBudgetTermination(500),
        )
        for name, lines in SCRIPTS.items():
            group.add_agent(ScriptedAgent(name, lines))

        async for turn in group.stream(session.session_id, BRIEF, max_rounds=4):
            print_turn(turn)

        outcome = await group.run_state(session.session_id)
        state = await manager.get_header(session.session_id)
        assert outcome is not None and state is not None
        print(f"\nRun {outcome.status}: {outcome.reason}")
        print(
            f"Session {state.session_id}: {state.turn_count} turns, "
            f"{state.total_tokens} tokens, stored in {db_path}"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(Path(sys.argv[1]).resolve()))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(Path(tmp) / "group_chat.db"))
