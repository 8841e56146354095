"""``SessionStateMachine``: the legal status transitions of a session.

ACTIVE <-> SUSPENDED; ACTIVE/SUSPENDED -> CLOSED; ACTIVE/SUSPENDED -> EXPIRED (by the
system); CLOSED and EXPIRED are terminal.
"""

from __future__ import annotations

from typing import ClassVar

from lexigram.contracts.ai.session import SessionStatus

from lexigram.ai.session.exceptions import (
    SessionExpiredTransitionError,
    SessionTransitionError,
    SessionValidationError,
)

__all__ = ["SessionStateMachine"]

_A, _S, _C, _E = (
    SessionStatus.ACTIVE,
    SessionStatus.SUSPENDED,
    SessionStatus.CLOSED,
    SessionStatus.EXPIRED,
)


def _as_status(value: SessionStatus | str, name: str) -> SessionStatus:
    if isinstance(value, SessionStatus):
        return value
    try:
        return SessionStatus(value)
    except ValueError:
        raise SessionValidationError(
            name,
            f"unknown session status {value!r}; expected one of {[s.value for s in SessionStatus]}",
        ) from None


class SessionStateMachine:
    """Validates status transitions; statuses may be given as enum members or strings."""

    TRANSITIONS: ClassVar[dict[SessionStatus, frozenset[SessionStatus]]] = {
        _A: frozenset({_S, _C, _E}),
        _S: frozenset({_A, _C, _E}),
        _C: frozenset(),
        _E: frozenset(),
    }

    @classmethod
    def can_transition(
        cls, from_status: SessionStatus | str, to_status: SessionStatus | str
    ) -> bool:
        """Whether ``from_status -> to_status`` is legal."""
        src = _as_status(from_status, "from_status")
        dst = _as_status(to_status, "to_status")
        return dst in cls.TRANSITIONS[src]

    @classmethod
    def validate(
        cls,
        session_id: str,
        from_status: SessionStatus | str,
        to_status: SessionStatus | str,
    ) -> None:
        """Raise ``SessionTransitionError`` unless ``from_status -> to_status`` is legal.

        A move out of EXPIRED raises :class:`SessionExpiredTransitionError`, which is both
        that and a ``SessionExpiredError``, as the manager's own moves do.
        """
        if not cls.can_transition(from_status, to_status):
            if _as_status(from_status, "from_status") is SessionStatus.EXPIRED:
                raise SessionExpiredTransitionError(session_id, to_status)
            raise SessionTransitionError(session_id, from_status, to_status)

    @classmethod
    def is_terminal(cls, status: SessionStatus | str) -> bool:
        """Whether no transition leaves ``status`` (CLOSED, EXPIRED)."""
        return not cls.TRANSITIONS[_as_status(status, "status")]

    @classmethod
    def sources_of(cls, to_status: SessionStatus | str) -> frozenset[SessionStatus]:
        """Every status from which ``to_status`` can be reached."""
        dst = _as_status(to_status, "to_status")
        return frozenset(src for src, dsts in cls.TRANSITIONS.items() if dst in dsts)
