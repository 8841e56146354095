"""Encryption at rest for every store: sealing, the encrypting store, key rotation.

``EncryptedSessionStore`` and ``DEFAULT_KEY_CACHE`` need ``cryptography`` (extra
``crypto``) and are loaded on first use, so this package (and ``encrypt_if_configured``,
which the store factory calls for every store) imports without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from lexigram.ai.session.stores.encrypted.wiring import encrypt_if_configured

if TYPE_CHECKING:
    from lexigram.ai.session.stores.encrypted.store import (
        DEFAULT_KEY_CACHE,
        EncryptedSessionStore,
    )

__all__ = ["DEFAULT_KEY_CACHE", "EncryptedSessionStore", "encrypt_if_configured"]

_LAZY = {"DEFAULT_KEY_CACHE", "EncryptedSessionStore"}

if not TYPE_CHECKING:
    # Hidden from type checkers, which see the imports above.

    def __getattr__(name: str) -> object:
        if name not in _LAZY:
            raise AttributeError(
                f"module 'lexigram.ai.session.stores.encrypted' has no attribute {name!r}"
            )
        try:
            module = importlib.import_module("lexigram.ai.session.stores.encrypted.store")
        except ModuleNotFoundError as exc:  # the extra is missing: say which one
            missing = (exc.name or "").partition(".")[0]
            if missing not in ("cryptography", "pybase64"):
                raise
            raise ModuleNotFoundError(
                f"{name} needs {missing!r}, which is not installed: "
                "pip install 'lexigram-ai-session[crypto]'",
                name=exc.name,
            ) from exc
        return getattr(module, name)
