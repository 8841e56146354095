"""Building the store ``SessionConfig.backend`` names.

Backends are found by :func:`lexigram.ai.session.backends.find_backend`: the built-in
``memory``, ``sql`` and ``redis`` (aliases ``in_memory``, ``database``, ``cache``), the
entry points of the group ``lexigram.ai.session.backends`` (an installed plugin), and
those registered in code. A bare store factory can still be registered here::

    register_backend("dynamo", lambda config: DynamoSessionStore(config))

A backend whose driver is not installed (``redis``, ``asyncpg``, ``asyncmy``) fails with one
``ConfigurationError`` carrying the ``pip install`` line, not an import traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lexigram.contracts.exceptions.config import ConfigurationError

import lexigram.ai.session.backends as backends
from lexigram.ai.session.config import register_backend_name, unregister_backend_name

if TYPE_CHECKING:
    from lexigram.ai.session.config import SessionConfig
    from lexigram.ai.session.stores.base import SessionStore

__all__ = [
    "StoreFactory",
    "build_store",
    "create_store",
    "missing_driver_error",
    "register_backend",
    "registered_backends",
    "unregister_backend",
]

StoreFactory = Callable[["SessionConfig"], "SessionStore"]


#: Optional driver module -> (what needs it, the extra that installs it).
_DRIVERS: dict[str, tuple[str, str]] = {
    "redis": ("the redis backend", "redis"),
    "asyncpg": ("PostgreSQL", "postgres"),
    "sqlalchemy": ("the sql backend", "sql"),
    "aiosqlite": ("SQLite", "sql"),
    "asyncmy": ("MySQL/MariaDB", "mysql"),
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


def build_store(field: str, build: Callable[[], SessionStore]) -> SessionStore:
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


def register_backend(name: str, factory: StoreFactory, *, replace: bool = False) -> None:
    """Make ``backend=name`` build its store with ``factory(config)``."""
    if not name or not isinstance(name, str):
        raise ValueError("backend name must be a non-empty string")
    if name in backends.ALIASES:
        raise ValueError(f"backend {name!r} is built in")
    backends.register(backends.factory_backend(name, factory), replace=replace)
    register_backend_name(name)


def unregister_backend(name: str) -> None:
    """Remove a user-registered backend (built-in ones cannot be removed)."""
    if backends.canonical_name(name) in ("memory", "sql", "redis"):
        raise ValueError(f"backend {name!r} is built in")
    backends.unregister(name)
    unregister_backend_name(name)


def registered_backends() -> frozenset[str]:
    """Names accepted by ``SessionConfig.backend``."""
    return backends.backend_names()


def create_store(config: SessionConfig) -> SessionStore:
    """Build the store ``config.backend`` names; an unknown name is a ``ConfigurationError``.

    With ``encryption_keys`` set it comes wrapped in ``EncryptedSessionStore``.
    """
    backend = backends.find_backend(config.backend)
    if backend is None:
        raise ConfigurationError(
            f"ai_session.backend: unknown backend {config.backend!r}; "
            f"expected one of {sorted(backends.backend_names())}"
        )
    store: SessionStore = backend.from_config(config)
    from lexigram.ai.session.stores.encrypted.wiring import encrypt_if_configured

    return encrypt_if_configured(store, config)
