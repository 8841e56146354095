"""Turning encryption on from the configuration: wrap the built store when keys are set."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram.ai.session.encryption.keyring import Keyring

if TYPE_CHECKING:
    from lexigram.ai.session.config import SessionConfig
    from lexigram.ai.session.stores.base import SessionStore

__all__ = ["crypto_missing", "encrypt_if_configured"]


def crypto_missing() -> ConfigurationError:
    """The error for a configured keyring when ``cryptography`` is not installed."""
    return ConfigurationError(
        "ai_session.encryption_keys: encryption needs the 'cryptography' package "
        "(pip install 'lexigram-ai-session[crypto]')"
    )


def encrypt_if_configured(store: SessionStore, config: SessionConfig) -> SessionStore:
    """``store`` behind an ``EncryptedSessionStore`` when ``encryption_keys`` holds a key.

    Without ``cryptography`` installed a configured keyring is a
    ``ConfigurationError`` naming the extra to install.
    """
    keyring = Keyring.from_config(config.encryption_keys)
    if keyring is None:
        return store
    try:
        from lexigram.ai.session.stores.encrypted.store import EncryptedSessionStore
    except ImportError as exc:
        raise crypto_missing() from exc
    if isinstance(store, EncryptedSessionStore):
        return store
    return EncryptedSessionStore(store, keyring)
