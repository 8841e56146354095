"""Import point of the Redis session store (``SessionConfig.backend == "redis"``).

The implementation lives in :mod:`lexigram.ai.session.stores.redis`.
"""

from __future__ import annotations

from lexigram.ai.session.stores.redis.store import CacheSessionStore

__all__ = ["CacheSessionStore"]
