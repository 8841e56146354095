"""``SessionModule``: import it into your application module."""

from __future__ import annotations

from typing import Any

from lexigram.contracts.ai.session import SessionManagerProtocol, SessionStoreProtocol
from lexigram.di.module import DynamicModule, Module, module

from lexigram.ai.session.branching.branch_manager import BranchManager
from lexigram.ai.session.checkpointing.checkpoint_manager import CheckpointManager
from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.di.provider import SessionProvider
from lexigram.ai.session.manager.cleanup import SessionCleanupScheduler
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.manager.protocol import SessionManagerAPI
from lexigram.ai.session.stores.base import SessionStore

__all__ = ["SessionModule"]

_EXPORTS: list[type] = [
    SessionConfig,
    SessionStore,
    SessionStoreProtocol,
    SessionManagerProtocol,
    SessionManagerAPI,
    SessionManagerImpl,
    CheckpointManager,
    BranchManager,
    SessionCleanupScheduler,
]


def _exports() -> list[type]:
    from lexigram.ai.session.di.extensions import exported_types

    return [*_EXPORTS, *exported_types()]


@module(providers=[SessionProvider], exports=_exports(), is_global=True)
class SessionModule(Module):
    """The session subsystem as a lexigram module."""

    @classmethod
    def configure(
        cls,
        config: SessionConfig | dict[str, Any] | None = None,
        *,
        enable_cleanup_scheduler: bool = True,
    ) -> DynamicModule:
        """The module with ``config`` (None: the framework's YAML/profile/env config).

        An explicit config wins over YAML and environment variables.
        """
        provider = SessionProvider.preset(config, enable_cleanup_scheduler=enable_cleanup_scheduler)
        return DynamicModule(module=cls, providers=[provider], exports=_exports(), is_global=True)

    @classmethod
    def stub(cls, config: SessionConfig | dict[str, Any] | None = None) -> DynamicModule:
        """For tests: the in-memory store whatever the backend, no background task."""
        provider = SessionProvider.preset(config, enable_cleanup_scheduler=False, stub=True)
        return DynamicModule(module=cls, providers=[provider], exports=_exports(), is_global=True)
