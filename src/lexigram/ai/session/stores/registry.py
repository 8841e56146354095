"""Backend registry: ``SessionConfig.backend`` names a factory that builds the store.

Built in: ``in_memory``, ``cache`` (Redis), ``database`` (SQL). Register your own
with :func:`register_backend` before the config is validated::

    register_backend("dynamo", lambda config: DynamoSessionStore(config))

A backend whose driver is not installed (``redis``, ``asyncpg``) fails with one
``ConfigurationError`` carrying the ``pip install`` line, not an import traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram.ai.session.config import register_backend_name, unregister_backend_name

if TYPE_CHECKING:
    from lexigram.ai.session.config import SessionConfig
    from lexigram.ai.session.stores.base import SessionStore

__all__ = [
    "StoreFactory",
    "create_store",
    "missing_driver_error",
    "register_backend",
    "registered_backends",
    "unregister_backend",
]

StoreFactory = Callable[["SessionConfig"], "SessionStore"]


def _in_memory(config: SessionConfig) -> SessionStore:
    from lexigram.ai.session.stores.in_memory import InMemorySessionStore

    return InMemorySessionStore(session_ttl=config.session_ttl)


#: Optional driver module -> (what needs it, the extra that installs it).
_DRIVERS: dict[str, tuple[str, str]] = {
    "redis": ("the cache backend (Redis)", "redis"),
    "asyncpg": ("PostgreSQL", "postgres"),
    "sqlalchemy": ("the database backend", "sql"),
    "aiosqlite": ("SQLite", "sql"),
}


def missing_driver_error(exc: ImportError, field: str) -> ConfigurationError | None:
    """The install hint for a missing optional driver, or None for another import error."""
    name = (exc.name or "").split(".")[0]
    if name not in _DRIVERS:
        return None
    needs, extra = _DRIVERS[name]
    return ConfigurationError(
        f"ai_session.{field}: {needs} needs the {name!r} package, which is not installed: "
        f"pip install 'lexigram-ai-session[{extra}]'"
    )


def _build(field: str, build: Callable[[], SessionStore]) -> SessionStore:
    """``build()``, with a missing driver reported as one short ``ConfigurationError``."""
    error: ConfigurationError | None = None
    try:
        return build()
    except ImportError as exc:
        error = missing_driver_error(exc, field)
        if error is None:
            raise
    # Raised outside the handler: no 60-line import traceback chained to it.
    raise error


def _cache(config: SessionConfig) -> SessionStore:
    def build() -> SessionStore:
        from lexigram.ai.session.stores.cache import CacheSessionStore

        return CacheSessionStore.from_config(config)

    return _build("redis_url", build)


def _database(config: SessionConfig) -> SessionStore:
    def build() -> SessionStore:
        from lexigram.ai.session.stores.database import DatabaseSessionStore

        return DatabaseSessionStore.from_config(config)

    return _build("database_url", build)


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
    register_backend_name(name)


def unregister_backend(name: str) -> None:
    """Remove a user-registered backend (built-in ones cannot be removed)."""
    if name in ("in_memory", "cache", "database"):
        raise ValueError(f"backend {name!r} is built in")
    _BACKENDS.pop(name, None)
    unregister_backend_name(name)


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
