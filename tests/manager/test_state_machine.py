"""Every transition of the session state machine."""

from __future__ import annotations

import itertools

import pytest
from lexigram.contracts.ai.session import SessionStatus

from lexigram.ai.session import SessionStateMachine, SessionTransitionError, SessionValidationError

A, S, C, E = (
    SessionStatus.ACTIVE,
    SessionStatus.SUSPENDED,
    SessionStatus.CLOSED,
    SessionStatus.EXPIRED,
)
LEGAL = {(A, S), (S, A), (A, C), (S, C), (A, E), (S, E)}


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(SessionStatus, SessionStatus)))
def test_every_pair(src: SessionStatus, dst: SessionStatus) -> None:
    legal = (src, dst) in LEGAL
    assert SessionStateMachine.can_transition(src, dst) is legal
    assert SessionStateMachine.can_transition(src.value, dst.value) is legal
    if legal:
        SessionStateMachine.validate("s1", src, dst)
    else:
        with pytest.raises(SessionTransitionError) as info:
            SessionStateMachine.validate("s1", src.value, dst)
        assert info.value.session_id == "s1"
        assert info.value.from_status == src.value
        assert info.value.to_status == dst.value
        # Out of EXPIRED: SessionExpiredTransitionError, whose code is the expired one.
        assert info.value.code == ("LEX_ERR_SES_103" if src is E else "LEX_ERR_SES_105")


def test_terminal_statuses() -> None:
    assert [s for s in SessionStatus if SessionStateMachine.is_terminal(s)] == [C, E]
    assert SessionStateMachine.is_terminal("closed")
    assert not SessionStateMachine.is_terminal("active")


def test_unknown_status_is_named() -> None:
    with pytest.raises(SessionValidationError, match="from_status"):
        SessionStateMachine.can_transition("paused", "active")


@pytest.mark.parametrize(
    "to", [SessionStatus.ACTIVE, SessionStatus.SUSPENDED, SessionStatus.CLOSED]
)
def test_a_move_out_of_expired_raises_the_expired_transition_error(to: SessionStatus) -> None:
    """The README: a move out of EXPIRED raises SessionExpiredTransitionError (both a
    SessionTransitionError and a SessionExpiredError); validate raised the plain one
    (an outside audit), while the manager's own moves were right."""
    from lexigram.ai.session.exceptions import (
        SessionExpiredError,
        SessionExpiredTransitionError,
    )

    with pytest.raises(SessionExpiredTransitionError) as caught:
        SessionStateMachine().validate("s1", SessionStatus.EXPIRED, to)
    assert isinstance(caught.value, SessionExpiredError)
    assert caught.value.to_status == to.value
