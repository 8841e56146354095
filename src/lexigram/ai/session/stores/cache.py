"""Import point of the Redis session store (``SessionConfig.backend == "redis"``).

The implementation lives in :mod:`lexigram.ai.session.stores.redis`.
"""

from __future__ import annotations

try:
    from lexigram.ai.session.stores.redis.store import CacheSessionStore
except ModuleNotFoundError as exc:  # the extra is missing: say which one
    _missing = (exc.name or "").partition(".")[0]
    if _missing not in ("redis", "hiredis"):
        raise
    raise ModuleNotFoundError(
        f"CacheSessionStore needs the Redis client ({_missing!r} is not installed): "
        "pip install 'lexigram-ai-session[redis]'",
        name=exc.name,
    ) from exc

__all__ = ["CacheSessionStore"]
