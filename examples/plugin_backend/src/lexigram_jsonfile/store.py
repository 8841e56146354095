"""``JsonFileSessionStore``: the reference in-memory store, loaded from and saved to a file.

Every atomic operation is the in-memory store's own (so the store passes the shipped
conformance suite as it is); ``initialize()`` reads the file written by the last
``close()``, in the format of ``lexigram-ai-session export`` (plus a ``tombstones`` map
of purged ids while any is kept).

It is a single-process store: one process owns the file. Two processes on one file do
not see each other's writes, both accept the same new id, and the last to close wins.
"""

from __future__ import annotations

import json
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from lexigram.contracts.ai.session import SessionState, SessionStatus

from lexigram.ai.session.cli.transfer import (
    dump_document,
    fork_point,
    parse_document,
    session_to_dict,
)
from lexigram.ai.session.stores import InMemorySessionStore
from lexigram.ai.session.stores.base import SessionRecord

__all__ = ["JsonFileSessionStore", "write_atomically"]


def write_atomically(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temp file of this writer's own (pid and a
    random suffix: two processes closing at once never write or rename each other's)."""
    partial = target.with_name(f"{target.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _split_tombstones(raw: bytes) -> tuple[bytes | str, dict[str, str]]:
    """The export document of the file, and its tombstones (id -> ISO time until)."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return raw, {}  # parse_document names what is wrong
    if not isinstance(doc, dict) or "tombstones" not in doc:
        return raw, {}
    tombstones = doc.pop("tombstones")
    return json.dumps(doc), tombstones


class JsonFileSessionStore(InMemorySessionStore):
    """Sessions in memory, persisted to ``path`` (JSON) by ``close()``; one process only.

    With ``keep_backup`` the previous file is kept as ``<path>.bak`` on each save.
    """

    backend_name = "jsonfile"

    def __init__(
        self, path: str | Path, *, session_ttl: int = 0, keep_backup: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(session_ttl=session_ttl, **kwargs)
        self.path = Path(path)
        self.keep_backup = keep_backup
        self._ids: dict[str, None] = {}  # every id stored, in order of creation
        self._purged: dict[str, datetime] = {}  # tombstones: id -> until
        self._closed = False

    async def initialize(self) -> None:
        """Load the file (when it exists) into memory."""
        await super().initialize()
        if not self.path.exists():
            return
        raw, tombstones = _split_tombstones(self.path.read_bytes())
        # Oldest first, as `lexigram-ai-session import` does: a parent is saved before
        # its branches, which are then its branches again (ties keep the file's order).
        entries = sorted(parse_document(raw), key=lambda e: e.state.created_at)
        for entry in entries:
            if entry.fork_seq is None:
                await self.save(entry.state)
            else:  # a branch with its fork point, as the import stores it
                await self.create_session(entry.state, fork_seq=entry.fork_seq)
            for checkpoint in entry.checkpoints:
                await self.save_checkpoint(checkpoint)
        for session_id, until in tombstones.items():
            await self._restore_tombstone(session_id, datetime.fromisoformat(until))

    async def _restore_tombstone(self, session_id: str, until: datetime) -> None:
        """Put a tombstone back the way it was made: an ended session, purged."""
        if until > self.now() and await self.load_record(session_id) is None:
            now = self.now()
            await self.save(SessionState(
                session_id=session_id, user_id=session_id, status=SessionStatus.CLOSED,
                created_at=now, updated_at=now,
            ))
            await self.purge(session_id, tombstone_until=until)

    def _created(self, session_id: str) -> None:
        """Remember a new session's id, as the newest."""
        self._ids.pop(session_id, None)
        self._ids[session_id] = None

    async def create_session(
        self,
        state: SessionState,
        *,
        max_live_per_user: int | None = None,
        fork_seq: int | None = None,
    ) -> SessionRecord:
        """Create, and remember the id for the file (``fork_seq``: a branch's fork point,
        as an import gives it; see the store contract)."""
        created = await super().create_session(
            state, max_live_per_user=max_live_per_user, fork_seq=fork_seq
        )
        self._created(state.session_id)
        return created

    async def save(self, state: SessionState) -> None:
        """Save, and remember the id for the file."""
        await super().save(state)
        self._ids.setdefault(state.session_id)

    async def fork_session(
        self,
        source_id: str,
        branch: SessionState,
        *,
        from_checkpoint: str | None = None,
        max_branches: int | None = None,
        max_live_per_user: int | None = None,
        owner: str | None = None,
    ) -> SessionRecord:
        """Fork, and remember the branch's id for the file."""
        record = await super().fork_session(
            source_id,
            branch,
            from_checkpoint=from_checkpoint,
            max_branches=max_branches,
            max_live_per_user=max_live_per_user,
            owner=owner,
        )
        self._created(branch.session_id)
        return record

    async def purge(self, session_id: str, *, tombstone_until: datetime) -> bool:
        """Purge, and remember the tombstone for the file."""
        removed = await super().purge(session_id, tombstone_until=tombstone_until)
        if removed:
            self._purged[session_id] = tombstone_until
        return removed

    async def close(self) -> None:
        """Write every session (with its checkpoints) and tombstone to the file, atomically
        (once)."""
        if self._closed:
            return
        self._closed = True
        entries = []
        for session_id in list(self._ids):
            state = await self.load(session_id)
            if state is not None:
                checkpoints = await self.list_checkpoints(session_id)
                fork_seq = await fork_point(self, state)
                entries.append(session_to_dict(state, checkpoints, fork_seq=fork_seq))
        data = dump_document(entries)
        now = self.now()
        tombstones = {sid: t.isoformat() for sid, t in self._purged.items() if t > now}
        if tombstones:  # without any, the file is a plain export document
            doc = json.loads(data)
            doc["tombstones"] = tombstones
            data = json.dumps(doc, indent=2).encode() + b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.keep_backup and self.path.exists():
            write_atomically(self.path.with_name(self.path.name + ".bak"), self.path.read_bytes())
        write_atomically(self.path, data)
        await super().close()
