"""``SessionProvider``: registers the session services in a lexigram container."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from lexigram.contracts.ai.memory import MemoryConsolidatorProtocol, WorkingMemoryProtocol
from lexigram.contracts.ai.session import SessionManagerProtocol, SessionStoreProtocol
from lexigram.contracts.core.health import HealthCheckResult, HealthStatus
from lexigram.contracts.events.protocols.domain import EventBusProtocol
from lexigram.contracts.exceptions.config import ConfigurationError
from lexigram.di.provider import Provider, ProviderPriority
from lexigram.logging import get_logger

from lexigram.ai.session.backends import canonical_name
from lexigram.ai.session.branching.branch_manager import BranchManager
from lexigram.ai.session.checkpointing.checkpoint_manager import CheckpointManager
from lexigram.ai.session.config import (
    LAYERED_HINT,
    SessionConfig,
    coerce_config,
    layered_fields_left_unused,
)
from lexigram.ai.session.manager.cleanup import SessionCleanupScheduler
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.manager.protocol import SessionManagerAPI
from lexigram.ai.session.manager.standalone import initialize_store
from lexigram.ai.session.stores.base import SessionStore
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from lexigram.ai.session.stores.registry import create_store

__all__ = ["SessionProvider"]

logger = get_logger(__name__)


async def _optional(resolver: Any, service_type: Any) -> Any:
    """``resolver.resolve_optional`` that treats "not visible here" like "absent"."""
    try:
        if hasattr(resolver, "has") and not resolver.has(service_type):
            return None
        # A factory receives a ServiceResolver, which has no resolve_optional.
        getter = getattr(resolver, "resolve_optional", None) or resolver.resolve
        return await getter(service_type)
    except Exception:
        return None


class SessionProvider(Provider):
    """Binds ``SessionConfig``, the store, the manager and the session services.

    ``SessionModule.configure()`` hands the framework a *subclass* with the preset
    config baked in, so every application builds its own provider instance.
    """

    name = "session"
    priority = ProviderPriority.NORMAL
    config_key = "ai_session"
    config_model = SessionConfig

    _preset: ClassVar[SessionConfig | dict[str, Any] | None] = None
    _enable_cleanup_scheduler: ClassVar[bool] = True
    _stub: ClassVar[bool] = False

    def __init__(
        self,
        config: SessionConfig | dict[str, Any] | None = None,
        *,
        enable_cleanup_scheduler: bool | None = None,
    ) -> None:
        super().__init__()
        preset = config if config is not None else type(self)._preset
        if preset is not None:
            self._config = coerce_config(preset)
            self._config_from_factory = True
        self.enable_cleanup_scheduler = (
            type(self)._enable_cleanup_scheduler
            if enable_cleanup_scheduler is None
            else enable_cleanup_scheduler
        )
        self.store: SessionStore | None = None
        self.scheduler: SessionCleanupScheduler | None = None
        self.manager: SessionManagerImpl | None = None

    @classmethod
    def preset(
        cls,
        config: SessionConfig | dict[str, Any] | None,
        *,
        enable_cleanup_scheduler: bool = True,
        stub: bool = False,
    ) -> type[SessionProvider]:
        """A provider class carrying ``config``; the framework instantiates it per app."""
        if config is not None:
            config = coerce_config(config)
        return type(
            "SessionProvider",
            (cls,),
            {
                "_preset": config,
                "_enable_cleanup_scheduler": enable_cleanup_scheduler and not stub,
                "_stub": stub,
                "__module__": cls.__module__,
                "__doc__": cls.__doc__,
            },
        )

    @property
    def session_config(self) -> SessionConfig:
        """The effective config: explicit preset, else the framework's layered config."""
        config = self.config
        if config is None:
            config = SessionConfig()
        elif not isinstance(config, SessionConfig):
            config = coerce_config(config)
        self._config = config
        return config

    async def register(self, container: Any) -> None:
        """Validate the config for the environment and bind every session service.

        ``cookie_secret`` is not required here: ``SessionMiddleware`` checks it when
        it is built, so a worker that never serves HTTP boots without one.
        """
        if not getattr(self, "_config_from_factory", False):
            await _refuse_a_section_that_is_no_mapping(container)
        config = self.session_config
        if getattr(self, "_config_from_factory", False) and not self._stub:
            _warn_of_unused_layered_storage(config)
        config.check_environment()
        container.singleton(SessionConfig, config)
        if not config.enabled:
            return
        store = (
            InMemorySessionStore(session_ttl=config.session_ttl)
            if self._stub
            else create_store(config)
        )
        self.store = store
        container.singleton(SessionStore, store)
        container.singleton(SessionStoreProtocol, store)

        async def build_manager(resolver: Any) -> SessionManagerImpl:
            manager = SessionManagerImpl(
                store,
                config,
                working_memory=await _optional(resolver, WorkingMemoryProtocol),
                consolidator=await _optional(resolver, MemoryConsolidatorProtocol),
                event_bus=await _optional(resolver, EventBusProtocol),
                hooks=await _optional(resolver, _hook_registry_type()),
            )
            self.manager = manager  # shutdown waits for what it left running
            return manager

        async def manager_alias(resolver: Any) -> SessionManagerImpl:
            manager: SessionManagerImpl = await resolver.resolve(SessionManagerImpl)
            return manager

        async def build_checkpoints(resolver: Any) -> CheckpointManager:
            manager: SessionManagerImpl = await resolver.resolve(SessionManagerImpl)
            return manager.checkpoints

        async def build_branches(resolver: Any) -> BranchManager:
            manager: SessionManagerImpl = await resolver.resolve(SessionManagerImpl)
            # Built from the manager: its store, limits and subscribers, and its
            # background, which shutdown waits for (a fork's announcement included).
            return BranchManager(manager)

        async def build_scheduler(resolver: Any) -> SessionCleanupScheduler:
            manager: SessionManagerImpl = await resolver.resolve(SessionManagerImpl)
            return SessionCleanupScheduler(manager)

        container.singleton(SessionManagerImpl, factory=build_manager)
        container.singleton(SessionManagerProtocol, factory=manager_alias)
        # The manager's whole typed API (the framework's contract declares a few methods).
        container.singleton(SessionManagerAPI, factory=manager_alias)
        container.singleton(CheckpointManager, factory=build_checkpoints)
        container.singleton(BranchManager, factory=build_branches)
        container.singleton(SessionCleanupScheduler, factory=build_scheduler)
        self._register_extensions(container, store, config)

    def _register_extensions(
        self, container: Any, store: SessionStore, config: SessionConfig
    ) -> None:
        """Bind the services of the optional sub-packages (context, web, groups)."""
        from lexigram.ai.session.di.extensions import register_extensions

        register_extensions(container, store, config)

    async def boot(self, container: Any) -> None:
        """Initialise the store (tables, scripts, connection) and start the sweeper."""
        if not self.session_config.enabled or self.store is None:
            return
        config = self.session_config
        await initialize_store(self.store, (config.database_url, config.redis_url))
        if self.enable_cleanup_scheduler and not self._stub:
            scheduler: SessionCleanupScheduler = await container.resolve(SessionCleanupScheduler)
            scheduler.start()
            self.scheduler = scheduler

    async def shutdown(self) -> None:
        """Stop the sweeper and close the store's connections."""
        if self.scheduler is not None:
            await self.scheduler.stop()
            self.scheduler = None
        if self.manager is not None:
            # Automatic checkpoints of appends whose callers were cancelled (finishing).
            await self.manager.wait_for_background()
        if self.store is not None:
            await self.store.close()

    async def on_error(self, error: Exception, phase: str) -> None:
        """Log a failed boot or shutdown at DEBUG only.

        The framework re-raises the error and logs it itself; the base class's
        extra ERROR line (with a full traceback) repeated it once more.
        """
        logger.debug("ai_session.provider_failed", phase=phase, error_type=type(error).__name__)

    async def health_check(self, timeout: float = 5.0) -> HealthCheckResult:  # noqa: ASYNC109
        """Ping the backend; UNHEALTHY with the reason when it does not answer."""
        if self.store is None:
            return HealthCheckResult(
                component=self.name,
                status=HealthStatus.HEALTHY,
                message="session subsystem disabled",
            )
        import asyncio

        backend = canonical_name(self.session_config.backend) if not self._stub else "memory"
        try:
            await asyncio.wait_for(self.store.ping(), timeout=timeout)
        except Exception as exc:
            return HealthCheckResult(
                component=self.name,
                status=HealthStatus.UNHEALTHY,
                message=f"{backend} store unreachable: {exc}",
                details={"backend": backend},
            )
        return HealthCheckResult(
            component=self.name, status=HealthStatus.HEALTHY, details={"backend": backend}
        )


def _hook_registry_type() -> type:
    from lexigram.hooks import HookRegistry

    return HookRegistry


async def _refuse_a_section_that_is_no_mapping(container: Any) -> None:
    """``ai_session: sql`` (or a list, a number) in application.yaml: the framework binds
    the defaults for a section that is not a mapping, silently (sessions kept in memory)."""
    from lexigram.config.main import LexigramConfig

    resolve_optional = getattr(container, "resolve_optional", None)
    if resolve_optional is None:
        return
    try:
        lex_config = await resolve_optional(LexigramConfig)
    except Exception:  # no application config to look at: nothing to refuse
        return
    if lex_config is None:
        return
    section = lex_config.get_section(SessionProvider.config_key)
    if section is not None and not isinstance(section, Mapping | SessionConfig):
        raise ConfigurationError(
            f"ai_session: must be a mapping, got {type(section).__name__}"
        )


def _warn_of_unused_layered_storage(config: SessionConfig) -> None:
    """Log the storage settings of YAML / environment a config given in code leaves unused.

    A config in code replaces the layered one (SPEC, docs/configuration.md), so a
    ``LEX_AI_SESSION__DATABASE_URL`` beside ``configure({"session_ttl": 3600})`` was
    ignored without a word and sessions went to memory (an outside audit). Named by
    field, never by value (a URL may hold a password); ``SessionManager.open()`` runs
    the same check (``config.layered_fields_left_unused``).
    """
    unused = layered_fields_left_unused(config)
    if unused:
        logger.warning(
            "ai_session.config_in_code_ignores_layered",
            fields=unused,
            backend=config.backend,
            hint=LAYERED_HINT,
        )
