"""The store conformance suite: every :class:`SessionStore` must pass it.

Use it for your own backend by subclassing in a pytest module and providing a
``store_factory`` fixture (an async callable returning a new, initialised store on
one test-private namespace each time it is called)::

    import pytest
    from lexigram.ai.session.testing import StoreConformanceSuite

    class TestMyStore(StoreConformanceSuite):
        @pytest.fixture
        async def store_factory(self):
            stores = []
            async def make():
                store = MyStore(namespace="test-123")
                await store.initialize()
                stores.append(store)
                return store
            yield make
            for s in stores:
                await s.close()

Optionally override ``corrupt_session`` to return an async callable
``(store, session_id)`` that damages the stored header, so the suite can check that
a corrupt record raises :class:`CorruptRecordError` naming the session. The tests
need ``pytest-asyncio`` (``asyncio_mode = "auto"``).

The suite is the union of one class per capability, each usable on its own (a backend
that offers only some capabilities runs only those): :class:`SessionsSuite`,
:class:`ValidationSuite`, :class:`TurnsSuite`, :class:`CheckpointsSuite`,
:class:`BranchesSuite`, :class:`SweepingSuite`, :class:`ErasureSuite`.
"""
from __future__ import annotations

from lexigram.ai.session.testing.branches import BranchesSuite
from lexigram.ai.session.testing.checkpoints import CheckpointsSuite
from lexigram.ai.session.testing.erasure import ErasureSuite
from lexigram.ai.session.testing.sessions import SessionsSuite
from lexigram.ai.session.testing.support import FakeClock, make_state, make_turn
from lexigram.ai.session.testing.sweeping import SweepingSuite
from lexigram.ai.session.testing.turns import TurnsSuite
from lexigram.ai.session.testing.validation import ValidationSuite

__all__ = [
    "BranchesSuite",
    "CheckpointsSuite",
    "ErasureSuite",
    "FakeClock",
    "SessionsSuite",
    "StoreConformanceSuite",
    "SweepingSuite",
    "TurnsSuite",
    "ValidationSuite",
    "make_state",
    "make_turn",
]


class StoreConformanceSuite(
    SessionsSuite,
    ValidationSuite,
    TurnsSuite,
    CheckpointsSuite,
    BranchesSuite,
    SweepingSuite,
    ErasureSuite,
):
    """Behaviour every session store must have (see ``stores/base.py``): every capability."""
