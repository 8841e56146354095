"""What marks stored data as encrypted, readable without ``cryptography`` installed.

A process configured without keys uses these to recognise an encrypted session (and
refuse it by its key id) instead of handing out sealed text.
"""

from __future__ import annotations

__all__ = [
    "ENVELOPE_VERSION",
    "LEGACY_SEALED_PREFIX",
    "SEALED_PREFIX",
    "SEALED_PREFIXES",
    "envelope_key_id",
]

#: Prefix of every value sealed now (standard base64 of nonce + ciphertext).
SEALED_PREFIX = "lxe1:"
#: Prefix of values sealed by the previous version (hex); they still open.
LEGACY_SEALED_PREFIX = "lxe2:"
#: Every prefix a sealed value may carry (for ``str.startswith``).
SEALED_PREFIXES = (SEALED_PREFIX, LEGACY_SEALED_PREFIX)
#: The first dot-separated part of every key envelope.
ENVELOPE_VERSION = "v1"


def envelope_key_id(envelope: str) -> str | None:
    """The key id an envelope names (read in clear), or None when it is no envelope."""
    parts = envelope.split(".") if isinstance(envelope, str) else []
    return parts[1] if len(parts) == 4 and parts[0] == ENVELOPE_VERSION else None
