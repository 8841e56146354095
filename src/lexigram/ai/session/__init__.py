"""lexigram-ai-session: stateful AI conversation sessions for the Lexigram framework.

Create a session, append turns, checkpoint and restore, suspend and resume, close or
let it expire; keep it in memory, Redis or SQL; fork and merge branches; run several
agents in one group session; bind a session to each HTTP request.

Names are loaded on first use, so importing the package does not import the Redis
or SQL drivers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_NAMES: dict[str, str] = {
    # contract types and protocols
    "SessionCheckpoint": "lexigram.contracts.ai.session",
    "SessionState": "lexigram.contracts.ai.session",
    "SessionStatus": "lexigram.contracts.ai.session",
    "SessionTurn": "lexigram.contracts.ai.session",
    "SessionStoreProtocol": "lexigram.contracts.ai.session",
    "SessionManagerProtocol": "lexigram.contracts.ai.session",
    "SessionContextProtocol": "lexigram.contracts.ai.session",
    "ContextPrunerProtocol": "lexigram.contracts.ai.session",
    # configuration, module, provider
    "SessionConfig": "lexigram.ai.session.config",
    "SessionModule": "lexigram.ai.session.module",
    "SessionProvider": "lexigram.ai.session.di.provider",
    # types
    "Metadata": "lexigram.ai.session.types",
    "SessionId": "lexigram.ai.session.types",
    "TurnId": "lexigram.ai.session.types",
    # errors
    "SessionError": "lexigram.ai.session.exceptions",
    "SessionNotFoundError": "lexigram.ai.session.exceptions",
    "SessionClosedError": "lexigram.ai.session.exceptions",
    "SessionExpiredError": "lexigram.ai.session.exceptions",
    "CheckpointNotFoundError": "lexigram.ai.session.exceptions",
    "SessionTransitionError": "lexigram.ai.session.exceptions",
    "SessionCapacityError": "lexigram.ai.session.exceptions",
    "SessionValidationError": "lexigram.ai.session.exceptions",
    "DuplicateTurnError": "lexigram.ai.session.exceptions",
    "TurnLimitReachedError": "lexigram.ai.session.exceptions",
    "SessionStoreError": "lexigram.ai.session.exceptions",
    "StoreUnavailableError": "lexigram.ai.session.exceptions",
    "CorruptRecordError": "lexigram.ai.session.exceptions",
    # events and hooks
    "SessionCreatedEvent": "lexigram.ai.session.events",
    "SessionClosedEvent": "lexigram.ai.session.events",
    "SessionExpiredEvent": "lexigram.ai.session.events",
    "SessionCheckpointCreatedEvent": "lexigram.ai.session.events",
    "SessionCheckpointRestoredEvent": "lexigram.ai.session.events",
    "SessionForkedEvent": "lexigram.ai.session.events",
    "SessionBranchMergedEvent": "lexigram.ai.session.events",
    "SessionStartedHook": "lexigram.ai.session.hooks",
    "SessionCheckpointCreatedHook": "lexigram.ai.session.hooks",
    "SessionCheckpointRestoredHook": "lexigram.ai.session.hooks",
    "SessionClosedHook": "lexigram.ai.session.hooks",
    "SessionExpiredHook": "lexigram.ai.session.hooks",
    "SessionTurnAddedHook": "lexigram.ai.session.hooks",
    "SessionForkedHook": "lexigram.ai.session.hooks",
    "SessionBranchMergedHook": "lexigram.ai.session.hooks",
    # integrations (the SDK is imported only when this name is used)
    "OpenAIAgentsSession": "lexigram.ai.session.integrations.openai_agents",
    # manager
    "SessionManagerImpl": "lexigram.ai.session.manager.core",
    "SessionManager": "lexigram.ai.session.manager.core",
    "SessionStateMachine": "lexigram.ai.session.manager.state_machine",
    "SessionCleanupScheduler": "lexigram.ai.session.manager.cleanup",
    # stores
    "SessionStore": "lexigram.ai.session.stores.base",
    "InMemorySessionStore": "lexigram.ai.session.stores.in_memory",
    "CacheSessionStore": "lexigram.ai.session.stores.cache",
    "DatabaseSessionStore": "lexigram.ai.session.stores.database",
    "register_backend": "lexigram.ai.session.stores.registry",
    # checkpointing and branching
    "CheckpointManager": "lexigram.ai.session.checkpointing.checkpoint_manager",
    "StateDiff": "lexigram.ai.session.checkpointing.diff",
    "BranchManager": "lexigram.ai.session.branching.branch_manager",
    "MergeStrategy": "lexigram.ai.session.branching.merge",
    "MergePlan": "lexigram.ai.session.branching.merge",
    "AppendMerge": "lexigram.ai.session.branching.merge",
    "SelectiveMerge": "lexigram.ai.session.branching.merge",
    # multi-agent
    "GroupSession": "lexigram.ai.session.multi_agent",
    "TurnManager": "lexigram.ai.session.multi_agent",
    "RoundRobinTurnManager": "lexigram.ai.session.multi_agent",
    "PriorityTurnManager": "lexigram.ai.session.multi_agent",
    "TopicBasedTurnManager": "lexigram.ai.session.multi_agent",
    "LLMDirectedTurnManager": "lexigram.ai.session.multi_agent",
    "RoleIsolation": "lexigram.ai.session.multi_agent",
    "GroupSessionFactory": "lexigram.ai.session.multi_agent",
    "AgentReply": "lexigram.ai.session.multi_agent",
    "TerminationCondition": "lexigram.ai.session.multi_agent",
    "MaxRoundsTermination": "lexigram.ai.session.multi_agent",
    "StopWordTermination": "lexigram.ai.session.multi_agent",
    "TokenBudgetTermination": "lexigram.ai.session.multi_agent",
    "CostBudgetTermination": "lexigram.ai.session.multi_agent",
    "AgentSpokeTermination": "lexigram.ai.session.multi_agent",
    # web and context
    "SessionMiddleware": "lexigram.ai.session.middleware",
    "SessionContext": "lexigram.ai.session.context",
    "RelevanceContextPruner": "lexigram.ai.session.context",
    # analytics
    "SessionAnalytics": "lexigram.ai.session.analytics",
    "UserSessionAnalytics": "lexigram.ai.session.analytics",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'lexigram.ai.session' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_NAMES})


if TYPE_CHECKING:
    from lexigram.contracts.ai.session import (
        ContextPrunerProtocol,
        SessionCheckpoint,
        SessionContextProtocol,
        SessionManagerProtocol,
        SessionState,
        SessionStatus,
        SessionStoreProtocol,
        SessionTurn,
    )

    from lexigram.ai.session.branching.branch_manager import BranchManager
    from lexigram.ai.session.branching.merge import (
        AppendMerge,
        MergePlan,
        MergeStrategy,
        SelectiveMerge,
    )
    from lexigram.ai.session.checkpointing.checkpoint_manager import CheckpointManager
    from lexigram.ai.session.checkpointing.diff import StateDiff
    from lexigram.ai.session.config import SessionConfig
    from lexigram.ai.session.di.provider import SessionProvider
    from lexigram.ai.session.events import (
        SessionBranchMergedEvent,
        SessionCheckpointCreatedEvent,
        SessionCheckpointRestoredEvent,
        SessionClosedEvent,
        SessionCreatedEvent,
        SessionExpiredEvent,
        SessionForkedEvent,
    )
    from lexigram.ai.session.exceptions import (
        CheckpointNotFoundError,
        CorruptRecordError,
        DuplicateTurnError,
        SessionCapacityError,
        SessionClosedError,
        SessionError,
        SessionExpiredError,
        SessionNotFoundError,
        SessionStoreError,
        SessionTransitionError,
        SessionValidationError,
        StoreUnavailableError,
        TurnLimitReachedError,
    )
    from lexigram.ai.session.hooks import (
        SessionCheckpointCreatedHook,
        SessionCheckpointRestoredHook,
        SessionClosedHook,
        SessionExpiredHook,
        SessionStartedHook,
        SessionTurnAddedHook,
    )
    from lexigram.ai.session.manager.cleanup import SessionCleanupScheduler
    from lexigram.ai.session.manager.core import SessionManager, SessionManagerImpl
    from lexigram.ai.session.manager.state_machine import SessionStateMachine
    from lexigram.ai.session.module import SessionModule
    from lexigram.ai.session.stores.base import SessionStore
    from lexigram.ai.session.stores.in_memory import InMemorySessionStore
    from lexigram.ai.session.stores.registry import register_backend
    from lexigram.ai.session.types import Metadata, SessionId, TurnId
