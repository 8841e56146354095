"""The per-backend manager environment for the branching tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ..checkpointing.harness import PARAMS, EnvFactory, open_env_factory
from ..manager.test_events_telemetry import otel  # noqa: F401 - the telemetry recorder


@pytest.fixture(params=PARAMS)
async def make_env(request: pytest.FixtureRequest) -> AsyncIterator[EnvFactory]:
    """``make(**config) -> Env`` on one backend (every registered backend in turn)."""
    async with open_env_factory(request.param) as make:
        yield make
