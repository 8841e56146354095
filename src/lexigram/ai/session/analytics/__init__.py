"""Session analytics: per-session figures and aggregates over a user's sessions.

``compute(state)`` gives a :class:`SessionAnalytics`; ``aggregate(...)`` combines
several; ``await user_analytics(manager, user_id)`` pages through a user's sessions.
"""

from __future__ import annotations

from lexigram.ai.session.analytics.session import SessionAnalytics, compute, tool_names
from lexigram.ai.session.analytics.user import (
    SessionSource,
    UserSessionAnalytics,
    aggregate,
    iter_session_analytics,
    user_analytics,
)

__all__ = [
    "SessionAnalytics",
    "SessionSource",
    "UserSessionAnalytics",
    "aggregate",
    "compute",
    "iter_session_analytics",
    "tool_names",
    "user_analytics",
]
