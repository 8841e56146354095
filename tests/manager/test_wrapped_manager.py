"""Group sessions and the explorer accept a manager that only has the manager's API.

The middleware, the context and the Agents SDK adapter are checked in
``test_protocol.py``; ``tests/packaging/test_manager_protocol_use.py`` checks that no
module outside the manager layer takes or tests for the concrete class.
"""

from __future__ import annotations

from lexigram.ai.session.explorer.service import ExplorerService
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.multi_agent import GroupSession, GroupSessionFactory
from lexigram.ai.session.stores.in_memory import InMemorySessionStore

from ..multi_agent.conftest import ScriptedAgent
from .test_protocol import Wrapped


def _real() -> SessionManagerImpl:
    return SessionManagerImpl(InMemorySessionStore())


async def test_a_group_session_runs_through_a_wrapped_manager() -> None:
    real = _real()
    wrapped = Wrapped(real)
    group = GroupSession(wrapped)  # type: ignore[arg-type]
    group.add_agent(ScriptedAgent("writer"))
    session = await real.create("u1")
    state = await group.run(session.session_id, "hello", max_rounds=1)
    assert [t.content for t in state.turns] == ["hello", "writer #1"]
    assert "add_turns" in wrapped.calls


async def test_the_group_factory_keeps_the_wrapped_manager() -> None:
    wrapped = Wrapped(_real())
    factory = GroupSessionFactory(wrapped)  # type: ignore[arg-type]
    assert factory.create().manager is wrapped


async def test_the_explorer_reads_through_a_wrapped_manager() -> None:
    real = _real()
    wrapped = Wrapped(real)
    session = await real.create("u1")
    service = ExplorerService(wrapped)  # type: ignore[arg-type]
    page = await service.sessions("u1", status=None, cursor=None, limit=10)
    assert [s.session_id for s in page.items] == [session.session_id]
    assert service.backend == "memory"
    assert "list_sessions" in wrapped.calls
