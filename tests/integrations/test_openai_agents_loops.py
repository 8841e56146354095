"""The adapter driven from event loops other than the one its manager was built on.

What sync code does with the SDK: ``Runner.run_sync`` in a worker thread (Django sync
views, Celery tasks), ``asyncio.run`` in several threads at once (scripts, notebooks),
each loop closed afterwards. Every test runs on every backend, checks that each
acknowledged write is stored exactly once, and bounds every thread: a thread still
running after ``HANG_S`` fails the test as a hang instead of blocking the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

import pytest
from agents import Runner

from lexigram.ai.session.integrations.openai_agents import OpenAIAgentsSession

from .conftest import MakeManager
from .scripted import ScriptedModel, weather_agent, weather_script

HANG_S = 60.0


async def _in_threads(*jobs: Callable[[], Any]) -> list[Any]:
    """Run each job in its own daemon thread, all at once; their results in order.

    The calling loop keeps running meanwhile (it polls), so a store that needs it
    is not starved. A job's exception is re-raised here; a job still running after
    ``HANG_S`` fails the test.
    """
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))
    loop = asyncio.get_running_loop()
    all_done = asyncio.Event()
    remaining = [len(jobs)]
    guard = threading.Lock()

    def body(index: int, job: Callable[[], Any]) -> None:
        try:
            start.wait(timeout=HANG_S)
            results[index] = job()
        except BaseException as exc:  # re-raised in the test
            errors.append(exc)
        finally:
            with guard:
                remaining[0] -= 1
                if remaining[0] == 0:
                    loop.call_soon_threadsafe(all_done.set)

    threads = [
        threading.Thread(target=body, args=(i, job), daemon=True, name=f"loop-test-{i}")
        for i, job in enumerate(jobs)
    ]
    for thread in threads:
        thread.start()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_done.wait(), HANG_S)
    hung = [t.name for t in threads if t.is_alive() and not all_done.is_set()]
    assert not hung, f"threads still running after {HANG_S}s (hang): {hung}"
    for thread in threads:
        thread.join(HANG_S)
    if errors:
        raise errors[0]
    return results


def _message(n: int, who: str) -> dict[str, Any]:
    return {"role": "user", "content": f"{who}:{n}"}


@pytest.mark.parametrize("loop_end", ["shutdown_then_close", "close_only"])
async def test_runner_run_sync_in_worker_threads(make_manager: MakeManager, loop_end: str) -> None:
    manager = await make_manager()
    session = await OpenAIAgentsSession.create(manager, user_id="alice")
    model = ScriptedModel(weather_script())
    agent = weather_agent(model)

    def run(text: str) -> Callable[[], Any]:
        def job() -> Any:
            try:
                return Runner.run_sync(agent, text, session=session)
            finally:
                # run_sync leaves the thread's default loop open; close it at the
                # thread's end, fully (as asyncio.run does) or with close() alone.
                loop = asyncio.get_event_loop_policy().get_event_loop()
                if loop_end == "shutdown_then_close":
                    loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        return job

    # Run 1 in one worker thread, run 2 in another: two loops, neither the manager's.
    (first,) = await _in_threads(run("Weather in Paris?"))
    (second,) = await _in_threads(run("What did I ask?"))
    assert first.final_output == "It is sunny in Paris."
    assert second.final_output == "You asked about the weather in Paris."
    # Run 2 read run 1's history through the session, from its own loop.
    seen = model.inputs[2]
    assert isinstance(seen, list) and seen[0] == {"role": "user", "content": "Weather in Paris?"}

    items = await session.get_items()  # back on the manager's loop
    kinds = [i.get("type", "message") for i in items]
    assert kinds == [
        "message", "reasoning", "function_call", "function_call_output",
        "message", "message", "message",
    ]
    assert items[0] == {"role": "user", "content": "Weather in Paris?"}
    assert items[5] == {"role": "user", "content": "What did I ask?"}
    header = await manager.get_header(session.session_id)
    assert header is not None and header.turn_count == 7


async def test_asyncio_run_in_several_threads_at_once(make_manager: MakeManager) -> None:
    manager = await make_manager()
    session = await OpenAIAgentsSession.create(manager, user_id="alice")
    threads, writes = 4, 5

    async def writer(who: str) -> list[list[dict[str, Any]]]:
        acknowledged = []
        for n in range(writes):
            batch = [_message(n, who), {"role": "assistant", "content": f"{who}:{n}"}]
            await session.add_items(batch)
            acknowledged.append(batch)
            newest = await session.get_items(limit=2)
            assert len(newest) == 2
        return acknowledged

    def job(who: str) -> Callable[[], Any]:
        return lambda: asyncio.run(writer(who))

    # The manager's own loop writes too, while the threads do.
    main_writes = asyncio.ensure_future(writer("main"))
    acknowledged = await _in_threads(*(job(f"t{k}") for k in range(threads)))
    acknowledged.append(await main_writes)

    items = await session.get_items()
    expected = [item for batches in acknowledged for batch in batches for item in batch]
    assert len(items) == len(expected) == (threads + 1) * writes * 2
    assert sorted(map(repr, items)) == sorted(map(repr, expected))  # each exactly once
    for user, reply in zip(items[::2], items[1::2], strict=True):  # batches stay whole
        assert (user["role"], reply["role"]) == ("user", "assistant")
        assert user["content"] == reply["content"]
    header = await manager.get_header(session.session_id)
    assert header is not None and header.turn_count == len(expected)


async def test_first_use_from_several_loops_creates_one_session(
    make_manager: MakeManager,
) -> None:
    manager = await make_manager()
    session = OpenAIAgentsSession(manager, "thread-from-loops", user_id="alice")

    def job(k: int) -> Callable[[], Any]:
        return lambda: asyncio.run(session.add_items([_message(k, "first")]))

    await _in_threads(*(job(k) for k in range(4)))
    items = await session.get_items()
    assert sorted(i["content"] for i in items) == [f"first:{k}" for k in range(4)]
    page = await manager.list_sessions("alice")
    assert [s.session_id for s in page.items] == ["thread-from-loops"]


async def test_closed_loops_leave_the_session_usable(make_manager: MakeManager) -> None:
    """A thread runs loop after loop (each closed by asyncio.run); all keep working."""
    manager = await make_manager()
    session = await OpenAIAgentsSession.create(manager, user_id="alice")

    def sequence() -> list[Any]:
        seen = []
        for n in range(3):  # three loops, one after the other, each closed at its end
            asyncio.run(session.add_items([_message(n, "seq")]))
            seen.append(asyncio.run(session.get_items(limit=1)))
        seen.append(asyncio.run(session.pop_item()))
        return seen

    (seen,) = await _in_threads(sequence)
    assert seen == [
        [_message(0, "seq")], [_message(1, "seq")], [_message(2, "seq")], _message(2, "seq")
    ]
    # The manager's loop still works after those loops closed, and sees the same data.
    await session.add_items([_message(9, "main")])
    expected = [_message(0, "seq"), _message(1, "seq"), _message(9, "main")]
    assert await session.get_items() == expected
    (again,) = await _in_threads(lambda: asyncio.run(session.get_items()))
    assert again == expected
    await session.clear_session()
    assert await session.get_items() == []
