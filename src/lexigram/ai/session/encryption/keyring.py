"""The keyring of ``encryption_keys``: key-encryption keys, newest first.

Each key is ``{"id": "...", "key": "<32 random bytes, url-safe base64>"}`` or the
compact string ``"id:key"``; a single string may hold several, comma-separated (the
form an environment variable takes). Keys are checked when the configuration is
built: a bad entry raises ``ConfigurationError`` naming
``ai_session.encryption_keys[i]`` and never showing the key. A key's ``repr`` hides it.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram.ai.session.redaction import MASK

__all__ = ["KEY_BYTES", "EncryptionKey", "Keyring", "new_key_text", "parse_keys"]

#: Length of every key-encryption key and data key (AES-256).
KEY_BYTES = 32
_KEY_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_FIELD = "ai_session.encryption_keys"


@dataclass(frozen=True, slots=True)
class EncryptionKey:
    """One key-encryption key: its id (stored in clear beside what it wraps) and 32 bytes."""

    id: str
    key: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"EncryptionKey(id={self.id!r}, key={MASK!r})"


def new_key_text(key_id: str) -> str:
    """A fresh key in the compact ``"id:key"`` form (32 random bytes, url-safe base64)."""
    return f"{key_id}:{base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


def _fail(where: str, problem: str) -> ConfigurationError:
    return ConfigurationError(f"{where}: {problem}")


#: A key's text: base64, url-safe or standard alphabet, padding optional.
_KEY_TEXT = re.compile(r"[A-Za-z0-9_\-+/]+={0,2}")


def _decode_key(text: Any, where: str) -> bytes:
    if not isinstance(text, str) or not text.strip():
        raise _fail(where, "must be 32 random bytes in url-safe base64 (a string)")
    raw = text.strip()
    try:
        if not _KEY_TEXT.fullmatch(raw):
            raise ValueError(raw)  # a stray character would otherwise be skipped
        key = base64.urlsafe_b64decode(
            raw.replace("+", "-").replace("/", "_") + "=" * (-len(raw) % 4)
        )
    except (binascii.Error, ValueError):
        raise _fail(where, "is not url-safe base64") from None
    if len(key) != KEY_BYTES:
        raise _fail(where, f"must decode to {KEY_BYTES} bytes, got {len(key)}")
    return key


def _entry(item: Any, where: str) -> EncryptionKey:
    key_id: Any
    text: Any
    if isinstance(item, str):
        key_id, sep, text = item.strip().partition(":")
        if not sep:
            raise _fail(where, "expected 'id:key' (the key is never shown)")
    elif isinstance(item, dict):
        unknown = sorted(str(k) for k in item if k not in ("id", "key"))
        if unknown:
            raise _fail(where, f"unknown field(s) {unknown}; expected 'id' and 'key'")
        key_id, text = item.get("id"), item.get("key")
    else:
        raise _fail(
            where, f"expected {{'id': ..., 'key': ...}} or 'id:key', got a {type(item).__name__}"
        )
    if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
        raise _fail(f"{where}.id", "must be 1-64 letters, digits, '_' or '-'")
    return EncryptionKey(id=key_id, key=_decode_key(text, f"{where}.key"))


def parse_keys(value: Any) -> tuple[EncryptionKey, ...]:
    """The keys ``value`` holds, newest first; ``ConfigurationError`` names a bad entry.

    None, ``""`` and ``[]`` mean no keys (encryption off); a value of only whitespace
    is refused, naming the field. An empty entry of the
    string form (``","``, ``"new:…,"``: ``"$NEW,$OLD"`` with a variable unset) is
    refused, naming it: it must not turn encryption off or drop a key silently.
    """
    if value is None:
        return ()
    items: list[Any]
    if isinstance(value, str):
        if not value:
            return ()
        if not value.strip():
            raise _fail(_FIELD, "is only whitespace (an unset variable?); use '' for no keys")
        items = value.split(",")
        for i, part in enumerate(items):
            if not part.strip():
                raise _fail(
                    f"{_FIELD}[{i}]",
                    "is empty (an unset variable in an 'id:key,id:key' list?)",
                )
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise _fail(
            _FIELD,
            f"expected a list of keys or an 'id:key,...' string, got a {type(value).__name__}",
        )
    keys = tuple(_entry(item, f"{_FIELD}[{i}]") for i, item in enumerate(items))
    seen: set[str] = set()
    for i, key in enumerate(keys):
        if key.id in seen:
            raise _fail(f"{_FIELD}[{i}].id", f"key id {key.id!r} appears twice")
        seen.add(key.id)
    return keys


@dataclass(frozen=True)
class Keyring:
    """Key-encryption keys by id; the first (newest) wraps every new data key."""

    keys: tuple[EncryptionKey, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise _fail(_FIELD, "a keyring needs at least one key")

    @classmethod
    def from_config(cls, value: Any) -> Keyring | None:
        """The keyring of an ``encryption_keys`` value, or None when it holds no key."""
        keys = parse_keys(value)
        return cls(keys) if keys else None

    @property
    def newest(self) -> EncryptionKey:
        """The key new data keys are wrapped with."""
        return self.keys[0]

    @property
    def ids(self) -> tuple[str, ...]:
        """Key ids, newest first."""
        return tuple(k.id for k in self.keys)

    def get(self, key_id: str) -> EncryptionKey | None:
        """The key named ``key_id``, or None when the keyring lacks it."""
        for key in self.keys:
            if key.id == key_id:
                return key
        return None

    def __iter__(self) -> Iterator[EncryptionKey]:
        return iter(self.keys)

    def __repr__(self) -> str:
        return f"Keyring(ids={list(self.ids)!r})"
