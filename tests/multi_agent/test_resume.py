"""An interrupted group run resumes where it stopped, on every registered backend.

Each test interrupts a run (an agent "crashes" the process with a BaseException that
the group does not catch), then builds a *new* store instance, manager, group and
agents on the same backend namespace, as a restarted process would, and resumes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionStatus, SessionTurn
from lexigram.result import Result

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.exceptions import SessionClosedError, SessionValidationError
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.multi_agent import GroupSession, GroupTurnState
from tests.stores.backends import BackendSpec, StoreFactory, all_specs

from .conftest import ScriptedAgent, speakers

NAMES = ("writer", "critic", "editor")


class Crash(BaseException):
    """Stands for the process dying (not an agent error: it is not caught)."""


class CrashingAgent(ScriptedAgent):
    """Crashes on its ``crash_on``-th call."""

    def __init__(self, name: str, crash_on: int) -> None:
        super().__init__(name)
        self.crash_on = crash_on

    async def execute(self, *, message: str, history: Sequence[SessionTurn]) -> Result[Any, Any]:
        if len(self.calls) + 1 == self.crash_on:
            raise Crash(self.name)
        return await super().execute(message=message, history=history)


@pytest.fixture(params=[pytest.param(s, id=s.name, marks=s.marks) for s in all_specs()])
async def store_factory(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """Store instances on one test-private namespace of one backend."""
    spec: BackendSpec = request.param
    async with spec.open() as factory:
        yield factory


async def _manager(store_factory: StoreFactory) -> SessionManagerImpl:
    return SessionManagerImpl(await store_factory(), SessionConfig(auto_checkpoint_interval=None))


def _group(manager: SessionManagerImpl, crash: tuple[str, int] | None = None) -> GroupSession:
    group = GroupSession(manager)
    for name in NAMES:
        if crash and crash[0] == name:
            group.add_agent(CrashingAgent(name, crash[1]))
        else:
            group.add_agent(ScriptedAgent(name))
    return group


async def test_crashed_run_resumes_where_it_stopped(store_factory: StoreFactory) -> None:
    manager = await _manager(store_factory)
    sid = (await manager.create("alice")).session_id
    # The critic crashes on its second turn: round 2, after writer's second turn.
    with pytest.raises(Crash):
        await _group(manager, crash=("critic", 2)).run(sid, "write", max_rounds=3)
    before = await manager.get_turns(sid)
    assert speakers(before) == ["writer", "critic", "editor", "writer"]
    interrupted = GroupTurnState.from_turn(before[-1])
    assert interrupted is not None and interrupted.running
    assert (interrupted.round, interrupted.next_speaker) == (2, "critic")

    # "Restart": everything new, on the same backend namespace.
    manager2 = await _manager(store_factory)
    group2 = _group(manager2)
    state = await group2.run(sid, "ignored on resume", resume=True)
    assert speakers(state.turns) == ["writer", "critic", "editor"] * 3  # max_rounds=3 kept
    assert [t.content for t in state.turns].count("write") == 1
    assert "ignored on resume" not in [t.content for t in state.turns]
    assert [t.metadata["round"] for t in state.turns[1:]] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    infos = [GroupTurnState.from_turn(t) for t in state.turns]
    assert {i.run_id for i in infos if i} == {interrupted.run_id}
    assert infos[-1] is not None and infos[-1].status == "finished"
    # The resumed critic got the conversation so far (its newest message: writer's turn 2).
    critic = next(m.agent for m in group2.members if m.name == "critic")
    assert isinstance(critic, ScriptedAgent)
    assert critic.calls[0][0] == "writer #2"
    assert [t.content for t in critic.calls[0][1]] == [
        "write",
        "writer #1",
        "critic #1",
        "editor #1",
    ]


async def test_resume_of_a_finished_run_does_nothing(store_factory: StoreFactory) -> None:
    manager = await _manager(store_factory)
    sid = (await manager.create("alice")).session_id
    await _group(manager).run(sid, "go", max_rounds=1)
    count = (await manager.get_header(sid)).turn_count  # type: ignore[union-attr]
    group = _group(await _manager(store_factory))
    state = await group.run(sid, "go", resume=True)
    assert state.turn_count == count == 4
    assert [t async for t in group.stream(sid, "go", resume=True)] == []


async def test_resume_of_a_run_that_ended_the_session_does_nothing(
    store_factory: StoreFactory,
) -> None:
    # The same call at every process start: a run ended by the turn cap (which closed
    # the session), or a finished run on a session closed since, returns the state.
    store = await store_factory()
    capped = SessionManagerImpl(
        store, SessionConfig(auto_checkpoint_interval=None, max_turns_per_session=5)
    )
    sid = (await capped.create("alice")).session_id
    state = await _group(capped).run(sid, "go", max_rounds=3)
    assert state.status == SessionStatus.CLOSED and state.turn_count == 5
    again = await _group(capped).run(sid, "go", resume=True)
    assert again.status == SessionStatus.CLOSED and again.turn_count == 5

    manager = await _manager(store_factory)
    done = (await manager.create("alice")).session_id
    await _group(manager).run(done, "go", max_rounds=1)
    await manager.close(done)
    assert (await _group(manager).run(done, "go", resume=True)).turn_count == 4
    with pytest.raises(SessionClosedError):  # a new run on a closed session is still refused
        await _group(manager).run(done, "go")

    # An unfinished run on a closed session cannot go on: refused as before.
    stopped = (await manager.create("alice")).session_id
    with pytest.raises(Crash):
        await _group(manager, crash=("critic", 1)).run(stopped, "go", max_rounds=2)
    await manager.close(stopped)
    with pytest.raises(SessionClosedError):
        await _group(manager).run(stopped, "go", resume=True)


async def test_resume_without_a_run_starts_one_and_needs_a_message(
    store_factory: StoreFactory,
) -> None:
    manager = await _manager(store_factory)
    sid = (await manager.create("alice")).session_id
    group = _group(manager)
    with pytest.raises(SessionValidationError, match="initial_message"):
        await group.run(sid, None, resume=True)
    await manager.add_message(sid, "user", "a turn no group recorded")
    state = await group.run(sid, "go", max_rounds=1, resume=True)
    assert [t.content for t in state.turns[:2]] == ["a turn no group recorded", "go"]
    assert speakers(state.turns) == list(NAMES)


async def test_resume_max_rounds_override_and_missing_speaker(
    store_factory: StoreFactory,
) -> None:
    manager = await _manager(store_factory)
    sid = (await manager.create("alice")).session_id
    with pytest.raises(Crash):
        await _group(manager, crash=("editor", 1)).run(sid, "go", max_rounds=5)
    # A group without the next speaker cannot resume.
    partial = GroupSession(await _manager(store_factory))
    partial.add_agent(ScriptedAgent("writer"))
    with pytest.raises(SessionValidationError, match="next speaker 'editor' is not in the group"):
        await partial.run(sid, resume=True)
    # An explicit max_rounds replaces the stored budget.
    state = await _group(await _manager(store_factory)).run(sid, resume=True, max_rounds=1)
    assert speakers(state.turns) == list(NAMES)


async def test_interrupted_stream_is_resumable(store_factory: StoreFactory) -> None:
    """A consumer that stops reading (or is cancelled) leaves a resumable run."""
    manager = await _manager(store_factory)
    sid = (await manager.create("alice")).session_id
    stream = _group(manager).stream(sid, "go", max_rounds=2)
    got = [await anext(stream) for _ in range(3)]  # opening, writer, critic
    await stream.aclose()
    assert [t.content for t in got] == ["go", "writer #1", "critic #1"]
    state = await _group(await _manager(store_factory)).run(sid, resume=True)
    assert speakers(state.turns) == [*NAMES, *NAMES]
    assert all(isinstance(t.metadata.get("group"), dict) for t in state.turns)


class YieldingAgent(ScriptedAgent):
    """Lets other tasks run while it "thinks", so two runs interleave."""

    async def execute(self, *, message: str, history: Sequence[SessionTurn]) -> Result[Any, Any]:
        await asyncio.sleep(0.001)
        return await super().execute(message=message, history=history)


async def test_two_concurrent_resumes_record_each_position_once(
    store_factory: StoreFactory,
) -> None:
    manager = await _manager(store_factory)
    sid = (await manager.create("alice")).session_id
    with pytest.raises(Crash):
        await _group(manager, crash=("critic", 1)).run(sid, "go", max_rounds=2)

    groups = []
    for _ in range(2):
        group = GroupSession(await _manager(store_factory))
        for name in NAMES:
            group.add_agent(YieldingAgent(name))
        groups.append(group)
    await asyncio.gather(*(g.run(sid, resume=True) for g in groups))

    turns = await manager.get_turns(sid)
    assert speakers(turns) == [*NAMES, *NAMES]
    positions = [(t.metadata["round"], GroupTurnState.from_turn(t).step) for t in turns[1:]]  # type: ignore[union-attr]
    assert positions == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]
    # Both resumed; the loser stopped at its first refused position.
    calls = [len(a.agent.calls) for g in groups for a in g.members]  # type: ignore[attr-defined]
    assert sum(calls) > 5
