"""A running group sees the turns others append to its session meanwhile.

An outside audit found that a turn appended during a run (a human's ``add_message``,
another writer, another group) was never shown to any agent for the rest of that
uninterrupted run, while a resumed run of the same session did show it. Each agent
is now shown what a resumed run would show it: every stored turn before its step, in
stored order, filtered by ``visible_to`` / ``hidden_from``. On every registered
backend, like ``test_resume.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionTurn
from lexigram.result import Result

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.exceptions import SessionClosedError
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.multi_agent import (
    AgentReply,
    GroupSession,
    GroupTurnState,
    TokenBudgetTermination,
)
from tests.stores.backends import BackendSpec, StoreFactory, all_specs

from .conftest import ScriptedAgent, make_manager

HUMAN = "HUMAN: stop, use French"


class Crash(BaseException):
    """Stands for the process dying (not an agent error: it is not caught)."""


class HookedAgent(ScriptedAgent):
    """A scripted agent that runs ``hooks[n]`` during its n-th call (1-based), and
    crashes on its ``crash_on``-th call."""

    def __init__(
        self,
        name: str,
        script: Sequence[Any] = (),
        *,
        hooks: dict[int, Callable[[], Awaitable[Any]]] | None = None,
        crash_on: int | None = None,
        pause: float = 0.0,
    ) -> None:
        super().__init__(name, script)
        self.hooks = dict(hooks or {})
        self.crash_on = crash_on
        self.pause = pause

    async def execute(self, *, message: str, history: Sequence[SessionTurn]) -> Result[Any, Any]:
        n = len(self.calls) + 1
        if n == self.crash_on:
            raise Crash(self.name)
        if self.pause:
            await asyncio.sleep(self.pause)  # lets another run go on meanwhile
        result = await super().execute(message=message, history=history)
        hook = self.hooks.get(n)
        if hook is not None:
            await hook()
        return result


@pytest.fixture(params=[pytest.param(s, id=s.name, marks=s.marks) for s in all_specs()])
async def store_factory(request: pytest.FixtureRequest) -> AsyncIterator[StoreFactory]:
    """Store instances on one test-private namespace of one backend."""
    spec: BackendSpec = request.param
    async with spec.open() as factory:
        yield factory


async def _manager(store_factory: StoreFactory, **config: Any) -> SessionManagerImpl:
    settings: dict[str, Any] = {"auto_checkpoint_interval": None, **config}
    return SessionManagerImpl(await store_factory(), SessionConfig(**settings))


def _seen(agent: ScriptedAgent) -> list[tuple[str, list[str]]]:
    return [(message, [t.content for t in history]) for message, history in agent.calls]


def _contents(turns: Sequence[SessionTurn]) -> list[str]:
    return [t.content for t in turns]


def _audit_group(
    manager: SessionManagerImpl, sid: str, *, crash_b: bool = False, **kwargs: Any
) -> tuple[GroupSession, HookedAgent, HookedAgent]:
    """The audit's group: a and b, round robin; a human turn lands during a's first call."""

    async def human() -> None:
        await manager.add_message(sid, "user", HUMAN)

    a = HookedAgent("a", ["a#1", "a#2"], hooks={1: human})
    b = HookedAgent("b", ["b#1", "b#2"], crash_on=1 if crash_b else None)
    group = GroupSession(manager, **kwargs)
    group.add_agent(a)
    group.add_agent(b)
    return group, a, b


# ------------------------------------------------------------- the audit's case
async def test_a_turn_appended_during_a_run_is_seen_by_the_next_agents(
    store_factory: StoreFactory,
) -> None:
    manager = await _manager(store_factory)
    sid = (await manager.create("alice")).session_id
    group, a, b = _audit_group(manager, sid)
    await group.run(sid, "open", max_rounds=2)

    stored = await manager.get_turns(sid)
    assert _contents(stored) == ["open", HUMAN, "a#1", "b#1", "a#2", "b#2"]
    # Each agent gets every stored turn before its step, in stored order.
    assert _seen(b) == [
        ("a#1", ["open", HUMAN]),
        ("a#2", ["open", HUMAN, "a#1", "b#1"]),
    ]
    assert _seen(a) == [("open", []), ("b#1", ["open", HUMAN, "a#1"])]
    # Nothing was appended during b's calls: each saw exactly the stored turns before
    # its reply (a's first call started before the human wrote).
    replies = [i for i, t in enumerate(stored) if t.metadata.get("agent") == "b"]
    for (message, history), at in zip(b.calls, replies, strict=True):
        assert [*_contents(history), message] == _contents(stored[:at])
    # No turn twice (the run's own turns are not added again by the re-read).
    assert len({t.turn_id for t in stored}) == len(stored)

    # A resumed run of the same situation shows b the same conversation.
    manager2 = await _manager(store_factory)
    sid2 = (await manager2.create("alice")).session_id
    crashed, _, _ = _audit_group(manager2, sid2, crash_b=True)
    with pytest.raises(Crash):
        await crashed.run(sid2, "open", max_rounds=2)
    resumed, _, b2 = _audit_group(await _manager(store_factory), sid2)
    await resumed.run(sid2, resume=True)
    assert _seen(b2)[0] == _seen(b)[0] == ("a#1", ["open", HUMAN])


async def test_outside_turns_and_history_limit() -> None:
    # With history_limit, agents get the newest N stored turns, outside ones included.
    manager = make_manager()
    sid = (await manager.create("alice")).session_id
    group, a, b = _audit_group(manager, sid, history_limit=3)
    await group.run(sid, "open", max_rounds=2)
    assert _contents(await manager.get_turns(sid)) == ["open", HUMAN, "a#1", "b#1", "a#2", "b#2"]
    assert _seen(b) == [("a#1", ["open", HUMAN]), ("a#2", ["a#1", "b#1"])]
    assert _seen(a)[1] == ("b#1", [HUMAN, "a#1"])


async def test_outside_turns_between_steps_reach_the_turn_manager_and_the_budget() -> None:
    # A turn appended between two steps: the next agent's message, and its tokens count
    # toward the session budget as soon as the run reads it (a resumed run would see
    # them in the session's totals too).
    manager = make_manager()
    sid = (await manager.create("alice")).session_id
    group = GroupSession(manager, termination=TokenBudgetTermination(100))
    a, b = ScriptedAgent("a"), ScriptedAgent("b")
    group.add_agent(a)
    group.add_agent(b)
    stream = group.stream(sid, "open", max_rounds=3)
    got = [await anext(stream), await anext(stream)]  # opening, a #1
    await manager.add_message(sid, "user", "a costly aside", tokens_used=100)
    got += [turn async for turn in stream]
    assert _contents(got) == ["open", "a #1", "b #1"]
    assert b.calls[0][0] == "a costly aside"
    assert _contents(b.calls[0][1]) == ["open", "a #1"]
    state = GroupTurnState.from_turn(got[-1])
    assert state is not None and state.status == "finished"
    assert state.reason == "token budget reached (100 >= 100)"


# ------------------------------------------------------------ concurrent groups
async def test_two_groups_on_one_session_see_each_others_turns(
    store_factory: StoreFactory,
) -> None:
    manager = await _manager(store_factory)
    sid = (await manager.create("alice")).session_id
    groups: list[GroupSession] = []
    agents: list[HookedAgent] = []
    for names in (("a", "b"), ("c", "d")):
        group = GroupSession(await _manager(store_factory))  # as if in another process
        for name in names:
            agent = HookedAgent(name, pause=0.002)
            group.add_agent(agent)
            agents.append(agent)
        groups.append(group)
    await asyncio.gather(
        groups[0].run(sid, "open 1", max_rounds=3), groups[1].run(sid, "open 2", max_rounds=3)
    )
    stored = _contents(await manager.get_turns(sid))
    assert len(stored) == len(set(stored)) == 14  # 2 openings, 12 agent turns, none twice
    for agent in agents:
        assert len(agent.calls) == 3
        previous = 0
        for message, history in agent.calls:
            seen = [*_contents(history), message]
            # What a resumed run would show: the session as stored at some moment.
            assert seen == stored[: len(seen)], agent.name
            assert len(seen) > previous  # and never less than the step before
            previous = len(seen)
    # Each group was shown turns of the other (both openings are in every later view).
    for agent in agents:
        assert {"open 1", "open 2"} <= set(_contents(agent.calls[-1][1]))


# ------------------------------------------------------------------ visibility
async def test_an_outside_turn_hidden_from_an_agent_stays_hidden(
    store_factory: StoreFactory,
) -> None:
    manager = await _manager(store_factory)
    sid = (await manager.create("alice")).session_id

    async def human() -> None:
        await manager.add_message(sid, "user", "for a only", metadata={"hidden_from": ["b"]})
        await manager.add_message(sid, "user", "for reviewers", metadata={"visible_to": "reviewer"})

    a = HookedAgent("a", hooks={1: human})
    b = HookedAgent("b")
    c = HookedAgent("c", [AgentReply("c aside", metadata={"visible_to": ["a"]})])
    group = GroupSession(manager)
    group.add_agent(a)
    group.add_agent(b, role="reviewer")
    group.add_agent(c)
    await group.run(sid, "open", max_rounds=2)
    stored = _contents(await manager.get_turns(sid))
    assert stored == [
        "open", "for a only", "for reviewers", "a #1", "b #1", "c aside",
        "a #2", "b #2", "c #2",
    ]  # fmt: skip
    assert _seen(b) == [
        ("a #1", ["open", "for reviewers"]),
        ("a #2", ["open", "for reviewers", "a #1", "b #1"]),
    ]
    assert _seen(a)[1] == ("c aside", ["open", "for a only", "a #1", "b #1"])
    assert _seen(c) == [
        ("b #1", ["open", "for a only", "a #1"]),
        ("b #2", ["open", "for a only", "a #1", "b #1", "c aside", "a #2"]),
    ]


async def test_a_malformed_outside_turn_ends_the_run_cleanly() -> None:
    # Visibility metadata that cannot be read, appended mid-run, fails the run with a
    # reason (nothing raised, nothing left "running"), like an agent failure.
    manager = make_manager()
    sid = (await manager.create("alice")).session_id

    async def bad() -> None:
        await manager.add_message(sid, "user", "bad", metadata={"visible_to": {"b": True}})

    a = HookedAgent("a", hooks={1: bad})
    b = HookedAgent("b")
    group = GroupSession(manager)
    group.add_agent(a)
    group.add_agent(b)
    state = await group.run(sid, "open", max_rounds=2)
    assert _contents(state.turns)[:3] == ["open", "bad", "a #1"]
    assert b.calls == []
    run = GroupTurnState.from_turn(state.turns[-1])
    assert run is not None and run.status == "failed"
    assert "visible_to" in (run.reason or "")
    assert state.turns[-1].role == "system"


@pytest.mark.parametrize("resume", [False, True])
async def test_a_turn_stored_between_the_start_up_reads_is_held_and_counted_once(
    resume: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run reads the header, then the turns: a turn stored in between is in both the
    # start-up history and the first re-read.
    manager = make_manager()
    sid = (await manager.create("alice")).session_id
    if resume:
        crashed = GroupSession(manager)
        crashed.add_agent(HookedAgent("a"))
        crashed.add_agent(HookedAgent("b", crash_on=1))
        with pytest.raises(Crash):
            await crashed.run(sid, "open", max_rounds=2)
    get_turns = manager.get_turns

    async def racing_get_turns(session_id: str, *, last: int | None = None) -> Any:
        if last is None and not racing_get_turns.done:  # type: ignore[attr-defined]
            racing_get_turns.done = True  # type: ignore[attr-defined]
            await manager.add_message(sid, "user", "raced", tokens_used=100)
        return await get_turns(session_id, last=last)

    racing_get_turns.done = False  # type: ignore[attr-defined]
    monkeypatch.setattr(manager, "get_turns", racing_get_turns)
    group = GroupSession(manager, termination=TokenBudgetTermination(100))
    a, b = HookedAgent("a"), HookedAgent("b")
    group.add_agent(a)
    group.add_agent(b)
    state = await group.run(sid, "open", max_rounds=2, resume=resume)
    if resume:
        assert _contents(state.turns) == ["open", "a #1", "raced", "b #1"]
        assert _seen(b) == [("raced", ["open", "a #1"])]
    else:
        assert _contents(state.turns) == ["raced", "open", "a #1"]
        assert _seen(a) == [("open", ["raced"])]
    run = GroupTurnState.from_turn(state.turns[-1])
    assert run is not None and run.reason == "token budget reached (100 >= 100)"


# ------------------------------------ removals and the budget (a regression audit)
async def test_an_outside_turn_counts_at_once_when_the_runs_own_turn_was_removed(
    store_factory: StoreFactory,
) -> None:
    # Between two steps someone pops the run's own newest turn (a #1), then a person
    # adds 50 tokens. The run judged the budget one step late (c was called too) and
    # dropped a #1 from b's history, while a popped turn the run had read stayed.
    manager = await _manager(store_factory)
    sid = (await manager.create("alice")).session_id
    group = GroupSession(manager, termination=TokenBudgetTermination(50))
    a, b, c = ScriptedAgent("a"), ScriptedAgent("b"), ScriptedAgent("c")
    for agent in (a, b, c):
        group.add_agent(agent)
    stream = group.stream(sid, "open", max_rounds=3)
    got = [await anext(stream), await anext(stream)]  # opening, a #1
    popped = await manager.pop_turn(sid)
    assert popped is not None and popped.content == "a #1"
    await manager.add_message(sid, "user", "HUMAN 50 tokens", tokens_used=50)
    got += [turn async for turn in stream]
    assert _contents(got) == ["open", "a #1", "b #1"]
    assert c.calls == []
    # The removed own turn stays in the history the run holds (as documented).
    assert _seen(b) == [("HUMAN 50 tokens", ["open", "a #1"])]
    assert _contents(await manager.get_turns(sid)) == ["open", "HUMAN 50 tokens", "b #1"]
    state = await group.run_state(sid)
    assert state is not None and state.status == "finished"
    assert state.reason == "token budget reached (50 >= 50)"


async def test_a_removed_turn_stops_counting_toward_the_budget(
    store_factory: StoreFactory,
) -> None:
    # The budgets judge the session's totals, as a resumed run would: a turn taken
    # out between steps no longer counts, whichever turn it was.
    manager = await _manager(store_factory)
    sid = (await manager.create("alice")).session_id
    group = GroupSession(manager, termination=TokenBudgetTermination(100))
    a = ScriptedAgent("a", [AgentReply("a #1", tokens_used=60)])
    b = ScriptedAgent("b", [AgentReply("b #1", tokens_used=60)])
    group.add_agent(a)
    group.add_agent(b)
    stream = group.stream(sid, "open", max_rounds=2)
    got = [await anext(stream), await anext(stream)]  # opening, a #1 (60 tokens)
    await manager.pop_turn(sid)
    got += [turn async for turn in stream]
    assert _contents(got) == ["open", "a #1", "b #1", "a #2", "b #2"]
    state = await group.run_state(sid)
    assert state is not None and state.reason == "max_rounds reached (2)"


# ---------------------------------- the turn cap reached by outside turns (audit)
async def test_outside_turns_that_fill_the_session_between_steps_end_the_run(
    store_factory: StoreFactory,
) -> None:
    # max_turns_per_session=6: opening, a #1, then 4 turns of a person. The run read
    # them and still called b, then raised TurnLimitReachedError.
    manager = await _manager(store_factory, max_turns_per_session=6)
    sid = (await manager.create("alice")).session_id
    a, b = ScriptedAgent("a"), ScriptedAgent("b")
    group = GroupSession(manager)
    group.add_agent(a)
    group.add_agent(b)
    stream = group.stream(sid, "open", max_rounds=5)
    got = [await anext(stream), await anext(stream)]
    for i in range(4):
        await manager.add_message(sid, "user", f"H{i}")
    got += [turn async for turn in stream]  # ends, nothing raised
    assert _contents(got) == ["open", "a #1"]
    assert b.calls == []
    header = await manager.get_header(sid)
    assert header is not None and header.status.value == "closed"
    assert header.turn_count == 6
    # Every run on a full session has ended: resume returns the state as it is.
    again = GroupSession(manager)
    again.add_agent(ScriptedAgent("a"))
    again.add_agent(b2 := ScriptedAgent("b"))
    state = await again.run(sid, resume=True)
    assert state.turn_count == 6 and b2.calls == []


@pytest.mark.parametrize("outside", [3, 4])
async def test_outside_turns_during_a_step_that_fill_the_session_end_the_run_finished(
    outside: int, store_factory: StoreFactory
) -> None:
    # 3 turns during b's step: b's reply is turn 6 (stored "running", it closed the
    # session). 4 turns: the store refuses b's reply. Either way the run ends finished,
    # nothing raised, and a resume does nothing (it raised TurnLimitReachedError).
    manager = await _manager(store_factory, max_turns_per_session=6)
    sid = (await manager.create("alice")).session_id

    async def fill() -> None:
        for i in range(outside):
            await manager.add_message(sid, "user", f"H{i}")

    group = GroupSession(manager)
    group.add_agent(HookedAgent("a"))
    group.add_agent(HookedAgent("b", hooks={1: fill}))
    state = await group.run(sid, "open", max_rounds=5)
    humans = [f"H{i}" for i in range(outside)]
    assert _contents(state.turns) == ["open", "a #1", *humans, "b #1"][:6]
    assert state.status.value == "closed"
    run = await group.run_state(sid)
    if outside == 3:
        assert run is not None and (run.status, run.next_speaker) == ("finished", None)
        assert run.reason == "session reached max_turns_per_session (6)"
    else:
        assert run is None  # the newest turn is a person's
    again = GroupSession(manager)
    again.add_agent(a2 := HookedAgent("a"))
    again.add_agent(HookedAgent("b"))
    assert (await again.run(sid, resume=True)).turn_count == 6
    assert [t async for t in again.stream(sid, resume=True)] == []
    assert a2.calls == []


async def test_a_session_closed_between_steps_is_refused_before_the_agent_is_called(
    store_factory: StoreFactory,
) -> None:
    # A session that can take no more turns for another reason: the error an append
    # would raise, at once (the agent was called first, for a reply that was lost).
    manager = await _manager(store_factory)
    sid = (await manager.create("alice")).session_id
    a, b = ScriptedAgent("a"), ScriptedAgent("b")
    group = GroupSession(manager)
    group.add_agent(a)
    group.add_agent(b)
    stream = group.stream(sid, "open", max_rounds=2)
    await anext(stream)
    await anext(stream)
    await manager.close(sid)
    with pytest.raises(SessionClosedError):
        await anext(stream)
    assert b.calls == []
