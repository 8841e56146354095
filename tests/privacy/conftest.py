"""Fixtures of the privacy tests."""

from __future__ import annotations

from .raw import raw_backend

__all__ = ["raw_backend"]
