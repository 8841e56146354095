"""Refusing encrypted sessions in a process configured without encryption keys.

A store shared by processes with ``encryption_keys`` and one started without them (a
configuration mistake) holds sessions this process cannot open. Reading one would hand
out sealed text, and writing one would store plaintext beside sealed values or replace
the metadata that carries the session's wrapped data key, which loses every turn.
So, when the manager's store does not encrypt, each such read or write raises
``EncryptionKeyError`` naming the key id the session needs, and nothing is written.

A write is checked against the stored header once per session per process: sessions
this process has seen in clear (created, read, written) are kept in a bounded set
(oldest out first), so the common write costs no extra read. A session deleted and
created again encrypted by another process under the same id, while this process still
holds it as plaintext, is not caught.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from lexigram.contracts.ai.session import SessionState, SessionTurn

from lexigram.ai.session.encryption.markers import SEALED_PREFIXES, envelope_key_id
from lexigram.ai.session.exceptions import CorruptRecordError, EncryptionKeyError
from lexigram.ai.session.stores.base import (
    SessionPage,
    SessionStore,
    envelope_of,
    refuse_key_field,
)
from lexigram.ai.session.stores.encrypted.lru import Lru

__all__ = ["SealedSessionGuard"]

#: How many sessions a manager remembers as seen in clear.
PLAIN_SESSIONS = 10_000


class SealedSessionGuard:
    """The checks above, for one manager; every method is a no-op over an encrypting store."""

    def __init__(self, store: SessionStore, size: int = PLAIN_SESSIONS) -> None:
        self.store = store
        # An encrypting store opens (or refuses by key id) what it reads itself.
        self.active = getattr(store, "keyring", None) is None
        self._plain: Lru[str, bool] = Lru(size)

    def check_state(self, state: SessionState | None) -> None:
        """Refuse ``state`` when it is encrypted; remember it as plaintext otherwise."""
        if state is None or not self.active:
            return
        envelope = envelope_of(state)
        if envelope is None:
            self._plain.put(state.session_id, True)
            return
        self._plain.pop(state.session_id)
        raise EncryptionKeyError(
            f"session {state.session_id!r}",
            envelope_key_id(envelope) or "?",
            "is needed but encryption_keys is empty",
        )

    async def key_error(self, session_id: str) -> EncryptionKeyError | None:
        """Why the stored session cannot be opened by this process's keys, or None.

        None when it opens, is gone, or is damaged otherwise (``CorruptRecordError``):
        what a listing's ``damaged`` entry turns out to be.
        """
        try:
            record = await self.store.load_record(session_id)
            if record is not None:
                self.check_state(record.state)
        except CorruptRecordError:
            return None
        except EncryptionKeyError as exc:
            return exc
        return None

    def seen(self, state: SessionState) -> None:
        """Remember a session a write reply showed in clear (never raises)."""
        if self.active and state.session_id not in self._plain and envelope_of(state) is None:
            self._plain.put(state.session_id, True)

    def split_page(self, page: SessionPage) -> SessionPage:
        """``page`` with the encrypted sessions moved from ``items`` to ``damaged``."""
        if not self.active:
            return page
        items: list[SessionState] = []
        damaged = list(page.damaged)
        for state in page.items:
            if envelope_of(state) is None:
                items.append(state)
            else:
                damaged.append(state.session_id)
        if len(items) == len(page.items):
            return page
        return replace(page, items=items, damaged=damaged)

    def check_metadata(self, metadata: dict[str, Any] | None) -> None:
        """Refuse the key-envelope field in metadata this process writes."""
        if self.active:
            refuse_key_field(metadata)

    def write_unchecked(self, session_id: str) -> bool:
        """Whether a write to ``session_id`` must read its header first (see :meth:`check`)."""
        return self.active and session_id not in self._plain

    def looks_sealed(self, turns: Sequence[SessionTurn]) -> bool:
        """Whether turns read may come from an encrypted session (then :meth:`check`).

        An encrypted session's turns are all sealed; the oldest and the newest are
        looked at (the newest alone would miss plaintext an older release appended).
        """
        if not self.active or not turns:
            return False
        first, last = turns[0].content, turns[-1].content
        return (type(first) is str and first.startswith(SEALED_PREFIXES)) or (
            type(last) is str and last.startswith(SEALED_PREFIXES)
        )

    async def check(self, session_id: str) -> None:
        """Read the session's header and refuse it when it is encrypted."""
        record = await self.store.load_record(session_id)
        if record is not None:
            self.check_state(record.state)

    async def sealed_turns(self, session_id: str, turns: Sequence[SessionTurn]) -> bool:
        """Whether ``turns`` read without keys are an encrypted session's sealed text.

        Plaintext that merely starts like a sealed value (a pasted token) is not: the
        session's header decides (read only when the turns look sealed).
        """
        if not self.looks_sealed(turns):
            return False
        try:
            await self.check(session_id)
        except EncryptionKeyError:
            return True
        return False
