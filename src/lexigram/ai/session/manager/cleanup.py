"""The cleanup scheduler: marks idle sessions EXPIRED and purges old ended sessions.

Each store finds expired sessions through an index (never a scan of every session)
and ``mark_expired`` reports each expiry to exactly one caller, so several
application instances may sweep the same store at once without double-firing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from lexigram.concurrency import create_tracked_task
from lexigram.logging import get_logger

from lexigram.ai.session.events import SessionClosedEvent, SessionExpiredEvent
from lexigram.ai.session.hooks import (
    HOOK_SESSION_CLOSED,
    HOOK_SESSION_EXPIRED,
    SessionClosedHook,
    SessionExpiredHook,
)
from lexigram.ai.session.manager.core import SessionManagerImpl

__all__ = ["SessionCleanupScheduler", "SweepReport"]

logger = get_logger(__name__)


@dataclass(frozen=True)
class SweepReport:
    """What one sweep did."""

    expired: int = 0
    purged: int = 0


class SessionCleanupScheduler:
    """Runs :meth:`sweep` every ``cleanup_interval_s`` seconds between ``start`` and ``stop``."""

    def __init__(self, manager: SessionManagerImpl, *, interval_s: float | None = None) -> None:
        self.manager = manager
        self.store = manager.store
        self.config = manager.config
        self.interval_s = float(interval_s if interval_s is not None else self.config.cleanup_interval_s)
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> bool:
        """Whether the background loop is running."""
        return any(not t.done() for t in self._tasks)

    def start(self) -> None:
        """Start the background loop (idempotent)."""
        if self.running:
            return
        self._stop = asyncio.Event()
        create_tracked_task(self._run(), self._tasks, name="ai_session.sweeper")

    async def stop(self) -> None:
        """Stop the loop and wait for it to finish."""
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=self.interval_s)
                return
            except TimeoutError:
                pass
            try:
                await self.sweep()
            except Exception:
                logger.exception("ai_session.sweep_failed")

    async def sweep(self) -> SweepReport:
        """Expire idle sessions and purge ended ones past ``purge_after_s``; one pass."""
        batch = self.config.sweep_batch_size
        expired = 0
        while True:
            ids = await self.store.find_expired(limit=batch)
            newly = 0
            for session_id in ids:
                record = await self.store.mark_expired(session_id)
                if record is None:
                    continue
                newly += 1
                await self._notify_expired(record.state.session_id, record.state.user_id,
                                           (record.state.updated_at - record.state.created_at).total_seconds())
                if self.config.consolidate_on_close and self.manager.memory.consolidator is not None:
                    turns = await self.store.get_turns(session_id)
                    await self.manager.memory.consolidate(session_id, record.state.user_id, turns)
            expired += newly
            if len(ids) < batch or newly == 0:
                break
        purged = 0
        now = self.store.now()
        cutoff = now - timedelta(seconds=self.config.purge_after_s)
        tombstone_until = now + timedelta(seconds=max(self.config.purge_after_s, self.config.session_ttl))
        while True:
            ids = await self.store.find_purgeable(older_than=cutoff, limit=batch)
            done = 0
            for session_id in ids:
                if await self.store.purge(session_id, tombstone_until=tombstone_until):
                    done += 1
            purged += done
            if len(ids) < batch or done == 0:
                break
        if expired or purged:
            logger.info("ai_session.sweep", expired=expired, purged=purged)
        return SweepReport(expired=expired, purged=purged)

    async def _notify_expired(self, session_id: str, user_id: str, duration: float) -> None:
        notifier = self.manager.notifier
        await notifier.notify(
            SessionExpiredEvent(session_id=session_id, user_id=user_id),
            HOOK_SESSION_EXPIRED,
            SessionExpiredHook(session_id=session_id),
        )
        await notifier.notify(
            SessionClosedEvent(session_id=session_id, duration_seconds=duration, reason="expired"),
            HOOK_SESSION_CLOSED,
            SessionClosedHook(session_id=session_id, reason="expired"),
        )
