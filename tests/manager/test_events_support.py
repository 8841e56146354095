"""Collaborators the event, cleanup and memory tests register in a real container.

Core lexigram ships no event bus, so :class:`RecordingBus` is a minimal in-process
implementation of ``EventBusProtocol`` (publish -> every subscribed handler).
:func:`collaborators_module` builds a global module whose provider binds the given
instances, the way an application wires its own bus / hooks / memory services.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from lexigram.contracts.ai.memory import (
    ConsolidationResult,
    MemoryConsolidatorProtocol,
    MemoryEntry,
    WorkingMemoryProtocol,
)
from lexigram.contracts.core.health import HealthCheckResult, HealthStatus
from lexigram.contracts.events.protocols.domain import EventBusProtocol
from lexigram.di.module import Module, module
from lexigram.di.provider import Provider, ProviderPriority
from lexigram.hooks import HookRegistry
from lexigram.result import Ok

__all__ = [
    "EventRecorder",
    "RecordingBus",
    "RecordingConsolidator",
    "RecordingWorkingMemory",
    "collaborators_module",
    "record_hooks",
]


class EventRecorder:
    """An event handler that keeps what it handled."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    async def handle(self, event: Any) -> Any:
        self.events.append(event)
        return Ok(None)


class RecordingBus:
    """In-process ``EventBusProtocol``: publish dispatches to the subscribed handlers."""

    def __init__(self, *, fail: bool = False) -> None:
        self.fail = fail
        self.published: list[Any] = []
        self._handlers: dict[type, list[Any]] = defaultdict(list)

    async def publish(self, event: Any) -> Any:
        if self.fail:
            raise RuntimeError("bus down")
        self.published.append(event)
        for event_type, handlers in list(self._handlers.items()):
            if isinstance(event, event_type):
                for handler in handlers:
                    await handler.handle(event)
        return Ok(None)

    def subscribe(self, event_type: type, handler: Any) -> None:
        self._handlers[event_type].append(handler)

    def unsubscribe(self, event_type: type, handler: Any) -> None:
        self._handlers[event_type].remove(handler)

    def of(self, event_type: type) -> list[Any]:
        """Published events of ``event_type``."""
        return [e for e in self.published if isinstance(e, event_type)]


def record_hooks(registry: HookRegistry, *names: str) -> dict[str, list[Any]]:
    """Register a recording action on each hook name; returns name -> payloads."""
    seen: dict[str, list[Any]] = {name: [] for name in names}
    for name in names:

        async def handler(*, payload: Any, _name: str = name, **_: Any) -> None:
            seen[_name].append(payload)

        registry.register_action(name, handler)
    return seen


class RecordingWorkingMemory:
    """A ``WorkingMemoryProtocol`` keeping every entry it is given."""

    def __init__(self, *, fail: bool = False, delay_s: float = 0.0) -> None:
        self.entries: list[MemoryEntry] = []
        self.fail = fail
        self.delay_s = delay_s

    async def assemble(
        self, query: str, token_budget: int, *, owner_id: str, session_id: str | None = None
    ) -> list[MemoryEntry]:
        return [
            e
            for e in self.entries
            if e.owner_id == owner_id
            and (session_id is None or e.metadata.get("session_id") == session_id)
        ]

    async def add(self, entry: MemoryEntry) -> None:
        if self.delay_s:
            import asyncio

            await asyncio.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("working memory down")
        self.entries.append(entry)

    async def get_context_entries(self) -> list[MemoryEntry]:
        return list(self.entries)

    async def flush(self) -> None:
        self.entries.clear()

    async def health_check(self, timeout: float = 5.0) -> HealthCheckResult:  # noqa: ASYNC109
        return HealthCheckResult(component="wm", status=HealthStatus.HEALTHY)


class RecordingConsolidator:
    """A ``MemoryConsolidatorProtocol`` keeping every batch it is given."""

    def __init__(self, *, fail: bool = False, delay_s: float = 0.0) -> None:
        self.batches: list[list[MemoryEntry]] = []
        self.fail = fail
        self.delay_s = delay_s

    async def consolidate(self, entries: list[MemoryEntry]) -> ConsolidationResult:
        if self.delay_s:
            import asyncio

            await asyncio.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("consolidator down")
        self.batches.append(list(entries))
        return ConsolidationResult(
            entries_processed=len(entries),
            entries_consolidated=0,
            entries_pruned=0,
            entities_extracted=0,
            duration_ms=0.0,
        )

    async def health_check(self, timeout: float = 5.0) -> HealthCheckResult:  # noqa: ASYNC109
        return HealthCheckResult(component="consolidator", status=HealthStatus.HEALTHY)


def collaborators_module(
    *,
    bus: RecordingBus | None = None,
    hooks: HookRegistry | None = None,
    working_memory: RecordingWorkingMemory | None = None,
    consolidator: RecordingConsolidator | None = None,
) -> type[Module]:
    """A global module binding the given collaborators (a fresh provider class each call)."""
    bindings: list[tuple[type, Any]] = []
    if bus is not None:
        bindings.append((EventBusProtocol, bus))
    if hooks is not None:
        bindings.append((HookRegistry, hooks))
    if working_memory is not None:
        bindings.append((WorkingMemoryProtocol, working_memory))
    if consolidator is not None:
        bindings.append((MemoryConsolidatorProtocol, consolidator))

    class CollaboratorsProvider(Provider):
        name = "test-collaborators"
        priority = ProviderPriority.INFRASTRUCTURE

        async def register(self, container: Any) -> None:
            for service_type, instance in bindings:
                container.singleton(service_type, instance)

        async def boot(self, container: Any) -> None:
            return None

        async def shutdown(self) -> None:
            return None

        async def health_check(self, timeout: float = 5.0) -> HealthCheckResult:  # noqa: ASYNC109
            return HealthCheckResult(component=self.name, status=HealthStatus.HEALTHY)

    @module(
        providers=[CollaboratorsProvider],
        exports=[t for t, _ in bindings],
        is_global=True,
    )
    class CollaboratorsModule(Module):
        """Test collaborators."""

    return CollaboratorsModule

