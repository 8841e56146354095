"""Bridges sessions to the framework's memory services (working memory, consolidation)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
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
    consolidation starts, so a memory service that fails, or takes longer than
    ``timeout_s``, is logged and skipped: it never loses a turn nor blocks a close.
    """

    def __init__(
        self,
        working_memory: WorkingMemoryProtocol | None = None,
        consolidator: MemoryConsolidatorProtocol | None = None,
        *,
        timeout_s: float = 10.0,
    ) -> None:
        self.working_memory = working_memory
        self.consolidator = consolidator
        self.timeout_s = timeout_s

    async def _guard(self, what: str, session_id: str, call: Awaitable[Any]) -> bool:
        try:
            await asyncio.wait_for(call, timeout=self.timeout_s)
        except TimeoutError:
            logger.warning(
                f"ai_session.{what}_timeout", session_id=session_id, timeout_s=self.timeout_s
            )
            return False
        except Exception as exc:
            logger.warning(f"ai_session.{what}_failed", session_id=session_id, error=str(exc))
            return False
        return True

    async def record(self, session_id: str, user_id: str, turns: Sequence[SessionTurn]) -> int:
        """Add each turn to working memory, when one is registered; returns how many went in."""
        if self.working_memory is None:
            return 0
        added = 0
        for turn in turns:
            entry = turn_to_memory_entry(session_id, user_id, turn)
            added += await self._guard("working_memory", session_id, self.working_memory.add(entry))
        return added

    async def consolidate(
        self, session_id: str, user_id: str, turns: Sequence[SessionTurn]
    ) -> bool:
        """Hand the session's turns to the consolidator in one call; True when it succeeded."""
        if self.consolidator is None or not turns:
            return False
        entries = [turn_to_memory_entry(session_id, user_id, t) for t in turns]
        call = self.consolidator.consolidate(entries)
        return await self._guard("consolidation", session_id, call)
