"""Per-request session context and context-window pruning."""

from __future__ import annotations

from lexigram.ai.session.context.pruner import PruneResult, RelevanceContextPruner
from lexigram.ai.session.context.session_context import SessionContext
from lexigram.ai.session.context.tokens import (
    CallableTokenCounter,
    HeuristicTokenCounter,
    TokenCounter,
)

__all__ = [
    "CallableTokenCounter",
    "HeuristicTokenCounter",
    "PruneResult",
    "RelevanceContextPruner",
    "SessionContext",
    "TokenCounter",
]
