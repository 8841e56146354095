"""The shared store conformance suite, run on every backend in tests/stores/backends/."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from lexigram.ai.session.testing import StoreConformanceSuite

from .backends import BackendSpec, StoreFactory, all_specs

SPECS = all_specs()


@pytest.fixture(params=[pytest.param(s, id=s.name, marks=s.marks) for s in SPECS])
def backend(request: pytest.FixtureRequest) -> BackendSpec:
    """One backend spec per parametrisation."""
    spec: BackendSpec = request.param
    return spec


class TestStoreConformance(StoreConformanceSuite):
    """Every test of the suite, once per backend."""

    @pytest.fixture
    async def store_factory(self, backend: BackendSpec) -> AsyncIterator[StoreFactory]:
        async with backend.open() as factory:
            yield factory

    @pytest.fixture
    def corrupt_session(self, backend: BackendSpec):  # type: ignore[no-untyped-def]
        return backend.corrupt
