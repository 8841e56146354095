"""Fixtures for manager tests: a manager over the in-memory store with a fake clock."""

from __future__ import annotations

import pytest

from lexigram.ai.session import InMemorySessionStore, SessionConfig, SessionManagerImpl
from lexigram.ai.session.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """A clock the test moves by hand."""
    return FakeClock()


@pytest.fixture
def make_manager(clock: FakeClock):  # type: ignore[no-untyped-def]
    """Build a manager over a fresh in-memory store with config overrides."""

    def make(**overrides: object) -> SessionManagerImpl:
        store = InMemorySessionStore(clock=clock)
        return SessionManagerImpl(store, SessionConfig(**overrides))

    return make


@pytest.fixture
def manager(make_manager) -> SessionManagerImpl:  # type: ignore[no-untyped-def]
    """A manager with the default config."""
    manager: SessionManagerImpl = make_manager()
    return manager
