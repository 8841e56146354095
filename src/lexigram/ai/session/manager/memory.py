"""Bridges sessions to the framework's memory services (working memory, consolidation)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from functools import partial
from typing import Any

from lexigram.contracts.ai.memory import (
    MemoryConsolidatorProtocol,
    MemoryEntry,
    WorkingMemoryProtocol,
)
from lexigram.contracts.ai.session import SessionTurn
from lexigram.logging import get_logger

__all__ = ["MemoryBridge", "memory_entry_id", "turn_to_memory_entry"]

logger = get_logger(__name__)

#: What ``MemoryBridge._guard`` answers for a call that failed or is still running.
_NOT_DONE = object()


def memory_entry_id(session_id: str, turn_id: str) -> str:
    """The ``MemoryEntry.id`` of a turn: unique across sessions (turn ids are per session)."""
    return f"{session_id}:{turn_id}"


def turn_to_memory_entry(session_id: str, user_id: str, turn: SessionTurn) -> MemoryEntry:
    """The ``MemoryEntry`` recording ``turn``: owned by the session's user.

    ``metadata`` is the turn's metadata plus ``session_id``, ``turn_id`` and, when
    set, ``model``/``provider``/``tokens_used``.
    """
    extra: dict[str, Any] = {"session_id": session_id, "turn_id": turn.turn_id}
    if turn.model:
        extra["model"] = turn.model
    if turn.provider:
        extra["provider"] = turn.provider
    if turn.tokens_used:
        extra["tokens_used"] = turn.tokens_used
    return MemoryEntry(
        id=memory_entry_id(session_id, turn.turn_id),
        owner_id=user_id,
        content=turn.content,
        role=turn.role,
        timestamp=turn.timestamp,
        metadata={**turn.metadata, **extra},
    )


class MemoryBridge:
    """Records turns in working memory and consolidates a closed session's turns.

    The turn is stored before memory sees it and a close has happened before
    consolidation starts. A memory call is waited for at most ``wait_s``: one that
    takes longer goes on in the background (at most ``timeout_s`` in all), so a slow
    memory service never holds up a write or a close for more than ``wait_s``, and
    one that fails or times out is logged and skipped: it never loses a turn.
    """

    def __init__(
        self,
        working_memory: WorkingMemoryProtocol | None = None,
        consolidator: MemoryConsolidatorProtocol | None = None,
        *,
        timeout_s: float = 10.0,
        wait_s: float = 0.25,
    ) -> None:
        self.working_memory = working_memory
        self.consolidator = consolidator
        self.timeout_s = timeout_s
        self.wait_s = wait_s
        # Calls still running in the background (kept referenced until they end).
        self._background: set[asyncio.Future[Any]] = set()

    async def _guard(self, what: str, session_id: str, call: Awaitable[Any]) -> Any:
        """``call``'s result when it finished within ``wait_s``; else :data:`_NOT_DONE`."""
        task = asyncio.ensure_future(asyncio.wait_for(call, timeout=self.timeout_s))
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=self.wait_s)
        except Exception as exc:
            if not task.done():  # slow, not failed: it finishes on its own
                logger.info(f"ai_session.{what}_background", session_id=session_id)
                self._background.add(task)
                task.add_done_callback(partial(self._ended, what, session_id))
                return _NOT_DONE
            self._log_failure(what, session_id, exc)
            return _NOT_DONE
        return task.result()

    def _ended(self, what: str, session_id: str, task: asyncio.Future[Any]) -> None:
        """A background call ended: log it when it failed or timed out."""
        self._background.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._log_failure(what, session_id, error)

    def _log_failure(self, what: str, session_id: str, exc: BaseException) -> None:
        if isinstance(exc, TimeoutError):
            logger.warning(
                f"ai_session.{what}_timeout", session_id=session_id, timeout_s=self.timeout_s
            )
        else:
            logger.warning(f"ai_session.{what}_failed", session_id=session_id, error=str(exc))

    async def record(self, session_id: str, user_id: str, turns: Sequence[SessionTurn]) -> int:
        """Add each turn to working memory, when one is registered; returns how many went in.

        Turns of a slow working memory are added in the background, one after another.
        """
        if self.working_memory is None:
            return 0
        entries = [turn_to_memory_entry(session_id, user_id, turn) for turn in turns]
        memory = self.working_memory

        async def add_all() -> int:
            added = 0
            for entry in entries:
                try:
                    await memory.add(entry)
                    added += 1
                except Exception as exc:  # logged; the next entries still go in
                    self._log_failure("working_memory", session_id, exc)
            return added

        added = await self._guard("working_memory", session_id, add_all())
        return 0 if added is _NOT_DONE else int(added)

    async def consolidate(
        self, session_id: str, user_id: str, turns: Sequence[SessionTurn]
    ) -> bool:
        """Hand the session's turns to the consolidator in one call; True when it succeeded."""
        if self.consolidator is None or not turns:
            return False
        entries = [turn_to_memory_entry(session_id, user_id, t) for t in turns]
        call = self.consolidator.consolidate(entries)
        return await self._guard("consolidation", session_id, call) is not _NOT_DONE
