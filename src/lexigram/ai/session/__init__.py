"""lexigram-ai-session: stateful AI conversation sessions for the Lexigram framework.

Create a session, append turns, checkpoint and restore, suspend and resume, close or
let it expire; keep it in memory, Redis or SQL; fork and merge branches; run several
agents in one group session; bind a session to each HTTP request.

Every name in ``__all__`` is importable from here and fully typed. Four names are
loaded on first use: ``CacheSessionStore`` (extra ``redis``), ``DatabaseSessionStore``
(SQLAlchemy) and ``OpenAIAgentsSession`` (extra ``openai-agents``) need an optional or
heavy dependency, so importing the package imports neither the Redis client, nor
SQLAlchemy, nor the OpenAI Agents SDK; ``SessionModule`` because the framework logs when
its module is imported, before an application has configured logging.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

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

from lexigram.ai.session.analytics import SessionAnalytics, UserSessionAnalytics
from lexigram.ai.session.branching import (
    AppendMerge,
    BranchManager,
    MergePlan,
    MergeStrategy,
    SelectiveMerge,
)
from lexigram.ai.session.checkpointing import CheckpointManager, StateDiff
from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.context import RelevanceContextPruner, SessionContext
from lexigram.ai.session.di import SessionProvider
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
    DataKeyChangedError,
    DuplicateTurnError,
    EncryptionKeyError,
    SessionCapacityError,
    SessionClosedError,
    SessionError,
    SessionExpiredError,
    SessionExpiredTransitionError,
    SessionNotFoundError,
    SessionStoreError,
    SessionTransitionError,
    SessionValidationError,
    StoreUnavailableError,
    TurnLimitReachedError,
    WriteOutcomeUnknownError,
)
from lexigram.ai.session.hooks import (
    SessionBranchMergedHook,
    SessionCheckpointCreatedHook,
    SessionCheckpointRestoredHook,
    SessionClosedHook,
    SessionExpiredHook,
    SessionForkedHook,
    SessionStartedHook,
    SessionTurnAddedHook,
)
from lexigram.ai.session.manager import (
    SessionCleanupScheduler,
    SessionManager,
    SessionManagerAPI,
    SessionManagerImpl,
    SessionStateMachine,
)
from lexigram.ai.session.middleware import SessionMiddleware
from lexigram.ai.session.multi_agent import (
    AgentReply,
    AgentSpokeTermination,
    CostBudgetTermination,
    GroupSession,
    GroupSessionFactory,
    LLMDirectedTurnManager,
    MaxRoundsTermination,
    PriorityTurnManager,
    RoleIsolation,
    RoundRobinTurnManager,
    StopWordTermination,
    TerminationCondition,
    TokenBudgetTermination,
    TopicBasedTurnManager,
    TurnManager,
)
from lexigram.ai.session.stores import InMemorySessionStore, SessionStore, register_backend
from lexigram.ai.session.types import Metadata, SessionId, TurnId

if TYPE_CHECKING:
    from lexigram.ai.session.integrations.openai_agents import OpenAIAgentsSession
    from lexigram.ai.session.module import SessionModule
    from lexigram.ai.session.stores.cache import CacheSessionStore
    from lexigram.ai.session.stores.database import DatabaseSessionStore

__version__ = "0.2.0"

__all__ = [
    # contract types and protocols
    "ContextPrunerProtocol",
    "SessionCheckpoint",
    "SessionContextProtocol",
    "SessionManagerProtocol",
    "SessionState",
    "SessionStatus",
    "SessionStoreProtocol",
    "SessionTurn",
    # configuration, module, provider
    "SessionConfig",
    "SessionModule",
    "SessionProvider",
    # types
    "Metadata",
    "SessionId",
    "TurnId",
    # errors
    "CheckpointNotFoundError",
    "CorruptRecordError",
    "DataKeyChangedError",
    "DuplicateTurnError",
    "EncryptionKeyError",
    "SessionCapacityError",
    "SessionClosedError",
    "SessionError",
    "SessionExpiredError",
    "SessionExpiredTransitionError",
    "SessionNotFoundError",
    "SessionStoreError",
    "SessionTransitionError",
    "SessionValidationError",
    "StoreUnavailableError",
    "TurnLimitReachedError",
    "WriteOutcomeUnknownError",
    # events and hooks
    "SessionBranchMergedEvent",
    "SessionCheckpointCreatedEvent",
    "SessionCheckpointRestoredEvent",
    "SessionClosedEvent",
    "SessionCreatedEvent",
    "SessionExpiredEvent",
    "SessionForkedEvent",
    "SessionBranchMergedHook",
    "SessionCheckpointCreatedHook",
    "SessionCheckpointRestoredHook",
    "SessionClosedHook",
    "SessionExpiredHook",
    "SessionForkedHook",
    "SessionStartedHook",
    "SessionTurnAddedHook",
    # manager
    "SessionCleanupScheduler",
    "SessionManager",
    "SessionManagerAPI",
    "SessionManagerImpl",
    "SessionStateMachine",
    # stores (the Redis and SQL stores are loaded on first use)
    "CacheSessionStore",
    "DatabaseSessionStore",
    "InMemorySessionStore",
    "SessionStore",
    "register_backend",
    # checkpointing and branching
    "AppendMerge",
    "BranchManager",
    "CheckpointManager",
    "MergePlan",
    "MergeStrategy",
    "SelectiveMerge",
    "StateDiff",
    # multi-agent
    "AgentReply",
    "AgentSpokeTermination",
    "CostBudgetTermination",
    "GroupSession",
    "GroupSessionFactory",
    "LLMDirectedTurnManager",
    "MaxRoundsTermination",
    "PriorityTurnManager",
    "RoleIsolation",
    "RoundRobinTurnManager",
    "StopWordTermination",
    "TerminationCondition",
    "TokenBudgetTermination",
    "TopicBasedTurnManager",
    "TurnManager",
    # web and context
    "RelevanceContextPruner",
    "SessionContext",
    "SessionMiddleware",
    # analytics
    "SessionAnalytics",
    "UserSessionAnalytics",
    # integrations (loaded on first use)
    "OpenAIAgentsSession",
]

# Names whose module imports an optional dependency: imported on first attribute access.
# SessionModule too: the framework's @module decorator logs when its module is imported,
# before an application has configured logging, so importing the package (the CLI's
# --json output included) must not import it.
_LAZY: dict[str, str] = {
    "SessionModule": "lexigram.ai.session.module",
    "CacheSessionStore": "lexigram.ai.session.stores.cache",
    "DatabaseSessionStore": "lexigram.ai.session.stores.database",
    "OpenAIAgentsSession": "lexigram.ai.session.integrations.openai_agents",
}

if not TYPE_CHECKING:
    # Hidden from type checkers, so a misspelt name is still an error for them.

    def __getattr__(name: str) -> object:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'lexigram.ai.session' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
