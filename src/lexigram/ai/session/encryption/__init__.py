"""Encryption at rest, core part: the keyring of ``encryption_keys`` and AES-256-GCM data keys.

The store side (what is sealed, the encrypting store, rotation) is
:mod:`lexigram.ai.session.stores.encrypted`.
"""

from __future__ import annotations

from lexigram.ai.session.encryption.keyring import (
    EncryptionKey,
    Keyring,
    new_key_text,
    parse_keys,
)

__all__ = ["EncryptionKey", "Keyring", "new_key_text", "parse_keys"]
