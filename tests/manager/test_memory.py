"""Working memory gets every turn; the consolidator gets a session's turns on close."""

from __future__ import annotations

import asyncio
import time

from lexigram.contracts.ai.memory import (
    MemoryConsolidatorProtocol,
    MemoryEntry,
    WorkingMemoryProtocol,
)
from lexigram.contracts.ai.session import SessionStatus

from lexigram import Application
from lexigram.ai.session import InMemorySessionStore, SessionConfig, SessionModule
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.manager.memory import MemoryBridge
from lexigram.ai.session.testing import make_turn

from .test_events_support import (
    RecordingConsolidator,
    RecordingWorkingMemory,
    collaborators_module,
)


def _manager(
    wm: RecordingWorkingMemory | None = None,
    consolidator: RecordingConsolidator | None = None,
    **config: object,
) -> SessionManagerImpl:
    return SessionManagerImpl(
        InMemorySessionStore(),
        SessionConfig(**config),
        working_memory=wm,
        consolidator=consolidator,
    )


def test_recording_classes_satisfy_the_contract_protocols() -> None:
    assert isinstance(RecordingWorkingMemory(), WorkingMemoryProtocol)
    assert isinstance(RecordingConsolidator(), MemoryConsolidatorProtocol)


async def test_services_registered_in_the_container_receive_the_right_entries() -> None:
    wm, consolidator = RecordingWorkingMemory(), RecordingConsolidator()
    modules = [
        collaborators_module(working_memory=wm, consolidator=consolidator),
        SessionModule.stub({"auto_checkpoint_interval": 0}),
    ]
    async with Application.boot(modules=modules) as app:
        manager = await app.container.resolve(SessionManagerImpl)
        state = await manager.create("alice")
        sid = state.session_id
        question = await manager.add_message(sid, "user", "What is 2+2?", metadata={"lang": "en"})
        answer = await manager.add_message(
            sid, "assistant", "4", model="gpt-x", provider="acme", tokens_used=3
        )
        await manager.close(sid)

    assert [e.id for e in wm.entries] == [f"{sid}:{question.turn_id}", f"{sid}:{answer.turn_id}"]
    first, second = wm.entries
    assert isinstance(first, MemoryEntry)
    assert (first.owner_id, first.role, first.content) == ("alice", "user", "What is 2+2?")
    assert first.timestamp == question.timestamp
    assert first.metadata == {"lang": "en", "session_id": sid, "turn_id": question.turn_id}
    assert second.metadata == {
        "session_id": sid,
        "turn_id": answer.turn_id,
        "model": "gpt-x",
        "provider": "acme",
        "tokens_used": 3,
    }
    # one consolidate(entries) call: the contract's signature, every turn in order
    assert len(consolidator.batches) == 1
    assert [(e.role, e.content) for e in consolidator.batches[0]] == [
        ("user", "What is 2+2?"),
        ("assistant", "4"),
    ]
    assert [e.id for e in consolidator.batches[0]] == [e.id for e in wm.entries]


async def test_no_consolidation_when_disabled_or_session_empty() -> None:
    consolidator = RecordingConsolidator()
    manager = _manager(consolidator=consolidator, consolidate_on_close=False)
    state = await manager.create("u")
    await manager.add_message(state.session_id, "user", "hi")
    await manager.close(state.session_id)
    assert consolidator.batches == []

    manager = _manager(consolidator=consolidator)
    empty = await manager.create("u")
    await manager.close(empty.session_id)
    assert consolidator.batches == []


async def test_turn_cap_close_consolidates_too() -> None:
    consolidator = RecordingConsolidator()
    manager = _manager(consolidator=consolidator, max_turns_per_session=2)
    state = await manager.create("u")
    await manager.add_message(state.session_id, "user", "a")
    await manager.add_message(state.session_id, "assistant", "b")
    assert [[e.content for e in b] for b in consolidator.batches] == [["a", "b"]]


async def test_failing_memory_services_never_lose_a_turn_or_block_a_close() -> None:
    wm, consolidator = RecordingWorkingMemory(fail=True), RecordingConsolidator(fail=True)
    manager = _manager(wm, consolidator)
    state = await manager.create("u")
    await manager.add_message(state.session_id, "user", "kept")
    await manager.close(state.session_id)
    stored = await manager.get_state(state.session_id)
    assert stored is not None
    assert [t.content for t in stored.turns] == ["kept"]
    assert stored.status == SessionStatus.CLOSED
    assert wm.entries == [] and consolidator.batches == []


async def test_slow_memory_services_are_cut_off_by_the_timeout() -> None:
    wm = RecordingWorkingMemory(delay_s=5.0)
    consolidator = RecordingConsolidator(delay_s=5.0)
    manager = _manager(wm, consolidator)
    manager.memory = MemoryBridge(wm, consolidator, timeout_s=0.2)
    state = await manager.create("u")
    start = time.perf_counter()
    await manager.add_message(state.session_id, "user", "kept")
    await manager.close(state.session_id)
    assert time.perf_counter() - start < 2.0
    stored = await manager.get_state(state.session_id)
    assert stored is not None and stored.turn_count == 1
    assert stored.status == SessionStatus.CLOSED


async def test_entry_ids_are_unique_across_sessions_with_equal_turn_ids() -> None:
    wm = RecordingWorkingMemory()
    manager = _manager(wm)
    a, b = await manager.create("u"), await manager.create("u")
    await manager.add_turn(a.session_id, make_turn(1, turn_id="t1"))
    await manager.add_turn(b.session_id, make_turn(1, turn_id="t1"))
    assert len({e.id for e in wm.entries}) == 2
    assert await wm.assemble("q", 100, owner_id="u", session_id=a.session_id) == [wm.entries[0]]


async def test_a_slow_memory_service_never_holds_a_write_or_a_close_up() -> None:
    """Past ``wait_s`` the call goes on in the background and still completes."""
    wm = RecordingWorkingMemory(delay_s=0.6)
    consolidator = RecordingConsolidator(delay_s=0.6)
    manager = _manager(wm, consolidator)
    manager.memory = MemoryBridge(wm, consolidator, timeout_s=5.0, wait_s=0.05)
    state = await manager.create("u")
    start = time.perf_counter()
    await manager.add_message(state.session_id, "user", "kept")
    await manager.close(state.session_id)
    assert time.perf_counter() - start < 0.5
    for _ in range(40):  # both finish in the background
        if wm.entries and consolidator.batches:
            break
        await asyncio.sleep(0.05)
    assert [e.content for e in wm.entries] == ["kept"]
    assert [[e.content for e in b] for b in consolidator.batches] == [["kept"]]
