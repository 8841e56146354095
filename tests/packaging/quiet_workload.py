"""Normal operations of every part of the library, with every log line printed as JSON.

Run as a script by ``test_quiet_logging.py``: the framework's logging is configured at
DEBUG with JSON output, then sessions are created, written, checkpointed, restored,
forked, merged, suspended, resumed, closed and swept (some of them expired), a group run
is interrupted and resumed, and HTTP requests go through the middleware with a forged
cookie and a session id that is not the caller's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, MutableMapping, Sequence
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from lexigram.logging import configure_logging

configure_logging(level="DEBUG", json_format=True)

from lexigram.contracts.ai.session import SessionTurn  # noqa: E402
from lexigram.result import Ok, Result  # noqa: E402

from lexigram.ai.session import (  # noqa: E402
    BranchManager,
    InMemorySessionStore,
    SessionCleanupScheduler,
    SessionConfig,
    SessionManagerImpl,
    SessionMiddleware,
)
from lexigram.ai.session.multi_agent import (  # noqa: E402
    AgentReply,
    GroupSession,
    MaxRoundsTermination,
)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Scope]]
Send = Callable[[Scope], Awaitable[None]]


class Clock:
    """A clock the workload moves forward."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class Agent:
    """Replies with a fixed line."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def execute(
        self, *, message: str, history: Sequence[SessionTurn]
    ) -> Result[AgentReply, str]:
        return Ok(AgentReply(f"{self.name} agrees", tokens_used=2))


async def manager_and_features(manager: SessionManagerImpl, clock: Clock) -> None:
    session = await manager.create("alice", metadata={"k": "v"})
    sid = session.session_id
    for i in range(5):
        await manager.add_message(sid, "user", f"message {i}", tokens_used=3)
    checkpoint = await manager.checkpoint(sid)
    await manager.add_message(sid, "assistant", "after the checkpoint")
    await manager.list_checkpoints(sid)
    await manager.restore(checkpoint.checkpoint_id)
    branches = BranchManager(manager.store, 5, notifier=manager.notifier)
    branch = await branches.fork(sid, "try")
    await manager.add_message(branch.session_id, "assistant", "on the branch")
    await branches.merge(sid, branch.session_id)
    await manager.suspend(sid)
    await manager.resume(sid)
    await manager.get_turns(sid, last=2)
    await manager.list_sessions("alice")
    await manager.close(sid)

    await manager.create("bob")  # left to expire
    clock.now += timedelta(seconds=3600)
    sweeper = SessionCleanupScheduler(manager, purge_after_s=0)
    report = await sweeper.sweep()
    assert report.expired >= 1, report


async def group_run(manager: SessionManagerImpl) -> None:
    session = await manager.create("carol")
    group = GroupSession(manager, termination=MaxRoundsTermination(2))
    group.add_agent(Agent("writer"))
    group.add_agent(Agent("critic"))
    stream = cast(AsyncGenerator[SessionTurn, None], group.stream(session.session_id, "Discuss."))
    async with aclosing(stream) as turns:
        async for turn in turns:
            if "agent" in turn.metadata:
                break  # the process stops after the first agent turn
    await group.run(session.session_id, resume=True)


async def web_requests(manager: SessionManagerImpl) -> None:
    owned = await manager.create("dave")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = SessionMiddleware(
        app,
        session_manager=manager,
        config={"cookie_secret": "s" * 40, "allow_anonymous": True},
    )
    headers = [
        [(b"cookie", b"lexigram_session=forged.value")],
        [(b"x-session-id", owned.session_id.encode())],  # dave's session, asked by erin
        [(b"x-session-id", b"no-such-session")],
    ]
    for extra in headers:
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/",
            "query_string": b"",
            "headers": extra,
            "user": "erin",
            "client": ("127.0.0.1", 1234),
        }

        async def receive() -> Scope:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Scope) -> None:
            return None

        await middleware(scope, receive, send)


async def main() -> None:
    clock = Clock()
    store = InMemorySessionStore(clock=clock)
    config = SessionConfig(session_ttl=60, auto_checkpoint_interval=2)
    manager = SessionManagerImpl(store, config)
    await manager_and_features(manager, clock)
    await group_run(manager)
    await web_requests(manager)
    print('{"event": "workload.done"}')


if __name__ == "__main__":
    asyncio.run(main())
