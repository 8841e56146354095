"""Fixtures shared by the store tests."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def sqlite_url() -> Iterator[str]:
    """A SQLite file of this test alone."""
    with tempfile.TemporaryDirectory(prefix="lexi-sqltest-") as tmp:
        yield f"sqlite+aiosqlite:///{Path(tmp) / 'sessions.db'}"
