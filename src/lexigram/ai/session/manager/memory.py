"""Bridges sessions to the framework's memory services (working memory, consolidation)."""

from __future__ import annotations

from collections.abc import Sequence

from lexigram.contracts.ai.memory import (
    MemoryConsolidatorProtocol,
    MemoryEntry,
    WorkingMemoryProtocol,
)
from lexigram.contracts.ai.session import SessionTurn
from lexigram.logging import get_logger

__all__ = ["MemoryBridge", "turn_to_memory_entry"]

logger = get_logger(__name__)


def turn_to_memory_entry(session_id: str, user_id: str, turn: SessionTurn) -> MemoryEntry:
    """The ``MemoryEntry`` recording ``turn`` (owned by the session's user)."""
    return MemoryEntry(
        id=turn.turn_id,
        owner_id=user_id,
        content=turn.content,
        role=turn.role,
        timestamp=turn.timestamp,
        metadata={
            **turn.metadata,
            "session_id": session_id,
            "turn_id": turn.turn_id,
            **({"model": turn.model} if turn.model else {}),
        },
    )


class MemoryBridge:
    """Records turns in working memory and consolidates a closed session's turns.

    Failures of a memory service are logged and swallowed: the turn is already
    stored and a close must not be blocked by memory.
    """

    def __init__(
        self,
        working_memory: WorkingMemoryProtocol | None = None,
        consolidator: MemoryConsolidatorProtocol | None = None,
    ) -> None:
        self.working_memory = working_memory
        self.consolidator = consolidator

    async def record(self, session_id: str, user_id: str, turns: Sequence[SessionTurn]) -> None:
        """Add each turn to working memory, when one is registered."""
        if self.working_memory is None:
            return
        for turn in turns:
            try:
                await self.working_memory.add(turn_to_memory_entry(session_id, user_id, turn))
            except Exception as exc:
                logger.warning(
                    "ai_session.working_memory_failed", session_id=session_id, error=str(exc)
                )

    async def consolidate(
        self, session_id: str, user_id: str, turns: Sequence[SessionTurn]
    ) -> None:
        """Hand the session's turns to the consolidator, when one is registered."""
        if self.consolidator is None or not turns:
            return
        entries = [turn_to_memory_entry(session_id, user_id, t) for t in turns]
        try:
            await self.consolidator.consolidate(entries)
        except Exception as exc:
            logger.warning("ai_session.consolidation_failed", session_id=session_id, error=str(exc))
