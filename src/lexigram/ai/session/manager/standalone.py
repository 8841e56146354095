"""``SessionManager.open()``: a manager over its own store, without an Application.

For scripts, notebooks, workers and applications on other frameworks::

    async with SessionManager.open(database_url="sqlite+aiosqlite:///sessions.db") as sessions:
        state = await sessions.create("user-1")

The config is validated exactly as at boot (a URL selects its backend, typos and
malformed URLs are refused, production refuses the in-memory backend); the store is
initialised on entry, and the sweeper (when asked) and the store are closed on exit,
also when the block raises.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

from lexigram.contracts.ai.memory import MemoryConsolidatorProtocol, WorkingMemoryProtocol
from lexigram.contracts.events.protocols.domain import EventBusProtocol
from lexigram.contracts.exceptions.config import ConfigurationError
from lexigram.hooks import HookRegistry
from lexigram.logging import get_logger

from lexigram.ai.session.config import (
    LAYERED_HINT,
    SessionConfig,
    coerce_config,
    layered_fields_left_unused,
)
from lexigram.ai.session.exceptions import SessionError
from lexigram.ai.session.manager.cleanup import SessionCleanupScheduler
from lexigram.ai.session.redaction import redact_text
from lexigram.ai.session.stores.base import SessionStore
from lexigram.ai.session.stores.registry import create_store

if TYPE_CHECKING:
    from lexigram.ai.session.manager.core import SessionManagerImpl

__all__ = ["initialize_store", "open_manager", "resolve_config"]

logger = get_logger(__name__)

M = TypeVar("M", bound="SessionManagerImpl")


def resolve_config(
    config: SessionConfig | Mapping[str, Any] | None,
    overrides: Mapping[str, Any],
    *,
    warn_layered: bool = True,
) -> SessionConfig:
    """``config`` (a ``SessionConfig``, a dict or None) with ``overrides`` applied.

    A dict and the overrides are merged and validated together, so
    ``database_url=...`` alone selects the sql backend. Over a
    ``SessionConfig`` the overrides replace its fields (its ``backend`` stays
    explicit). Production settings are checked as at boot. YAML and
    ``LEX_AI_SESSION__*`` are not read: when they set a storage field (``backend``,
    ``database_url``, ``redis_url``) that the result leaves otherwise,
    ``ai_session.config_in_code_ignores_layered`` is logged at WARNING naming the fields;
    unless ``warn_layered`` is False: the CLI and the explorer pass a config built from
    their own flags over the layered one (an explicit override, not config in code).
    """
    if isinstance(config, SessionConfig):
        settings = config
        if overrides:
            values = {f.name: getattr(config, f.name) for f in fields(config)}
            settings = SessionConfig(**{**values, **overrides})
    elif config is None or isinstance(config, Mapping):
        settings = coerce_config({**(config or {}), **overrides})
    else:
        settings = coerce_config(config)  # refuses with the type named
    settings.check_environment()
    unused = layered_fields_left_unused(settings) if warn_layered else []
    if unused:
        # As SessionModule.configure() does: the config given here replaces the layered
        # one, so a LEX_AI_SESSION__DATABASE_URL beside it is not used (named, never shown).
        logger.warning(
            "ai_session.config_in_code_ignores_layered",
            fields=unused,
            backend=settings.backend,
            hint=LAYERED_HINT,
        )
    if not settings.enabled:
        raise ConfigurationError(
            "ai_session.enabled: the session subsystem is disabled; nothing to open"
        )
    return settings


def _causes(exc: BaseException, urls: Sequence[object]) -> list[str]:
    """The exception chain under ``exc`` as one line each, secrets of ``urls`` masked."""
    out: list[str] = []
    seen: set[int] = set()
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen and len(out) < 10:
        seen.add(id(cause))
        line = f"{type(cause).__name__}: {cause}".splitlines()[0][:500]
        out.append(redact_text(line, urls))
        cause = cause.__cause__ or cause.__context__
    return out


async def initialize_store(store: SessionStore, urls: Sequence[object] = ()) -> None:
    """``store.initialize()``, failing with the store's own one-line error.

    The driver's exception chain (often a hundred lines of traceback repeating
    what the message says) is logged at DEBUG as one line per cause, without
    tracebacks (whose local variables would show a password) and with the secrets
    of ``urls`` masked, and left off the raised error.
    """
    try:
        await store.initialize()
    except SessionError as exc:
        logger.debug(
            "ai_session.store_initialize_failed",
            error=str(exc),
            causes=_causes(exc, urls),
        )
        exc.__cause__ = None
        exc.__suppress_context__ = True
        raise exc.with_traceback(None) from None


@asynccontextmanager
async def open_manager(
    config: SessionConfig | Mapping[str, Any] | None = None,
    *,
    manager_class: type[M],
    cleanup: bool = False,
    working_memory: WorkingMemoryProtocol | None = None,
    consolidator: MemoryConsolidatorProtocol | None = None,
    event_bus: EventBusProtocol | None = None,
    hooks: HookRegistry | None = None,
    warn_layered: bool = True,
    **overrides: Any,
) -> AsyncIterator[M]:
    """Build, initialise and yield a manager; close the sweeper and the store on exit.

    ``warn_layered=False``: ``config`` is an explicit override of the layered config
    (the CLI's flags), so :func:`resolve_config` does not warn about what it replaces.
    """
    settings = resolve_config(config, overrides, warn_layered=warn_layered)
    store = create_store(settings)
    scheduler: SessionCleanupScheduler | None = None
    manager: SessionManagerImpl | None = None
    try:
        await initialize_store(store, (settings.database_url, settings.redis_url))
        manager = manager_class(
            store,
            settings,
            working_memory=working_memory,
            consolidator=consolidator,
            event_bus=event_bus,
            hooks=hooks,
        )
        if cleanup:
            scheduler = SessionCleanupScheduler(manager)
            scheduler.start()
        yield manager
    finally:
        try:
            if scheduler is not None:
                await scheduler.stop()
            if manager is not None:
                await manager.wait_for_background()
        finally:
            await store.close()
