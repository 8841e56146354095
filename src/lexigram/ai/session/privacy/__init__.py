"""Privacy: encryption at rest (keyring, data keys, the encrypting store wrapper)."""

from __future__ import annotations

from lexigram.ai.session.privacy.keyring import EncryptionKey, Keyring, new_key_text, parse_keys

__all__ = ["EncryptionKey", "Keyring", "new_key_text", "parse_keys"]
