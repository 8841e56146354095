"""Backends the shared store conformance suite runs against.

Each module in this package defines ``SPECS: list[BackendSpec]``. A spec's ``open``
is an async context manager yielding a *store factory*: an async callable that
returns a new, initialised store instance on the same (test-private) namespace each
time it is called; every instance it made is closed when the context exits, and the
namespace is dropped. ``corrupt`` (optional) damages the stored header of a session
so that the next read must raise ``CorruptRecordError``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

from lexigram.ai.session.stores.base import SessionStore

StoreFactory = Callable[[], Awaitable[SessionStore]]


@dataclass(frozen=True)
class BackendSpec:
    """One backend the conformance suite runs on."""

    name: str
    open: Callable[[], AbstractAsyncContextManager[StoreFactory]]
    marks: tuple[Any, ...] = ()
    corrupt: Callable[[SessionStore, str], Awaitable[None]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def all_specs() -> list[BackendSpec]:
    """Every spec of every module in this package, in module-name order."""
    specs: list[BackendSpec] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        specs.extend(getattr(module, "SPECS", []))
    return specs


__all__ = ["AsyncIterator", "BackendSpec", "StoreFactory", "all_specs"]
