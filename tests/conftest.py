"""Test configuration shared by the whole suite."""

from __future__ import annotations

import os

os.environ.setdefault("LEX_LOGGING__LEVEL", "WARNING")
os.environ.setdefault("LEX_QUIET", "1")

from lexigram.logging import configure_logging

configure_logging(level="WARNING")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
"""With CI=true a test that needs Redis or PostgreSQL fails instead of skipping."""
