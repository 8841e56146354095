"""Session stores: in-memory (``memory``), Redis (``redis``) and SQL (``sql``), one contract."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lexigram.ai.session.stores.base import (
    AppendResult,
    SessionPage,
    SessionPatch,
    SessionRecord,
    SessionStore,
    StoredTurns,
    TurnReuse,
)
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from lexigram.ai.session.stores.registry import (
    create_store,
    register_backend,
    registered_backends,
    unregister_backend,
)

if TYPE_CHECKING:
    from lexigram.ai.session.stores.cache import CacheSessionStore
    from lexigram.ai.session.stores.database import DatabaseSessionStore

__all__ = [
    "AppendResult",
    "CacheSessionStore",
    "DatabaseSessionStore",
    "InMemorySessionStore",
    "SessionPage",
    "SessionPatch",
    "SessionRecord",
    "SessionStore",
    "StoredTurns",
    "TurnReuse",
    "create_store",
    "register_backend",
    "registered_backends",
    "unregister_backend",
]


if not TYPE_CHECKING:
    # The Redis and SQL stores import optional drivers: load them on first use. Hidden
    # from type checkers, which see the imports above, so a misspelt name stays an error.

    def __getattr__(name: str) -> object:
        if name == "CacheSessionStore":
            from lexigram.ai.session.stores.cache import CacheSessionStore

            return CacheSessionStore
        if name == "DatabaseSessionStore":
            from lexigram.ai.session.stores.database import DatabaseSessionStore

            return DatabaseSessionStore
        raise AttributeError(f"module 'lexigram.ai.session.stores' has no attribute {name!r}")
