"""How the explorer answers a failed request: the HTTP status of each session error."""

from __future__ import annotations

from lexigram.ai.session.exceptions import (
    CheckpointNotFoundError,
    CorruptRecordError,
    SessionCapacityError,
    SessionClosedError,
    SessionError,
    SessionExpiredError,
    SessionNotFoundError,
    SessionTransitionError,
    SessionValidationError,
    StoreUnavailableError,
)

__all__ = ["describe", "http_status"]

_STATUSES: tuple[tuple[type[SessionError], int], ...] = (
    (SessionNotFoundError, 404),
    (CheckpointNotFoundError, 404),
    (SessionValidationError, 400),
    (SessionTransitionError, 409),
    (SessionClosedError, 409),
    (SessionExpiredError, 409),
    (SessionCapacityError, 409),
    (CorruptRecordError, 500),
    (StoreUnavailableError, 503),
)


def http_status(error: SessionError) -> int:
    """The HTTP status the explorer answers ``error`` with."""
    for kind, status in _STATUSES:
        if isinstance(error, kind):
            return status
    return 500


def describe(error: SessionError) -> dict[str, object]:
    """``{"code", "message", "field"?}`` for the JSON API (and the error page)."""
    data: dict[str, object] = {"code": error.code, "message": str(error.message)}
    if isinstance(error, SessionValidationError):
        data["field"] = error.field
    if isinstance(error, CorruptRecordError):
        data["message"] = f"the stored record is damaged and cannot be shown: {error.message}"
    return data
