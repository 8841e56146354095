"""Publishes domain events and fires hooks; a failing subscriber never breaks a write."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lexigram.contracts.domain.events import DomainEvent
from lexigram.contracts.events.protocols.domain import EventBusProtocol
from lexigram.hooks import HookRegistry
from lexigram.hooks import ambient as ambient_hooks
from lexigram.logging import get_logger

__all__ = ["SessionNotifier"]

logger = get_logger(__name__)


class SessionNotifier:
    """Sends lifecycle notifications to the event bus and the hook registry.

    Without a ``hooks`` registry the framework's ambient registry is used; without an
    event bus no event is published.
    """

    def __init__(
        self, event_bus: EventBusProtocol | None = None, hooks: HookRegistry | None = None
    ) -> None:
        self.event_bus = event_bus
        self._hooks = hooks

    @property
    def hooks(self) -> HookRegistry:
        """The registry hooks are fired on."""
        return self._hooks if self._hooks is not None else ambient_hooks.current()

    def fires(self, hook: str) -> bool:
        """Whether a handler for ``hook`` is registered now (its payload is worth building)."""
        return self.hooks.has_action(hook)

    def listened(self, hook: str) -> bool:
        """Whether anything would receive ``hook`` or an event now (a bus, or a handler)."""
        return self.event_bus is not None or self.hooks.has_action(hook)

    async def notify_lazy(
        self,
        event: Callable[[], DomainEvent] | None,
        hook: str,
        payload: Callable[[], Any],
    ) -> None:
        """:meth:`notify`, building the event and the payload only for a listener.

        With no event bus and no handler for ``hook`` this costs two lookups: the
        hot paths (appends, the sweeper's expiries) pay nothing for what nobody
        receives.
        """
        built = event() if event is not None and self.event_bus is not None else None
        fire = self.fires(hook)
        if built is None and not fire:
            return
        await self.notify(built, hook if fire else None, payload() if fire else None)

    async def notify(
        self, event: DomainEvent | None = None, hook: str | None = None, payload: Any = None
    ) -> None:
        """Publish ``event`` and fire ``hook`` with ``payload``; log and swallow failures."""
        if event is not None and self.event_bus is not None:
            try:
                result = await self.event_bus.publish(event)
                if hasattr(result, "is_err") and result.is_err():
                    logger.warning(
                        "ai_session.event_publish_failed",
                        event_type=type(event).__name__,
                        error=str(result.unwrap_err()),
                    )
            except Exception as exc:
                logger.warning(
                    "ai_session.event_publish_failed",
                    event_type=type(event).__name__,
                    error=str(exc),
                )
        if hook is not None:
            try:
                await self.hooks.call_action(hook, payload=payload)
            except Exception as exc:
                logger.warning("ai_session.hook_failed", hook=hook, error=str(exc))
