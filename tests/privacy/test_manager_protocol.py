"""``erase_user`` and ``export_user`` belong to ``SessionManagerAPI``."""

from __future__ import annotations

from typing import Any

from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.manager.protocol import SessionManagerAPI
from lexigram.ai.session.stores.in_memory import InMemorySessionStore


class _Without:
    """Every attribute of a real manager except the ones named in ``missing``."""

    def __init__(self, inner: SessionManagerImpl, missing: str) -> None:
        self.inner = inner
        self.missing = missing

    def __getattr__(self, name: str) -> Any:
        if name == self.missing:
            raise AttributeError(name)
        return getattr(self.inner, name)


def test_the_protocol_names_erase_and_export() -> None:
    real = SessionManagerImpl(InMemorySessionStore())
    assert isinstance(real, SessionManagerAPI)
    assert not isinstance(_Without(real, "erase_user"), SessionManagerAPI)
    assert not isinstance(_Without(real, "export_user"), SessionManagerAPI)
    assert isinstance(_Without(real, "not_a_method"), SessionManagerAPI)


async def test_erase_and_export_through_the_protocol_type() -> None:
    manager: SessionManagerAPI = SessionManagerImpl(InMemorySessionStore())
    state = await manager.create("alice")
    await manager.add_message(state.session_id, "user", "hello")
    exported = await manager.export_user("alice")
    assert [s.state.session_id for s in exported.sessions] == [state.session_id]
    erased = await manager.erase_user("alice")
    assert erased.sessions == [state.session_id]
    assert await manager.get_state(state.session_id) is None
    assert (await manager.export_user("alice")).sessions == []
