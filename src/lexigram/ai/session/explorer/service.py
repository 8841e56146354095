"""What the explorer reads and writes, over one :class:`SessionManagerAPI` and its store.

Pages and the JSON API both call these methods, so they always show the same data.
Every read is bounded: a page of sessions (the store's cursor), a page of turns
(``get_turn_seqs(after_seq, limit)``), the checkpoint headers (no turns), the branch
family (bounded walk) and the analytics series (turns read in pages).
"""

from __future__ import annotations

from dataclasses import dataclass

from lexigram.contracts.ai.session import SessionCheckpoint, SessionState, SessionTurn

from lexigram.ai.session.branching import BranchManager
from lexigram.ai.session.exceptions import (
    CheckpointNotFoundError,
    SessionNotFoundError,
    SessionValidationError,
)
from lexigram.ai.session.explorer.series import UsageSeries, load_series
from lexigram.ai.session.explorer.tree import BranchTree, load_tree
from lexigram.ai.session.manager.notifier import SessionNotifier
from lexigram.ai.session.manager.protocol import SessionManagerAPI
from lexigram.ai.session.manager.sealed_guard import SealedSessionGuard
from lexigram.ai.session.multi_agent.turn_state import GROUP_KEY
from lexigram.ai.session.stores.base import SessionPage, SessionRecord
from lexigram.ai.session.validation import check_id

__all__ = ["ExplorerService", "TurnEntry", "TurnPage", "is_group_turn"]


@dataclass(frozen=True)
class TurnEntry:
    """A turn with its 1-based position in the transcript and its ``seq`` (when known)."""

    position: int
    seq: int | None
    turn: SessionTurn


@dataclass(frozen=True)
class TurnPage:
    """One page of a transcript.

    ``next_after``/``next_position`` continue it (None on the last page);
    ``newest`` is True for the page of the newest turns.
    """

    entries: list[TurnEntry]
    next_after: int | None
    next_position: int | None
    newest: bool = False


def is_group_turn(turn: SessionTurn) -> bool:
    """Whether a group session recorded ``turn`` (it carries an agent or the group state)."""
    return GROUP_KEY in turn.metadata or isinstance(turn.metadata.get("agent"), str)


def _notifier_of(manager: SessionManagerAPI) -> SessionNotifier | None:
    """The manager's event notifier when it has one (a wrapped or fake manager may not)."""
    found = getattr(manager, "notifier", None)
    return found if isinstance(found, SessionNotifier) else None


class ExplorerService:
    """Reads (and, when allowed, writes) sessions for the explorer's pages and API."""

    def __init__(self, manager: SessionManagerAPI) -> None:
        self.manager = manager
        self.store = manager.store
        # Without keys, an encrypted session is refused by key id, never shown sealed.
        self.sealed = SealedSessionGuard(manager.store)
        # From the manager (its limits and subscribers, and its background, which
        # its wait_for_background() waits for), with the notifier found for it.
        self.branches = BranchManager(manager, notifier=_notifier_of(manager))

    @property
    def backend(self) -> str:
        """The store's backend name, with the SQL dialect (``sql (sqlite)``)."""
        name = self.store.backend_name or type(self.store).__name__
        dialect = getattr(getattr(getattr(self.store, "engine", None), "dialect", None),
                          "name", None)
        return f"{name} ({dialect})" if isinstance(dialect, str) else name

    # ------------------------------------------------------------------ reads
    async def sessions(
        self, user_id: str, *, status: str | None, cursor: str | None, limit: int
    ) -> SessionPage:
        """A page of the user's sessions, newest first (the store's cursor)."""
        page = await self.manager.list_sessions(
            user_id, status=status or None, limit=limit, cursor=cursor or None
        )
        return self.sealed.split_page(page)

    async def locked(self, page: SessionPage) -> dict[str, str]:
        """The ids of ``page.damaged`` that are encrypted under a key this process lacks,
        with that key's id (the others could not be decoded)."""
        found: dict[str, str] = {}
        for session_id in page.damaged:
            error = await self.sealed.key_error(session_id)
            if error is not None:
                found[session_id] = error.key_id or "?"
        return found

    async def record(self, session_id: str) -> SessionRecord:
        """The session's header and bookkeeping (no turns read)."""
        record = await self.store.load_record(check_id(session_id, "id"))
        if record is None:
            raise SessionNotFoundError(session_id)
        self.sealed.check_state(record.state)
        return record

    async def turns(
        self,
        record: SessionRecord,
        *,
        after: int | None,
        position: int,
        limit: int,
        newest: bool = False,
    ) -> TurnPage:
        """``limit`` turns after ``seq`` ``after`` (or the newest ``limit``)."""
        session_id = record.state.session_id
        if newest:
            turns = await self.store.get_turns(session_id, last=limit)
            first = max(1, record.state.turn_count - len(turns) + 1)
            entries = [TurnEntry(first + i, None, t) for i, t in enumerate(turns)]
            return TurnPage(entries, None, None, newest=True)
        rows = await self.store.get_turn_seqs(session_id, after_seq=after, limit=limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        entries = [TurnEntry(position + i, seq, t) for i, (seq, t) in enumerate(rows)]
        if more and rows:
            return TurnPage(entries, rows[-1][0], position + len(rows))
        return TurnPage(entries, None, None)

    async def checkpoints(self, session_id: str) -> list[SessionCheckpoint]:
        """The session's checkpoints, oldest first (header-only states)."""
        return await self.store.list_checkpoint_headers(session_id)

    async def tree(self, session_id: str) -> BranchTree:
        """The session's branch family (refused as the session's other pages are when its
        header cannot be opened: no keys, or keys that do not open it)."""
        await self.record(session_id)
        return await load_tree(self.store, session_id)

    async def series(self, session_id: str) -> UsageSeries:
        """Tokens and cost over turns, per model, agent, role and tool."""
        await self.record(session_id)
        return await load_series(self.store, session_id)

    # ----------------------------------------------------------------- writes
    async def close(self, session_id: str) -> None:
        """ACTIVE/SUSPENDED -> CLOSED (through the manager: events and hooks fire)."""
        await self.manager.close(check_id(session_id, "id"))

    async def restore(self, session_id: str, checkpoint_id: str) -> SessionState:
        """Put the session back to one of its checkpoints."""
        check_id(checkpoint_id, "checkpoint")
        await self.record(session_id)  # an unknown session is a 404, as on every page
        owned = {c.checkpoint_id for c in await self.checkpoints(session_id)}
        if checkpoint_id not in owned:
            if await self.store.load_checkpoint(checkpoint_id) is None:
                raise CheckpointNotFoundError(checkpoint_id)  # 404, as an unknown session
            raise SessionValidationError(
                "checkpoint", f"{checkpoint_id!r} is not a checkpoint of session {session_id!r}"
            )
        return await self.manager.restore(checkpoint_id)

    async def fork(
        self, session_id: str, branch_name: str, *, from_checkpoint: str | None
    ) -> SessionState:
        """A new branch of the session (at its end, or at one of its checkpoints)."""
        return await self.branches.fork(
            check_id(session_id, "id"),
            check_id(branch_name, "branch_name"),
            from_checkpoint=from_checkpoint or None,
        )
