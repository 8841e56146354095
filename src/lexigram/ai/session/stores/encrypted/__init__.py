"""Encryption at rest for every store: sealing, the encrypting store, key rotation."""

from __future__ import annotations

from lexigram.ai.session.stores.encrypted.store import DEFAULT_KEY_CACHE, EncryptedSessionStore
from lexigram.ai.session.stores.encrypted.wiring import encrypt_if_configured

__all__ = ["DEFAULT_KEY_CACHE", "EncryptedSessionStore", "encrypt_if_configured"]
