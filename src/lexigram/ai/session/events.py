"""Domain events published through the framework's event bus (when one is registered)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lexigram.contracts.domain.events import DomainEvent

__all__ = [
    "SessionBranchMergedEvent",
    "SessionCheckpointCreatedEvent",
    "SessionCheckpointRestoredEvent",
    "SessionClosedEvent",
    "SessionCreatedEvent",
    "SessionExpiredEvent",
    "SessionForkedEvent",
    "SessionUserErasedEvent",
]


@dataclass(frozen=True, init=False)
class SessionCreatedEvent(DomainEvent):
    """A session was created."""

    session_id: str = field(kw_only=True)
    user_id: str | None = field(kw_only=True, default=None)


@dataclass(frozen=True, init=False)
class SessionClosedEvent(DomainEvent):
    """A session was closed (by the caller, by the turn cap) or expired."""

    session_id: str = field(kw_only=True)
    user_id: str | None = field(kw_only=True, default=None)
    duration_seconds: float = field(kw_only=True, default=0.0)
    reason: str = field(kw_only=True, default="closed")


@dataclass(frozen=True, init=False)
class SessionExpiredEvent(DomainEvent):
    """A session idle longer than ``session_ttl`` was marked EXPIRED."""

    session_id: str = field(kw_only=True)
    user_id: str | None = field(kw_only=True, default=None)


@dataclass(frozen=True, init=False)
class SessionCheckpointCreatedEvent(DomainEvent):
    """A checkpoint was created."""

    session_id: str = field(kw_only=True)
    checkpoint_id: str = field(kw_only=True)


@dataclass(frozen=True, init=False)
class SessionCheckpointRestoredEvent(DomainEvent):
    """A session was restored from a checkpoint."""

    session_id: str = field(kw_only=True)
    checkpoint_id: str = field(kw_only=True)


@dataclass(frozen=True, init=False)
class SessionForkedEvent(DomainEvent):
    """A branch session was forked from a source session."""

    session_id: str = field(kw_only=True)
    branch_id: str = field(kw_only=True)
    branch_name: str = field(kw_only=True)


@dataclass(frozen=True, init=False)
class SessionBranchMergedEvent(DomainEvent):
    """A branch was merged back into its parent."""

    session_id: str = field(kw_only=True)
    branch_id: str = field(kw_only=True)
    merged_turns: int = field(kw_only=True, default=0)


@dataclass(frozen=True, init=False)
class SessionUserErasedEvent(DomainEvent):
    """Everything stored about a user was erased (``manager.erase_user``).

    Carries counts only: the erased values are gone and must not travel in events.
    """

    user_id: str = field(kw_only=True)
    sessions: int = field(kw_only=True, default=0)
    checkpoints: int = field(kw_only=True, default=0)
    turns: int = field(kw_only=True, default=0)
