"""Backend registry: ``SessionConfig.backend`` names a factory that builds the store.

Built in: ``in_memory``, ``cache`` (Redis), ``database`` (SQL). Register your own
with :func:`register_backend` before the config is validated::

    register_backend("dynamo", lambda config: DynamoSessionStore(config))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lexigram.contracts.exceptions.config import ConfigurationError

if TYPE_CHECKING:
    from lexigram.ai.session.config import SessionConfig
    from lexigram.ai.session.stores.base import SessionStore

__all__ = [
    "StoreFactory",
    "create_store",
    "register_backend",
    "registered_backends",
    "unregister_backend",
]

StoreFactory = Callable[["SessionConfig"], "SessionStore"]


def _in_memory(config: SessionConfig) -> SessionStore:
    from lexigram.ai.session.stores.in_memory import InMemorySessionStore

    return InMemorySessionStore(session_ttl=config.session_ttl)


def _cache(config: SessionConfig) -> SessionStore:
    try:
        from lexigram.ai.session.stores.cache import CacheSessionStore
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigurationError(
            "ai_session.backend: 'cache' needs the redis extra: "
            "pip install 'lexigram-ai-session[redis]'"
        ) from exc
    return CacheSessionStore.from_config(config)


def _database(config: SessionConfig) -> SessionStore:
    try:
        from lexigram.ai.session.stores.database import DatabaseSessionStore
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigurationError(
            "ai_session.backend: 'database' needs the sql extra: "
            "pip install 'lexigram-ai-session[sql]'"
        ) from exc
    return DatabaseSessionStore.from_config(config)


_BACKENDS: dict[str, StoreFactory] = {
    "in_memory": _in_memory,
    "cache": _cache,
    "database": _database,
}


def register_backend(name: str, factory: StoreFactory, *, replace: bool = False) -> None:
    """Make ``backend=name`` build its store with ``factory(config)``."""
    if not name or not isinstance(name, str):
        raise ValueError("backend name must be a non-empty string")
    if name in _BACKENDS and not replace:
        raise ValueError(f"backend {name!r} is already registered (pass replace=True)")
    _BACKENDS[name] = factory


def unregister_backend(name: str) -> None:
    """Remove a user-registered backend (built-in ones cannot be removed)."""
    if name in ("in_memory", "cache", "database"):
        raise ValueError(f"backend {name!r} is built in")
    _BACKENDS.pop(name, None)


def registered_backends() -> frozenset[str]:
    """Names accepted by ``SessionConfig.backend``."""
    return frozenset(_BACKENDS)


def create_store(config: SessionConfig) -> SessionStore:
    """Build the store ``config.backend`` names; an unknown name is a ``ConfigurationError``."""
    factory = _BACKENDS.get(config.backend)
    if factory is None:
        raise ConfigurationError(
            f"ai_session.backend: unknown backend {config.backend!r}; "
            f"expected one of {sorted(_BACKENDS)}"
        )
    return factory(config)
