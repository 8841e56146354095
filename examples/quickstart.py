"""Quick start: create a session, add turns, print the transcript, close it.

Run: python examples/quickstart.py   (in-memory backend, no server needed)

``LEX_LOGGING__LEVEL`` is the framework's log level (default INFO, which logs every boot
step); this script sets WARNING unless the variable is set, and applies it to what is
logged at import time too. ``LEX_LOGGING__LEVEL=INFO python examples/quickstart.py``
shows the boot log.
"""

from __future__ import annotations

import asyncio
import os

os.environ.setdefault("LEX_LOGGING__LEVEL", "WARNING")

from lexigram.logging import configure_logging

configure_logging(level=os.environ["LEX_LOGGING__LEVEL"])

from lexigram.di.module import Module, module  # noqa: E402

from lexigram import Application  # noqa: E402
from lexigram.ai.session import SessionManagerAPI, SessionModule  # noqa: E402
from lexigram.ai.session.config import SessionConfig  # noqa: E402


@module(
    imports=[
        SessionModule.configure(
            SessionConfig(backend="memory"),
            enable_cleanup_scheduler=True,
        )
    ]
)
class AppModule(Module):
    pass


async def main() -> None:
    async with Application.boot(modules=[AppModule]) as app:
        manager: SessionManagerAPI = await app.container.resolve(SessionManagerAPI)
        session = await manager.create("alice", metadata={"channel": "quickstart"})
        await manager.add_message(session.session_id, "user", "What is a session?")
        await manager.add_message(
            session.session_id,
            "assistant",
            "A conversation the server remembers between requests.",
            tokens_used=12,
        )
        await manager.add_message(session.session_id, "user", "Thanks!")
        state = await manager.get_state(session.session_id)
        assert state is not None
        print(f"session {state.session_id} ({state.status.value}), {state.turn_count} turns:")
        for turn in state.turns:
            print(f"  {turn.role:>9}: {turn.content}")
        await manager.close(session.session_id)
        closed = await manager.get_state(session.session_id)
        assert closed is not None
        print(f"closed: status={closed.status.value} total_tokens={closed.total_tokens}")


if __name__ == "__main__":
    asyncio.run(main())
