"""Hook names and payloads fired through the framework's ``HookRegistry``.

Handlers are registered with ``HookRegistry.register_action(HOOK_*, handler)`` and
receive the payload as the keyword argument ``payload``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "HOOK_BRANCH_MERGED",
    "HOOK_CHECKPOINT_CREATED",
    "HOOK_CHECKPOINT_RESTORED",
    "HOOK_SESSION_CLOSED",
    "HOOK_SESSION_EXPIRED",
    "HOOK_SESSION_FORKED",
    "HOOK_SESSION_STARTED",
    "HOOK_TURN_ADDED",
    "HOOK_USER_ERASED",
    "SessionBranchMergedHook",
    "SessionCheckpointCreatedHook",
    "SessionCheckpointRestoredHook",
    "SessionClosedHook",
    "SessionExpiredHook",
    "SessionForkedHook",
    "SessionStartedHook",
    "SessionTurnAddedHook",
    "SessionUserErasedHook",
]

HOOK_SESSION_STARTED = "ai_session.session_started"
HOOK_TURN_ADDED = "ai_session.turn_added"
HOOK_CHECKPOINT_CREATED = "ai_session.checkpoint_created"
HOOK_CHECKPOINT_RESTORED = "ai_session.checkpoint_restored"
HOOK_SESSION_CLOSED = "ai_session.session_closed"
HOOK_SESSION_EXPIRED = "ai_session.session_expired"
HOOK_SESSION_FORKED = "ai_session.session_forked"
HOOK_BRANCH_MERGED = "ai_session.branch_merged"
HOOK_USER_ERASED = "ai_session.user_erased"


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
    """Fired when a session ends: ``reason`` is ``closed``, ``max_turns`` or ``expired``."""

    session_id: str
    reason: str = "closed"
    user_id: str = ""


@dataclass(frozen=True, kw_only=True)
class SessionExpiredHook:
    """Fired when a session is marked EXPIRED (then ``SessionClosedHook`` follows)."""

    session_id: str
    user_id: str = ""


@dataclass(frozen=True, kw_only=True)
class SessionForkedHook:
    """Fired when a branch session ``branch_id`` was forked from ``session_id``."""

    session_id: str
    branch_id: str
    branch_name: str


@dataclass(frozen=True, kw_only=True)
class SessionBranchMergedHook:
    """Fired when branch ``branch_id`` was merged into ``session_id``."""

    session_id: str
    branch_id: str
    merged_turns: int = 0


@dataclass(frozen=True, kw_only=True)
class SessionUserErasedHook:
    """Fired when ``erase_user`` removed every session of ``user_id`` (counts only)."""

    user_id: str
    sessions: int = 0
    checkpoints: int = 0
    turns: int = 0
