"""Publishes domain events and fires hooks; a failing subscriber never breaks a write."""

from __future__ import annotations

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
