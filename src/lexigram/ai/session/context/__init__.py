"""Per-request session context and context-window pruning."""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "SessionContext": "lexigram.ai.session.context.session_context",
    "RelevanceContextPruner": "lexigram.ai.session.context.pruner",
    "PruneResult": "lexigram.ai.session.context.pruner",
    "TokenCounter": "lexigram.ai.session.context.tokens",
    "HeuristicTokenCounter": "lexigram.ai.session.context.tokens",
    "CallableTokenCounter": "lexigram.ai.session.context.tokens",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(name)
    return getattr(importlib.import_module(module), name)
