"""Hook names and payloads fired through the framework's ``HookRegistry``.

Handlers are registered with ``HookRegistry.register_action(HOOK_*, handler)`` and
receive the payload as the keyword argument ``payload``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "HOOK_CHECKPOINT_CREATED",
    "HOOK_CHECKPOINT_RESTORED",
    "HOOK_SESSION_CLOSED",
    "HOOK_SESSION_EXPIRED",
    "HOOK_SESSION_STARTED",
    "HOOK_TURN_ADDED",
    "SessionCheckpointCreatedHook",
    "SessionCheckpointRestoredHook",
    "SessionClosedHook",
    "SessionExpiredHook",
    "SessionStartedHook",
    "SessionTurnAddedHook",
]

HOOK_SESSION_STARTED = "ai_session.session_started"
HOOK_TURN_ADDED = "ai_session.turn_added"
HOOK_CHECKPOINT_CREATED = "ai_session.checkpoint_created"
HOOK_CHECKPOINT_RESTORED = "ai_session.checkpoint_restored"
HOOK_SESSION_CLOSED = "ai_session.session_closed"
HOOK_SESSION_EXPIRED = "ai_session.session_expired"


@dataclass(frozen=True, kw_only=True)
class SessionStartedHook:
    """Fired when a session is created."""

    session_id: str
    user_id: str = ""


@dataclass(frozen=True, kw_only=True)
class SessionTurnAddedHook:
    """Fired after a turn was appended."""

    session_id: str
    turn_id: str
    turn_count: int


@dataclass(frozen=True, kw_only=True)
class SessionCheckpointCreatedHook:
    """Fired when a checkpoint is persisted."""

    session_id: str
    checkpoint_id: str = ""


@dataclass(frozen=True, kw_only=True)
class SessionCheckpointRestoredHook:
    """Fired when a session is restored from a checkpoint."""

    session_id: str
    checkpoint_id: str


@dataclass(frozen=True, kw_only=True)
class SessionClosedHook:
    """Fired when a session is closed (by the caller or the turn cap)."""

    session_id: str
    reason: str = "closed"


@dataclass(frozen=True, kw_only=True)
class SessionExpiredHook:
    """Fired when a session is marked EXPIRED."""

    session_id: str
