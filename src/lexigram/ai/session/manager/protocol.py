"""``SessionManagerAPI``: the whole public API of the session manager, as a protocol.

The framework's ``SessionManagerProtocol`` has eight methods; this one has every
method of :class:`~lexigram.ai.session.manager.core.SessionManagerImpl` plus its
``config`` and ``store``, except ``open`` (a constructor) and the two shutdown helpers
``track_background`` and ``wait_for_background``, which the Agents SDK adapter and the
module use when a manager has them (so a fake needs neither). The middleware, the
context, group sessions, the Agents SDK adapter and the CLI are typed against it and
check it (``isinstance`` against this runtime-checkable protocol), so a wrapped,
proxied or fake manager with the same methods is accepted. Methods are declared as
returning awaitables (an ``async def`` satisfies them, and so does a decorated method
returning any awaitable).
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, runtime_checkable

from lexigram.contracts.ai.session import SessionCheckpoint, SessionState, SessionTurn

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.manager.privacy import UserExport
from lexigram.ai.session.stores.base import SessionPage, SessionStore, UserErasure

__all__ = ["SessionManagerAPI"]


@runtime_checkable
class SessionManagerAPI(Protocol):
    """What every session manager offers (see ``SessionManagerImpl`` for each method)."""

    config: SessionConfig
    """The manager's settings."""

    store: SessionStore
    """The store it writes through."""

    def create(
        self,
        user_id: str,
        metadata: dict[str, Any] | None = None,
        *,
        system_prompt: str | None = None,
        variables: dict[str, Any] | None = None,
        active_tools: Sequence[str] | None = None,
        active_skills: Sequence[str] | None = None,
        session_id: str | None = None,
    ) -> Awaitable[SessionState]:
        """Create a session for ``user_id``."""

    def get_state(self, session_id: str) -> Awaitable[SessionState | None]:
        """The session with its live turns, or None."""

    def get_header(self, session_id: str) -> Awaitable[SessionState | None]:
        """The session without its turns, or None."""

    def get_turns(
        self, session_id: str, *, last: int | None = None
    ) -> Awaitable[list[SessionTurn]]:
        """The live turns (the newest ``last`` of them)."""

    def list_sessions(
        self,
        user_id: str,
        *,
        status: Any = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Awaitable[SessionPage]:
        """A page of the user's sessions, newest first."""

    def count_live_sessions(self, user_id: str) -> Awaitable[int]:
        """The user's ACTIVE and SUSPENDED sessions."""

    def add_turn(self, session_id: str, turn: SessionTurn) -> Awaitable[None]:
        """Append one turn."""

    def add_turns(self, session_id: str, turns: Sequence[SessionTurn]) -> Awaitable[SessionState]:
        """Append turns, all or none."""

    def add_message(
        self,
        session_id: str,
        role: str,
        content: str,
        *,
        tokens_used: int = 0,
        cost: float = 0.0,
        model: str | None = None,
        provider: str | None = None,
        metadata: dict[str, Any] | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
    ) -> Awaitable[SessionTurn]:
        """Append a message built from its parts."""

    def pop_turn(self, session_id: str) -> Awaitable[SessionTurn | None]:
        """Remove the newest turn."""

    def clear_turns(self, session_id: str) -> Awaitable[int]:
        """Remove every turn; how many."""

    def update(
        self,
        session_id: str,
        *,
        variables: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        active_tools: Sequence[str] | None = None,
        active_skills: Sequence[str] | None = None,
        system_prompt: str | None = None,
    ) -> Awaitable[SessionState]:
        """Change the session's mutable fields."""

    def suspend(self, session_id: str) -> Awaitable[SessionState]:
        """ACTIVE -> SUSPENDED."""

    def resume(self, session_id: str) -> Awaitable[SessionState | None]:
        """SUSPENDED -> ACTIVE."""

    def close(self, session_id: str) -> Awaitable[None]:
        """End the session."""

    def delete(self, session_id: str) -> Awaitable[bool]:
        """Delete the session; whether it existed."""

    def erase_user(self, user_id: str) -> Awaitable[UserErasure]:
        """Erase every session of ``user_id`` with its branches, checkpoints and turns."""

    def export_user(self, user_id: str) -> Awaitable[UserExport]:
        """Everything stored about ``user_id`` (sessions, branches, checkpoints, turns)."""

    def checkpoint(
        self, session_id: str, metadata: dict[str, Any] | None = None
    ) -> Awaitable[SessionCheckpoint]:
        """Snapshot the session."""

    def restore(self, checkpoint_id: str) -> Awaitable[SessionState]:
        """Make a checkpoint's turns the live ones."""

    def list_checkpoints(self, session_id: str) -> Awaitable[list[SessionCheckpoint]]:
        """The session's checkpoints, oldest first."""

    def dispose(self) -> Awaitable[None]:
        """Stop background work and close the store."""

    def health_check(self) -> Awaitable[bool]:
        """Whether the store answers."""
