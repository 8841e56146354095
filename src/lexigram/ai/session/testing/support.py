"""What every part of the conformance suite shares: sample data, a fake clock, fixtures."""


from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lexigram.contracts.ai.session import (
    SessionState,
    SessionStatus,
    SessionTurn,
)

from lexigram.ai.session.stores.base import SessionStore

__all__ = [
    "Corrupter",
    "FakeClock",
    "StoreFactory",
    "SuiteBase",
    "make_state",
    "make_turn",
]

StoreFactory = Callable[[], Awaitable[SessionStore]]
Corrupter = Callable[[SessionStore, str], Awaitable[None]]

_A, _S, _C, _E = (
    SessionStatus.ACTIVE,
    SessionStatus.SUSPENDED,
    SessionStatus.CLOSED,
    SessionStatus.EXPIRED,
)
_T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime = _T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward (a negative ``seconds`` moves it back, as the clock of
        a writer running behind another's)."""
        self.now += timedelta(seconds=seconds)


def make_turn(
    n: int = 0,
    *,
    turn_id: str | None = None,
    role: str = "user",
    content: str | None = None,
    tokens: int = 1,
    cost: float = 0.5,
    **extra: Any,
) -> SessionTurn:
    """A turn with predictable fields (``n`` numbers the content and timestamp)."""
    return SessionTurn(
        turn_id=turn_id or f"t{n}-{uuid.uuid4().hex[:8]}",
        role=role,
        content=content if content is not None else f"message {n}",
        timestamp=_T0 + timedelta(seconds=n),
        tokens_used=tokens,
        cost=cost,
        **extra,
    )


def make_state(user_id: str = "alice", **fields: Any) -> SessionState:
    """A new ACTIVE session header with a random id."""
    base: dict[str, Any] = {
        "session_id": "s-" + uuid.uuid4().hex,
        "user_id": user_id,
        "status": _A,
        "created_at": _T0,
        "updated_at": _T0,
    }
    base.update(fields)
    return SessionState(**base)


def _ids(turns: list[SessionTurn]) -> list[str]:
    return [t.turn_id for t in turns]


class SuiteBase:
    """The fixtures and helpers of every capability's tests."""

    # ------------------------------------------------------------- fixtures
    @pytest.fixture
    def corrupt_session(self) -> Corrupter | None:
        """Override to return a callable that damages a stored session header."""
        return None

    @pytest.fixture
    async def store(self, store_factory: StoreFactory) -> SessionStore:
        """A store with a fake clock at 2026-01-01T12:00Z."""
        store = await store_factory()
        store.clock = FakeClock()
        return store

    @staticmethod
    def clock(store: SessionStore) -> FakeClock:
        """The fake clock of ``store``."""
        assert isinstance(store.clock, FakeClock)
        return store.clock

    async def _session(
        self, store: SessionStore, user: str = "alice", **fields: Any
    ) -> SessionState:
        state = make_state(user, **fields)
        await store.create_session(state)
        return state

    async def _append(
        self, store: SessionStore, sid: str, count: int, start: int = 0
    ) -> list[SessionTurn]:
        turns = [make_turn(start + i) for i in range(count)]
        for turn in turns:
            await store.append_turns(sid, [turn])
        return turns
