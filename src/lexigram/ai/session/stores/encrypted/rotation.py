"""Key rotation: re-wrap every stored data key under the keyring's newest key.

Batches of sessions (``batch`` at a time, resumable from the cursor each batch
reports), O(sessions): only the envelopes are rewritten, never a turn. A key can be
retired (removed from ``encryption_keys``) once :func:`key_usage` counts no record
naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lexigram.ai.session.encryption.cipher import envelope_key_id, open_envelope
from lexigram.ai.session.encryption.keyring import Keyring
from lexigram.ai.session.exceptions import SessionError
from lexigram.ai.session.stores.encrypted.envelopes import EnvelopeAccess

__all__ = ["RotationReport", "key_usage", "rotate_keys"]


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
    listed in ``failed`` with the error, and left as it was.
    """
    report = RotationReport(cursor=resume_from)
    newest = keyring.newest.id
    while True:
        found, next_cursor = await access.scan(report.cursor, max(batch, 1))
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
        report.cursor = next_cursor
        if progress is not None:
            progress(report)
        if next_cursor is None or (max_batches is not None and report.batches >= max_batches):
            return report


async def key_usage(access: EnvelopeAccess, key_id: str) -> int:
    """How many stored records (headers, checkpoints) still need ``key_id``."""
    return await access.count(key_id)
