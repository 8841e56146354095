"""Manager-level test environment, opened once per backend of ``tests/stores/backends``.

``open_env_factory(spec)`` yields ``make(**config)``: each call takes a store from the
spec's factory (a new instance on the same test-private namespace, except in memory)
and builds a :class:`SessionManagerImpl`, its :class:`CheckpointManager` and a
:class:`BranchManager` from one :class:`SessionConfig`. Automatic checkpoints are
off unless a test asks for them, so that counting checkpoints stays exact.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionState, SessionTurn

from lexigram.ai.session.branching import BranchManager
from lexigram.ai.session.checkpointing import CheckpointManager
from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.stores.base import SessionStore

from ..stores.backends import BackendSpec, all_specs

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

PARAMS = [pytest.param(spec, id=spec.name, marks=spec.marks) for spec in all_specs()]
"""One pytest parameter per registered backend."""


@dataclass
class Env:
    """A manager stack on one store."""

    store: SessionStore
    config: SessionConfig
    manager: SessionManagerImpl
    checkpoints: CheckpointManager
    branches: BranchManager


EnvFactory = Callable[..., Awaitable[Env]]


@asynccontextmanager
async def open_env_factory(spec: BackendSpec) -> AsyncIterator[EnvFactory]:
    """Open ``spec`` and yield a factory of :class:`Env` on its namespace."""
    async with spec.open() as store_factory:

        async def make(**overrides: Any) -> Env:
            settings: dict[str, Any] = {"auto_checkpoint_interval": None, "session_ttl": 0}
            settings.update(overrides)
            config = SessionConfig(**settings)
            store = await store_factory()
            manager = SessionManagerImpl(store, config)
            branches = BranchManager(
                store,
                config.max_branches_per_session,
                max_sessions_per_user=config.max_sessions_per_user,
                max_turns_per_session=config.max_turns_per_session,
                notifier=manager.notifier,
            )
            return Env(store, config, manager, manager.checkpoints, branches)

        yield make


def turn(
    n: int, *, tokens: int | None = None, cost: float | None = None, **extra: Any
) -> SessionTurn:
    """A turn numbered ``n`` with a unique id and predictable tokens/cost."""
    return SessionTurn(
        turn_id=f"t{n}-{uuid.uuid4().hex[:10]}",
        role="user" if n % 2 == 0 else "assistant",
        content=f"message {n}",
        timestamp=T0 + timedelta(seconds=n),
        tokens_used=n + 1 if tokens is None else tokens,
        cost=0.25 * (n % 4) if cost is None else cost,
        **extra,
    )


async def add(env: Env, session_id: str, start: int, count: int) -> list[SessionTurn]:
    """Append ``count`` turns one by one (numbered from ``start``) through the manager."""
    made = [turn(start + i) for i in range(count)]
    for t in made:
        await env.manager.add_turn(session_id, t)
    return made


def ids(turns: list[SessionTurn]) -> list[str]:
    """The turn ids, in order."""
    return [t.turn_id for t in turns]


def assert_totals_exact(state: SessionState) -> None:
    """turn_count / total_tokens / total_cost equal what the live turns add up to."""
    assert state.turn_count == len(state.turns)
    assert state.total_tokens == sum(t.tokens_used for t in state.turns)
    assert state.total_cost == pytest.approx(sum(t.cost for t in state.turns), abs=1e-9)
