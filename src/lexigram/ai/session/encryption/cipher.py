"""AES-256-GCM envelope encryption of a session's values.

Each session family (a session and the branches forked from it) has one random
256-bit data key (DEK). The DEK is stored *wrapped* (AES-GCM under a key of the
keyring) in an envelope kept in clear beside the session header::

    v1.<key id>.<owner, url-safe base64>.<nonce + wrapped DEK, url-safe base64>

``owner`` is the id of the session the DEK was made for; it is the associated data
of the wrap and of every value sealed under the DEK, so a ciphertext moved to
another session family does not open. A sealed value is ``lxe1:`` followed by the
base64 of a fresh 12-byte nonce and the GCM ciphertext with its tag; its
associated data also names the field (and the turn id), so values cannot be swapped
between fields or turns either.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lexigram.ai.session.encryption.keyring import KEY_BYTES, Keyring
from lexigram.ai.session.exceptions import CorruptRecordError, EncryptionKeyError

__all__ = [
    "SEALED_PREFIX",
    "DataKey",
    "envelope_key_id",
    "is_sealed",
    "new_data_key",
    "open_envelope",
]

#: Prefix of every sealed value.
SEALED_PREFIX = "lxe1:"
_PREFIX_LEN = len(SEALED_PREFIX)
_ENVELOPE_VERSION = "v1"
_NONCE = 12
_WRAP_AAD = b"lexigram.ai.session/dek\x00"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def is_sealed(value: object) -> bool:
    """Whether ``value`` is a sealed value (a string starting with :data:`SEALED_PREFIX`)."""
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


@dataclass(frozen=True, eq=False)
class DataKey:
    """An unwrapped data key with its owner and the envelope it came from."""

    owner: str
    key_id: str
    envelope: str
    raw: bytes = field(repr=False)
    _aead: AESGCM = field(init=False, repr=False)

    _aad_prefix: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_aead", AESGCM(self.raw))
        object.__setattr__(self, "_aad_prefix", self.owner.encode("utf-8", "surrogatepass") + b"\0")

    def open_many(self, values: list[str], contexts: list[str]) -> list[bytes | None]:
        """Plaintexts of sealed ``values`` (the hot path of a long read).

        None for a value that does not open (not base64, altered, or moved): the
        caller then opens it with :meth:`open`, which names what is wrong.
        """
        decrypt = self._aead.decrypt
        prefix = self._aad_prefix
        a2b = binascii.a2b_base64
        out: list[bytes | None] = []
        append = out.append
        for value, context in zip(values, contexts, strict=True):
            try:
                raw = a2b(value[_PREFIX_LEN:], strict_mode=True)
                append(decrypt(raw[:_NONCE], raw[_NONCE:], prefix + context.encode()))
            except (binascii.Error, ValueError, InvalidTag, UnicodeEncodeError):
                append(None)
        return out

    def seal(self, plaintext: bytes, context: str) -> str:
        """``plaintext`` encrypted, bound to the owner and ``context`` (field, turn id)."""
        nonce = os.urandom(_NONCE)
        sealed = self._aead.encrypt(nonce, plaintext, self._aad(context))
        return SEALED_PREFIX + binascii.b2a_base64(nonce + sealed, newline=False).decode("ascii")

    def open(self, value: str, context: str, *, record: str) -> bytes:
        """The plaintext of a sealed ``value``; a failure names the record and the key id."""
        try:
            raw = binascii.a2b_base64(value[_PREFIX_LEN:], strict_mode=True)
        except (binascii.Error, ValueError):
            raise CorruptRecordError(
                record, f"field {context}: sealed value is not base64"
            ) from None
        if len(raw) < _NONCE + 16:
            raise CorruptRecordError(record, f"field {context}: sealed value is truncated")
        try:
            return self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], self._aad(context))
        except InvalidTag:
            raise EncryptionKeyError(
                record,
                self.key_id,
                f"does not open field {context} (the value was altered or moved from "
                "another session)",
            ) from None

    def _aad(self, context: str) -> bytes:
        return self._aad_prefix + context.encode("utf-8", "surrogatepass")

    def rewrap(self, keyring: Keyring) -> DataKey:
        """The same data key wrapped under the keyring's newest key."""
        return _wrap(self.raw, self.owner, keyring)


def _wrap(dek: bytes, owner: str, keyring: Keyring) -> DataKey:
    kek = keyring.newest
    nonce = os.urandom(_NONCE)
    owner_bytes = owner.encode("utf-8", "surrogatepass")
    wrapped = AESGCM(kek.key).encrypt(nonce, dek, _WRAP_AAD + owner_bytes)
    envelope = ".".join((_ENVELOPE_VERSION, kek.id, _b64(owner_bytes), _b64(nonce + wrapped)))
    return DataKey(owner=owner, key_id=kek.id, envelope=envelope, raw=dek)


def new_data_key(owner: str, keyring: Keyring) -> DataKey:
    """A fresh random data key for session ``owner``, wrapped under the newest key."""
    return _wrap(os.urandom(KEY_BYTES), owner, keyring)


def envelope_key_id(envelope: str) -> str | None:
    """The key id an envelope names (read in clear), or None when it is no envelope."""
    parts = envelope.split(".") if isinstance(envelope, str) else []
    return parts[1] if len(parts) == 4 and parts[0] == _ENVELOPE_VERSION else None


def open_envelope(envelope: str, keyring: Keyring | None, *, record: str) -> DataKey:
    """Unwrap the data key of ``envelope``; a missing or wrong key names its id."""
    parts = envelope.split(".") if isinstance(envelope, str) else []
    if len(parts) != 4 or parts[0] != _ENVELOPE_VERSION:
        raise CorruptRecordError(record, "field encryption key: not a key envelope")
    _, key_id, owner_text, wrapped_text = parts
    if keyring is None:
        raise EncryptionKeyError(record, key_id, "is needed but encryption_keys is empty")
    kek = keyring.get(key_id)
    if kek is None:
        raise EncryptionKeyError(record, key_id, "is not in encryption_keys")
    try:
        owner_bytes = _unb64(owner_text)
        wrapped = _unb64(wrapped_text)
        owner = owner_bytes.decode("utf-8", "surrogatepass")
    except (binascii.Error, ValueError):
        raise CorruptRecordError(record, "field encryption key: not base64") from None
    try:
        dek = AESGCM(kek.key).decrypt(wrapped[:_NONCE], wrapped[_NONCE:], _WRAP_AAD + owner_bytes)
    except (InvalidTag, ValueError):
        raise EncryptionKeyError(
            record, key_id, "does not open its data key (wrong key material under that id?)"
        ) from None
    return DataKey(owner=owner, key_id=key_id, envelope=envelope, raw=dek)
