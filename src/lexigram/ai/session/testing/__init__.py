"""Testing helpers shipped with the package: the store conformance suite.

Importing this package needs ``pytest`` (a test dependency).
"""

from lexigram.ai.session.testing.conformance import (
    FakeClock,
    StoreConformanceSuite,
    make_state,
    make_turn,
)

__all__ = ["FakeClock", "StoreConformanceSuite", "make_state", "make_turn"]
