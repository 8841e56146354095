"""Type aliases used across lexigram-ai-session."""

from __future__ import annotations

from typing import Any, TypeAlias

SessionId: TypeAlias = str
"""Identifier of a session (128-bit random, URL-safe)."""

TurnId: TypeAlias = str
"""Identifier of a turn, unique within its session."""

Metadata: TypeAlias = dict[str, Any]
"""Free-form JSON-compatible metadata."""

__all__ = ["Metadata", "SessionId", "TurnId"]
