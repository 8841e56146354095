"""Key rotation: re-wrap every stored data key under the keyring's newest key.

Batches of sessions (``batch`` at a time, resumable from the cursor each batch
reports), O(sessions): only the envelopes are rewritten, never a turn. A key can be
retired (removed from ``encryption_keys``) once :func:`key_usage` counts no record
naming it.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from lexigram.ai.session.encryption.cipher import (
    b64url_decode,
    b64url_encode,
    envelope_key_id,
    open_envelope,
)
from lexigram.ai.session.encryption.keyring import Keyring
from lexigram.ai.session.exceptions import SessionError, SessionValidationError
from lexigram.ai.session.stores.encrypted.envelopes import EnvelopeAccess

__all__ = ["RotationReport", "key_usage", "rotate_keys"]

#: What every resume cursor starts with. The rest is the backend's position and a tag,
#: each url-safe base64, joined by a dot.
_CURSOR_TAG = "rc1."
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_TAG_BYTES = 12


def _unb64(text: str) -> bytes:
    """:func:`b64url_decode` of strict url-safe base64 (it skips other characters)."""
    if not _BASE64URL.fullmatch(text):
        raise ValueError(text)
    return b64url_decode(text)


def _tag(keyring: Keyring, scope: str, position: str) -> bytes:
    """The cursor's tag: an HMAC of the position and the store, under the newest key.

    A cursor is thus only one a rotation of this store under this keyring printed;
    a made-up position, one from another store or prefix, or one printed before
    ``encryption_keys`` changed is refused (a run without it starts over, safely).
    """
    secret = hmac.new(keyring.newest.key, b"lexigram.ai.session/rotation-cursor", hashlib.sha256)
    message = scope.encode("utf-8", "surrogatepass") + b"\0" + position.encode()
    return hmac.new(secret.digest(), message, hashlib.sha256).digest()[:_TAG_BYTES]


def _cursor_out(position: str | None, keyring: Keyring, scope: str) -> str | None:
    """The opaque cursor printed for a backend position."""
    if position is None:
        return None
    tag = _tag(keyring, scope, position)
    return f"{_CURSOR_TAG}{b64url_encode(position.encode())}.{b64url_encode(tag)}"


def _cursor_in(cursor: str | None, keyring: Keyring, scope: str) -> str | None:
    """The backend position of a printed cursor; anything else is refused by name."""
    if cursor is None:
        return None
    try:
        if not isinstance(cursor, str) or not cursor.startswith(_CURSOR_TAG):
            raise ValueError(cursor)
        body, _, tag = cursor[len(_CURSOR_TAG) :].partition(".")
        position = _unb64(body).decode()
        if not position or not hmac.compare_digest(_unb64(tag), _tag(keyring, scope, position)):
            raise ValueError(cursor)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise SessionValidationError(
            "resume_from",
            f"{cursor!r} is not a cursor printed by an earlier rotation of this store "
            "under these keys (run it again without resume_from to start over)",
        ) from None
    return position


@dataclass
class RotationReport:
    """What a rotation run did; ``cursor`` resumes it (None once every session was seen)."""

    sessions_seen: int = 0
    sessions_rewrapped: int = 0
    envelopes_rewrapped: int = 0
    batches: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    cursor: str | None = None


async def rotate_keys(
    access: EnvelopeAccess,
    keyring: Keyring,
    *,
    batch: int = 500,
    resume_from: str | None = None,
    max_batches: int | None = None,
    progress: Callable[[RotationReport], None] | None = None,
) -> RotationReport:
    """Re-wrap every envelope not under ``keyring.newest``; report after each batch.

    A session whose envelope cannot be opened (its key missing from the keyring) is
    listed in ``failed`` with the error, and left as it was. ``resume_from`` must be a
    ``cursor`` an earlier run reported (``SessionValidationError`` naming it otherwise).
    """
    scope = access.scope
    position = _cursor_in(resume_from, keyring, scope)
    report = RotationReport(cursor=resume_from)
    newest = keyring.newest.id
    while True:
        found, position = await access.scan(position, max(batch, 1))
        changes: dict[str, dict[str, str]] = {}
        for session_id, envelopes in found:
            report.sessions_seen += 1
            swaps: dict[str, str] = {}
            for envelope in envelopes:
                if envelope_key_id(envelope) == newest:
                    continue
                try:
                    key = open_envelope(envelope, keyring, record=f"session {session_id!r}")
                except SessionError as exc:
                    report.failed.append((session_id, str(exc)))
                    continue
                swaps[envelope] = key.rewrap(keyring).envelope
            if swaps:
                changes[session_id] = swaps
        await access.replace(changes)
        report.sessions_rewrapped += len(changes)
        report.envelopes_rewrapped += sum(len(s) for s in changes.values())
        report.batches += 1
        report.cursor = _cursor_out(position, keyring, scope)
        if progress is not None:
            progress(report)
        if position is None or (max_batches is not None and report.batches >= max_batches):
            return report


async def key_usage(access: EnvelopeAccess, key_id: str) -> int:
    """How many stored records (headers, checkpoints) still need ``key_id``."""
    return await access.count(key_id)
