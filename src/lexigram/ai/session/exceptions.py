"""Errors raised by lexigram-ai-session.

Every error derives from :class:`SessionError`, itself a subclass of the
contract's ``lexigram.contracts.ai.session.SessionError``, and carries a stable
``code`` (``LEX_ERR_SES_1xx``) that callers and logs can match on.
"""

from __future__ import annotations

from typing import Any

from lexigram.contracts.ai.session import SessionError as _ContractSessionError
from lexigram.contracts.ai.session import SessionStatus

__all__ = [
    "CheckpointNotFoundError",
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
    "CorruptRecordError",
    "TurnLimitReachedError",
    "WriteOutcomeUnknownError",
]


def _status_value(status: SessionStatus | str) -> str:
    return status.value if isinstance(status, SessionStatus) else str(status)


def _rebuilt(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    """An error of ``cls`` with ``args`` and attributes ``state``, without its ``__init__``."""
    error = cls.__new__(cls)
    BaseException.__init__(error, *args)
    error.__dict__.update(state)
    return error


class SessionError(_ContractSessionError):
    """Base class of every error this package raises."""

    _code = "LEX_ERR_SES_100"

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled (a ProcessPoolExecutor, multiprocessing, Celery) with its attributes,
        # not by calling __init__ with ``args``: most subclasses take other arguments,
        # and a worker's error reached its caller as a broken pool.
        return (_rebuilt, (type(self), self.args, dict(self.__dict__)))


class SessionNotFoundError(SessionError):
    """The session does not exist (never created, or deleted)."""

    _code = "LEX_ERR_SES_101"

    def __init__(self, session_id: str, **kwargs: Any) -> None:
        self.session_id = session_id
        super().__init__(
            f"session {session_id!r} not found", details={"session_id": session_id}, **kwargs
        )


class SessionClosedError(SessionError):
    """The session is closed and accepts no more writes."""

    _code = "LEX_ERR_SES_102"

    def __init__(self, session_id: str, **kwargs: Any) -> None:
        self.session_id = session_id
        super().__init__(
            f"session {session_id!r} is closed", details={"session_id": session_id}, **kwargs
        )


class SessionExpiredError(SessionError):
    """The session was idle longer than ``session_ttl`` and has expired."""

    _code = "LEX_ERR_SES_103"

    def __init__(self, session_id: str, **kwargs: Any) -> None:
        self.session_id = session_id
        super().__init__(
            f"session {session_id!r} has expired", details={"session_id": session_id}, **kwargs
        )


class CheckpointNotFoundError(SessionError):
    """No checkpoint has this id (never created, pruned or deleted)."""

    _code = "LEX_ERR_SES_104"

    def __init__(self, checkpoint_id: str, **kwargs: Any) -> None:
        self.checkpoint_id = checkpoint_id
        super().__init__(
            f"checkpoint {checkpoint_id!r} not found",
            details={"checkpoint_id": checkpoint_id},
            **kwargs,
        )


class SessionTransitionError(SessionError):
    """An illegal status transition was requested (see ``SessionStateMachine``)."""

    _code = "LEX_ERR_SES_105"

    def __init__(
        self,
        session_id: str,
        from_status: SessionStatus | str,
        to_status: SessionStatus | str,
        **kwargs: Any,
    ) -> None:
        self.session_id = session_id
        self.from_status = _status_value(from_status)
        self.to_status = _status_value(to_status)
        super().__init__(
            f"session {session_id!r}: illegal transition {self.from_status} -> {self.to_status}",
            details={
                "session_id": session_id,
                "from_status": self.from_status,
                "to_status": self.to_status,
            },
            **kwargs,
        )


class SessionExpiredTransitionError(SessionExpiredError, SessionTransitionError):
    """A status move out of EXPIRED (resume, suspend, close), which is terminal.

    It is both a :class:`SessionExpiredError` (code ``LEX_ERR_SES_103``, as before)
    and a :class:`SessionTransitionError` with ``from_status`` ``"expired"``.
    """

    _code = "LEX_ERR_SES_103"

    def __init__(self, session_id: str, to_status: SessionStatus | str) -> None:
        self.session_id = session_id
        self.from_status = SessionStatus.EXPIRED.value
        self.to_status = _status_value(to_status)
        SessionError.__init__(
            self,
            f"session {session_id!r} has expired: illegal transition expired -> "
            f"{self.to_status}",
            details={
                "session_id": session_id,
                "from_status": self.from_status,
                "to_status": self.to_status,
            },
        )


class SessionCapacityError(SessionError):
    """A configured limit (sessions per user, turns, branches, agents, ...) was reached."""

    _code = "LEX_ERR_SES_106"

    def __init__(self, detail: str, **kwargs: Any) -> None:
        self.detail = detail
        super().__init__(detail, details={"detail": detail}, **kwargs)


class SessionValidationError(SessionError, ValueError):
    """Input was rejected; the message names the offending field."""

    _code = "LEX_ERR_SES_107"

    def __init__(self, field: str, problem: str, **kwargs: Any) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}", details={"field": field}, **kwargs)


class DuplicateTurnError(SessionValidationError):
    """A turn with this ``turn_id`` is already in the session."""

    _code = "LEX_ERR_SES_108"

    def __init__(
        self,
        session_id: str,
        turn_id: str,
        *,
        field: str = "turn.turn_id",
        problem: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.session_id = session_id
        self.turn_id = turn_id
        super().__init__(
            field,
            problem or f"turn {turn_id!r} is already in session {session_id!r}",
            **kwargs,
        )


class SessionStoreError(SessionError):
    """The storage backend failed."""

    _code = "LEX_ERR_SES_109"


class StoreUnavailableError(SessionStoreError):
    """The storage backend cannot be reached."""

    _code = "LEX_ERR_SES_110"


class WriteOutcomeUnknownError(StoreUnavailableError):
    """The connection was lost after a write was sent to be committed.

    The write may or may not have been applied: read the session to find out before
    doing it again (a blind retry could apply it twice).
    """

    _code = "LEX_ERR_SES_113"


class CorruptRecordError(SessionStoreError):
    """A stored record could not be decoded; the message names the record and field."""

    _code = "LEX_ERR_SES_111"

    def __init__(self, record: str, problem: str, **kwargs: Any) -> None:
        self.record = record
        self.problem = problem
        super().__init__(
            f"corrupt stored record {record}: {problem}", details={"record": record}, **kwargs
        )


class TurnLimitReachedError(SessionCapacityError, SessionClosedError):
    """A turn was added past ``max_turns_per_session``; the session accepts no more.

    The append that reached the cap closed the session; a branch forked at the cap, or a
    session restored to a checkpoint at or above it, stays ACTIVE and refuses its next turn.

    It is both a :class:`SessionCapacityError` (a limit was hit) and a
    :class:`SessionClosedError` (the session accepts no more turns).
    """

    _code = "LEX_ERR_SES_112"

    def __init__(self, session_id: str, max_turns: int) -> None:
        self.session_id = session_id
        self.max_turns = max_turns
        self.detail = (
            f"session {session_id!r} reached max_turns_per_session={max_turns} and accepts "
            "no more turns"
        )
        SessionError.__init__(
            self, self.detail, details={"session_id": session_id, "max_turns": max_turns}
        )


class EncryptionKeyError(SessionStoreError):
    """An encrypted record cannot be opened: its key is missing or does not open it.

    ``key_id`` names the key-encryption key the record needs (never the key itself).
    ``value_altered`` is True when that key opened the session's data key but a sealed
    value did not open under it: the stored value was altered or moved (damage), not a
    key missing or wrong.
    """

    _code = "LEX_ERR_SES_114"

    def __init__(
        self,
        record: str,
        key_id: str,
        problem: str,
        *,
        value_altered: bool = False,
        **kwargs: Any,
    ) -> None:
        self.record = record
        self.key_id = key_id
        self.problem = problem
        self.value_altered = value_altered
        super().__init__(
            f"cannot decrypt {record}: key {key_id!r} {problem}",
            details={"record": record, "key_id": key_id},
            **kwargs,
        )


class DataKeyChangedError(SessionStoreError):
    """A guarded write found the session under another data key; nothing was written.

    Raised by a store's ``append_turns`` / ``update_session`` given ``key_guard``
    when the session's stored key envelope is not the guard: another process deleted
    the session and created it again under the same id (a new data key) while the
    writer still held the old one. The encrypted store catches it, reads the session's
    current key and writes again; it reaches the caller only when the key kept
    changing under it.
    """

    _code = "LEX_ERR_SES_115"

    def __init__(self, session_id: str, **kwargs: Any) -> None:
        self.session_id = session_id
        super().__init__(
            f"session {session_id!r} is stored under another data key than the write "
            "was sealed with (it was deleted and created again)",
            details={"session_id": session_id},
            **kwargs,
        )
