"""A caller cancelled while the store call of a fork or a merge is in flight.

As for the manager's writes (``tests/manager/test_cancelled_store_call.py``): the store
may commit after the cancellation reached the caller, and the fork or merge was then
stored with no ``SessionForkedEvent`` / ``SessionBranchMergedEvent`` (nor the cap's
``SessionClosedEvent`` a merge filling the parent owes). With something listening, the
store call runs as a task of its own and what follows a stored write is done in the
background, which the manager's ``wait_for_background`` waits for.
"""

from __future__ import annotations

from lexigram.hooks import HookRegistry

from lexigram.ai.session import BranchManager
from lexigram.ai.session.events import (
    SessionBranchMergedEvent,
    SessionClosedEvent,
    SessionForkedEvent,
)
from lexigram.ai.session.stores.base import SessionStore
from tests.manager import test_cancelled_store_call as cancelled
from tests.manager.test_cancelled_store_call import Gate, cancel_in_store, drained, manager_over
from tests.manager.test_events_support import RecordingBus

# The same fixtures: a store of each backend, and whether the store call ends late.
store = cancelled.store
late = cancelled.late


async def test_a_cancelled_fork_is_announced(store: SessionStore, late: bool) -> None:
    bus = RecordingBus()
    manager = manager_over(store, HookRegistry("test"), event_bus=bus)
    sid = (await manager.create("u")).session_id
    await manager.add_message(sid, "user", "hello")
    branches = BranchManager(manager)
    gate = Gate(store, "fork_session")
    await cancel_in_store(gate, lambda: branches.fork(sid, "alt"), late=late)
    await drained(manager, gate)
    (branch,) = await branches.list_branches(sid)
    forked = bus.of(SessionForkedEvent)
    assert [(e.session_id, e.branch_id, e.branch_name) for e in forked] == [
        (sid, branch.session_id, "alt")
    ]


async def test_a_cancelled_merge_is_announced_with_the_cap_it_reached(
    store: SessionStore, late: bool
) -> None:
    bus = RecordingBus()
    manager = manager_over(
        store, HookRegistry("test"), event_bus=bus, max_turns_per_session=2,
        auto_checkpoint_interval=None,
    )
    sid = (await manager.create("u")).session_id
    await manager.add_message(sid, "user", "hello")
    branches = BranchManager(manager)
    branch = await branches.fork(sid, "alt")
    await manager.add_message(branch.session_id, "assistant", "from the branch")
    gate = Gate(store, "append_turns")
    await cancel_in_store(gate, lambda: branches.merge(sid, branch.session_id), late=late)
    await drained(manager, gate)
    header = await manager.get_header(sid)
    assert header is not None and header.turn_count == 2 and header.status.value == "closed"
    merged = bus.of(SessionBranchMergedEvent)
    assert [(e.session_id, e.branch_id, e.merged_turns) for e in merged] == [
        (sid, branch.session_id, 1)
    ]
    # (the branch reached the cap too, when its turn was added: its own event)
    closed = [(e.session_id, e.reason) for e in bus.of(SessionClosedEvent) if e.session_id == sid]
    assert closed == [(sid, "max_turns")]
