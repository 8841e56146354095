"""The OpenAI Agents SDK's ``Runner.run_sync`` in worker threads over our session.

``run_sync`` keeps one event loop per thread open between runs and shuts its async
generators down after each run; several threads and the main loop run the same
session at once. Every run's items are stored exactly once, and nothing is left
open after the store closes.
"""

from __future__ import annotations

import asyncio
import threading

from agents import Agent, Runner, set_tracing_disabled
from openai.types.responses import ResponseOutputItem

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.integrations.openai_agents import OpenAIAgentsSession
from lexigram.ai.session.manager.core import SessionManagerImpl
from tests.integrations.scripted import ScriptedModel, message
from tests.loops.support import (
    DEADLINE_S,
    Backend,
    bounded,
    eventually,
    no_leaks,
    server_side_closed,
)

set_tracing_disabled(True)  # no trace export over the network

THREADS = 2
RUNS = 2


def agent(tag: str, runs: int) -> Agent:
    """An agent answering ``runs`` times with a scripted message."""
    replies: list[list[ResponseOutputItem]] = [
        [message(f"msg_{tag}_{n}", f"answer {tag} {n}")] for n in range(runs)
    ]
    return Agent(name=f"agent-{tag}", model=ScriptedModel(replies))


@bounded
async def test_run_sync_in_threads_beside_the_main_loop(backend: Backend) -> None:
    before = backend.connections()
    with no_leaks():
        store = backend.make()
        await store.initialize()
        manager = SessionManagerImpl(store, SessionConfig(auto_checkpoint_interval=0))
        session = OpenAIAgentsSession(manager, "run-sync-thread", user_id="loops-user")
        failures: list[BaseException] = []

        def worker(k: int) -> None:
            try:
                runner = agent(f"t{k}", RUNS)
                for n in range(RUNS):
                    Runner.run_sync(runner, f"question t{k} {n}", session=session)
            except BaseException as exc:
                failures.append(exc)
            finally:
                # run_sync leaves the thread's loop open for the next run; the thread
                # is done with it now (the SDK would otherwise warn it is unclosed).
                asyncio.get_event_loop_policy().get_event_loop().close()

        threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(THREADS)]
        for thread in threads:
            thread.start()
        main = agent("main", RUNS)
        for n in range(RUNS):
            await Runner.run(main, f"question main {n}", session=session)
        for thread in threads:
            await asyncio.to_thread(thread.join, DEADLINE_S)
            assert not thread.is_alive(), "Runner.run_sync is stuck"
        assert not failures, failures

        runs = (THREADS + 1) * RUNS
        items = await session.get_items()
        assert len(items) == 2 * runs  # the question and the answer of every run
        texts = sorted(str(item.get("content")) for item in items if item.get("role") == "user")
        expected = sorted(
            f"question {who} {n}"
            for who in ["main", *(f"t{k}" for k in range(THREADS))]
            for n in range(RUNS)
        )
        assert texts == expected
        state = await manager.get_state("run-sync-thread")
        assert state is not None and state.turn_count == 2 * runs
        await asyncio.wait_for(store.close(), DEADLINE_S)
        await eventually(lambda: backend.connections() <= before, "every connection closed")
        await server_side_closed(backend)
