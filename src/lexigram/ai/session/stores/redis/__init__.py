"""The Redis backend (``backend="redis"``): store, key layout, Lua scripts."""

from __future__ import annotations

from lexigram.ai.session.stores.redis.store import CacheSessionStore

__all__ = ["CacheSessionStore"]
