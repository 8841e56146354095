"""Where each durable backend keeps key envelopes, for rotation and for retiring a key.

An envelope (see :mod:`.cipher`) sits in clear in a session header's metadata and,
copied by the backend, in the header snapshot of each of its checkpoints. The
accessors below find them in batches (resumable through an opaque cursor), replace
envelopes of one session in one atomic step (one SQL transaction; one Lua script on
the session's Redis slot), and count the records whose envelope names a key id.
Only the envelope strings change: no turn and no sealed value is rewritten.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

import orjson

from lexigram.ai.session.exceptions import SessionStoreError
from lexigram.ai.session.stores.base import KEY_ENVELOPE_FIELD, SessionStore

__all__ = [
    "EnvelopeAccess",
    "checkpoint_envelope",
    "envelope_access",
    "key_pattern",
    "metadata_envelope",
    "names_key",
]

Found = list[tuple[str, set[str]]]


#: An envelope value (``v1.<key id>.<session>.<wrapped data key>``).
_ENVELOPE = re.compile(r"v1\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]+")


def _json(text: Any) -> Any:
    """``text`` (stored JSON, bytes or str) decoded; None when it is not JSON or holds
    no envelope field at all (most plaintext records: no parse)."""
    if text is None:
        return None
    if isinstance(text, bytes | bytearray):
        raw = bytes(text)
        if KEY_ENVELOPE_FIELD.encode() not in raw:
            return None
        text = raw
    elif isinstance(text, str):
        if KEY_ENVELOPE_FIELD not in text:
            return None
    else:
        return text  # already decoded (a driver returning JSON columns as objects)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def metadata_envelope(metadata: Any) -> set[str]:
    """The envelope of a stored session metadata object: its top-level key field only.

    The encrypted store puts it there and refuses that field from callers, so a value
    shaped like an envelope anywhere else (nested metadata, variables of a plaintext
    session) is the caller's data, not a key's: it is neither rotated nor counted.
    """
    value = _json(metadata)
    if isinstance(value, str):  # metadata stored as a JSON string inside a JSON value
        value = _json(value)
    envelope = value.get(KEY_ENVELOPE_FIELD) if isinstance(value, dict) else None
    if isinstance(envelope, str) and _ENVELOPE.fullmatch(envelope):
        return {envelope}
    return set()


def checkpoint_envelope(snapshot: Any, *path: str) -> set[str]:
    """The envelope of a stored checkpoint: its header's metadata, found at ``path``
    (``("metadata",)`` in the SQL header column; ``("h", "m")`` in a Redis checkpoint)."""
    value = _json(snapshot)
    for key in path:
        if not isinstance(value, dict):
            return set()
        value = value.get(key)
    return metadata_envelope(value)


class EnvelopeAccess(Protocol):
    """Batch access to the key envelopes one backend stores."""

    #: Which store this is (backend and prefix): a rotation cursor is bound to it.
    scope: str

    async def scan(self, cursor: str | None, limit: int) -> tuple[Found, str | None]:
        """Up to about ``limit`` sessions after ``cursor`` with their envelopes; next cursor."""
        ...

    async def replace(self, changes: Mapping[str, Mapping[str, str]]) -> None:
        """Swap envelopes (old -> new) of each session, atomically per session."""
        ...

    async def count(self, key_id: str) -> int:
        """How many stored records (headers, checkpoints) hold an envelope naming ``key_id``."""
        ...


def envelope_access(store: SessionStore) -> EnvelopeAccess:
    """The accessor of ``store``'s backend (the plain store under an encrypting one)."""
    inner = getattr(store, "inner", store)
    # By class, not by attribute names: a plugin store with a ``client`` and ``keys``
    # was driven as Redis and failed with a raw AttributeError.
    module = type(inner).__module__
    if module.startswith("lexigram.ai.session.stores.sql."):
        from lexigram.ai.session.stores.encrypted.envelopes_sql import SqlEnvelopes
        from lexigram.ai.session.stores.sql.store import DatabaseSessionStore

        if isinstance(inner, DatabaseSessionStore):
            return SqlEnvelopes(inner)
    if module.startswith("lexigram.ai.session.stores.redis."):
        from lexigram.ai.session.stores.encrypted.envelopes_redis import RedisEnvelopes
        from lexigram.ai.session.stores.redis.store import CacheSessionStore

        if isinstance(inner, CacheSessionStore):
            return RedisEnvelopes(inner)
    from lexigram.ai.session.stores.in_memory import InMemorySessionStore

    if type(inner) is InMemorySessionStore:  # a plugin may build on it and be durable
        raise SessionStoreError(
            f"key rotation needs a durable backend; {type(inner).__name__} keeps its data "
            "keys in this process only"
        )
    raise SessionStoreError(
        f"key rotation and retiring a key are built for the SQL and Redis backends; "
        f"{type(inner).__name__} (backend {inner.backend_name!r}) gives no access to the "
        "key envelopes it stores. Its sessions still read and write under every key in "
        "the keyring; keep an old key there as long as it may hold sessions sealed under it"
    )


def names_key(envelopes: set[str], key_id: str) -> bool:
    """Whether one of ``envelopes`` (from :func:`metadata_envelope` /
    :func:`checkpoint_envelope`) wraps its data key under ``key_id``."""
    prefix = f"v1.{key_id}."
    return any(envelope.startswith(prefix) for envelope in envelopes)


def key_pattern(key_id: str) -> str:
    """The text every envelope naming ``key_id`` contains."""
    return f'"v1.{key_id}.'
