"""Container bindings of the optional sub-packages (filled in as they land)."""

from __future__ import annotations

from typing import Any

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.stores.base import SessionStore

__all__ = ["register_extensions"]


def register_extensions(container: Any, store: SessionStore, config: SessionConfig) -> None:
    """Bind context, web middleware and group-session services."""
    del container, store, config


def exported_types() -> list[type]:
    """Types the optional sub-packages make resolvable."""
    return []
