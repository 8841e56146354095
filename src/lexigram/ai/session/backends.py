"""Storage backends as plugins: what a backend is, and how one is found by name.

A backend is an object with a ``name``, the config field that holds its URL, a check
of that URL, a way to build its store from a ``SessionConfig`` and a ``setup()`` the
CLI's ``schema-setup`` calls (tables, indexes, a connectivity check). The built-in
ones are ``memory``, ``sql`` and ``redis`` (old names ``in_memory``, ``database`` and
``cache`` stay aliases). An installed package adds one through the entry point group
:data:`BACKEND_GROUP`::

    # the plugin's pyproject.toml
    [project.entry-points."lexigram.ai.session.backends"]
    jsonfile = "my_package.backend:BACKEND"

and ``ai_session.backend: jsonfile`` then selects it, with no edit of this package.

This module is part of the core layer: it imports no store. Built-in backends are
named by import path and loaded on first use, like plugins.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from importlib import metadata
from typing import Any, Protocol, runtime_checkable

#: A ``lexigram.ai.session.stores.SessionStore`` (not imported: the core comes first).
SessionStore = Any

__all__ = [
    "ALIASES",
    "BACKEND_GROUP",
    "SessionBackend",
    "backend_names",
    "canonical_name",
    "find_backend",
    "register",
    "unregister",
]

#: The entry point group an installed package registers its backend in.
BACKEND_GROUP = "lexigram.ai.session.backends"
#: Old backend names and the backend each stands for.
ALIASES: dict[str, str] = {"in_memory": "memory", "database": "sql", "cache": "redis"}
#: Built-in backends: name -> ``module:attribute`` of the backend object.
_BUILTIN: dict[str, str] = {
    "memory": "lexigram.ai.session.stores.backends:MEMORY",
    "sql": "lexigram.ai.session.stores.backends:SQL",
    "redis": "lexigram.ai.session.stores.backends:REDIS",
}


@runtime_checkable
class SessionBackend(Protocol):
    """What a storage backend provides (the built-in ones and every plugin)."""

    name: str
    """The name ``ai_session.backend`` selects it by."""

    url_field: str | None
    """The ``SessionConfig`` field holding its URL (``database_url``, ``redis_url``), or
    None for a backend without one."""

    persistent: bool
    """False for a backend that keeps nothing across restarts (the CLI warns)."""

    def url_problem(self, url: str) -> str | None:
        """What is wrong with ``url`` for this backend (shown redacted), or None."""

    def from_config(self, config: Any) -> SessionStore:
        """A new, not yet initialised store for ``config`` (a ``SessionConfig``)."""

    async def setup(self, config: Any) -> str:
        """Create what the backend needs (tables, indexes) and check it is reachable;
        a one-line description of what is ready, with no password in it."""


_lock = threading.Lock()
_registered: dict[str, SessionBackend] = {}
_loaded: dict[str, SessionBackend] = {}
_entry_points: dict[str, metadata.EntryPoint] | None = None


def canonical_name(name: str) -> str:
    """``name`` with an old alias replaced by the backend's name."""
    return ALIASES.get(name, name)


def _plugins() -> dict[str, metadata.EntryPoint]:
    global _entry_points
    if _entry_points is None:
        found = {ep.name: ep for ep in metadata.entry_points(group=BACKEND_GROUP)}
        _entry_points = found
    return _entry_points


def _load(ref: str | metadata.EntryPoint) -> SessionBackend:
    if isinstance(ref, metadata.EntryPoint):
        value = ref.load()
    else:
        module, _, attr = ref.partition(":")
        value = getattr(importlib.import_module(module), attr)
    if isinstance(value, type):
        value = value()
    if not isinstance(value, SessionBackend):
        raise TypeError(f"{ref!r} is not a session backend (see SessionBackend)")
    return value


def find_backend(name: str) -> SessionBackend | None:
    """The backend called ``name`` (or an alias of it), or None.

    Looks in what :func:`register` added, then the built-in backends, then the
    entry points of :data:`BACKEND_GROUP`.
    """
    if not isinstance(name, str):
        return None
    key = canonical_name(name)
    with _lock:
        found = _registered.get(key) or _loaded.get(key)
    if found is not None:
        return found
    ref: str | metadata.EntryPoint | None = _BUILTIN.get(key)
    if ref is None:
        ref = _plugins().get(key)
    if ref is None:
        return None
    backend = _load(ref)
    with _lock:
        _loaded.setdefault(key, backend)
        return _loaded[key]


def backend_names() -> frozenset[str]:
    """Every name ``ai_session.backend`` accepts (with the aliases)."""
    with _lock:
        registered = set(_registered)
    return frozenset(_BUILTIN) | frozenset(ALIASES) | frozenset(_plugins()) | registered


def register(backend: SessionBackend, *, replace: bool = False) -> None:
    """Make ``backend`` selectable by its name (in code, without an entry point)."""
    if not isinstance(backend, SessionBackend):
        raise TypeError(f"{backend!r} is not a session backend (see SessionBackend)")
    name = backend.name
    if not isinstance(name, str) or not name:
        raise ValueError("backend name must be a non-empty string")
    if name in ALIASES or (name in _BUILTIN and not replace):
        raise ValueError(f"backend {name!r} is built in")
    if name in _plugins() and not replace:
        raise ValueError(
            f"backend {name!r} is installed (entry point group {BACKEND_GROUP!r}); "
            "pass replace=True to put yours in its place"
        )
    with _lock:
        if name in _registered and not replace:
            raise ValueError(f"backend {name!r} is already registered (pass replace=True)")
        _registered[name] = backend


def unregister(name: str) -> None:
    """Forget a backend added with :func:`register` (built-in ones stay)."""
    with _lock:
        _registered.pop(name, None)


def factory_backend(
    name: str, build: Callable[[Any], SessionStore], *, persistent: bool = True
) -> SessionBackend:
    """A backend made of a bare store factory (``register_backend(name, factory)``)."""
    return _FactoryBackend(name, build, persistent)


class _FactoryBackend:
    """A backend from a store factory: no URL of its own, set-up is a ping."""

    url_field: str | None = None

    def __init__(self, name: str, build: Callable[[Any], SessionStore], persistent: bool) -> None:
        self.name = name
        self.persistent = persistent
        self._build = build

    def url_problem(self, url: str) -> str | None:
        return None

    def from_config(self, config: Any) -> SessionStore:
        return self._build(config)

    async def setup(self, config: Any) -> str:
        store = self.from_config(config)
        try:
            await store.initialize()
            await store.ping()
        finally:
            await store.close()
        return f"backend {self.name!r} ready"
