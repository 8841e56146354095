"""Session lifecycle: the manager, its state machine and the expiry sweeper."""

from lexigram.ai.session.manager.cleanup import SessionCleanupScheduler, SweepReport
from lexigram.ai.session.manager.core import SessionManager, SessionManagerImpl
from lexigram.ai.session.manager.protocol import SessionManagerAPI
from lexigram.ai.session.manager.state_machine import SessionStateMachine

__all__ = [
    "SessionCleanupScheduler",
    "SessionManager",
    "SessionManagerAPI",
    "SessionManagerImpl",
    "SessionStateMachine",
    "SweepReport",
]
