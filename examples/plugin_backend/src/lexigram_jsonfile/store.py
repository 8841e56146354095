"""``JsonFileSessionStore``: the reference in-memory store, loaded from and saved to a file.

Every atomic operation is the in-memory store's own (so the store passes the shipped
conformance suite as it is); ``initialize()`` reads the file written by the last
``close()``, in the format of ``lexigram-ai-session export``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from lexigram.contracts.ai.session import SessionState

from lexigram.ai.session.cli.transfer import dump_document, parse_document, session_to_dict
from lexigram.ai.session.stores import InMemorySessionStore
from lexigram.ai.session.stores.base import SessionRecord

__all__ = ["JsonFileSessionStore"]


class JsonFileSessionStore(InMemorySessionStore):
    """Sessions in memory, persisted to ``path`` (JSON) by ``close()``.

    With ``keep_backup`` the previous file is kept as ``<path>.bak`` on each save.
    """

    backend_name = "jsonfile"

    def __init__(
        self, path: str | Path, *, session_ttl: int = 0, keep_backup: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(session_ttl=session_ttl, **kwargs)
        self.path = Path(path)
        self.keep_backup = keep_backup
        self._ids: set[str] = set()
        self._closed = False

    async def initialize(self) -> None:
        """Load the file (when it exists) into memory."""
        await super().initialize()
        if not self.path.exists():
            return
        for entry in parse_document(self.path.read_bytes()):
            await self.save(entry.state)
            for checkpoint in entry.checkpoints:
                await self.save_checkpoint(checkpoint)

    async def create_session(
        self, state: SessionState, *, max_live_per_user: int | None = None
    ) -> SessionRecord:
        """Create, and remember the id for the file."""
        created = await super().create_session(state, max_live_per_user=max_live_per_user)
        self._ids.add(state.session_id)
        return created

    async def save(self, state: SessionState) -> None:
        """Save, and remember the id for the file."""
        await super().save(state)
        self._ids.add(state.session_id)

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
        self._ids.add(branch.session_id)
        return record

    async def close(self) -> None:
        """Write every session (with its checkpoints) to the file, atomically (once)."""
        if self._closed:
            return
        self._closed = True
        entries = []
        for session_id in sorted(self._ids):
            state = await self.load(session_id)
            if state is not None:
                entries.append(session_to_dict(state, await self.list_checkpoints(session_id)))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(self.path.suffix + ".partial")
        partial.write_bytes(dump_document(entries))
        if self.keep_backup and self.path.exists():
            shutil.copy2(self.path, self.path.with_suffix(self.path.suffix + ".bak"))
        os.replace(partial, self.path)
        await super().close()
