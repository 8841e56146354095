"""Testing helpers shipped with the package: the store conformance suite.

``StoreConformanceSuite`` runs every test; one class per capability
(``SessionsSuite``, ``ValidationSuite``, ``TurnsSuite``, ``CheckpointsSuite``,
``BranchesSuite``, ``SweepingSuite``, ``ErasureSuite``) runs that capability's tests
alone. Importing this package needs ``pytest`` (a test dependency).
"""

try:
    import pytest as _pytest  # the suites are pytest classes
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    raise ModuleNotFoundError(
        "lexigram.ai.session.testing (the store conformance suite) needs pytest and "
        "pytest-asyncio: pip install pytest pytest-asyncio",
        name=exc.name,
    ) from exc

from lexigram.ai.session.testing.conformance import (
    BranchesSuite,
    CheckpointsSuite,
    ErasureSuite,
    FakeClock,
    SessionsSuite,
    StoreConformanceSuite,
    SweepingSuite,
    TurnsSuite,
    ValidationSuite,
    make_state,
    make_turn,
)

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
