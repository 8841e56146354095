"""The cleanup scheduler: marks idle sessions EXPIRED and purges old ended sessions.

One sweep has two phases:

1. **expire** — ``store.find_expired`` lists live sessions whose deadline
   (``updated_at + session_ttl``) has passed, through the store's deadline index
   (never a scan of every session); ``store.mark_expired_batch`` stores EXPIRED for
   a whole batch (one statement or one round trip) and hands each record to
   exactly one caller, which then fires what a close fires
   (``SessionExpiredEvent`` + ``ai_session.session_expired``, then
   ``SessionClosedEvent(reason="expired")`` + ``ai_session.session_closed``) and
   consolidates the turns into memory. Several application instances may sweep the
   same store at once: each expiry is reported once.
2. **purge** — ``store.find_purgeable`` lists CLOSED/EXPIRED sessions last updated
   more than ``purge_after_s`` ago; ``store.purge_batch`` deletes a batch of them
   with their turns and checkpoints and leaves tombstones so that a late write
   cannot recreate them.

Expiry is *reported* by every read as soon as the deadline passes (and writes are
refused); the sweep only makes it durable and fires the notifications, so a long
``cleanup_interval_s`` delays events, never enforcement.

A record that cannot be decoded (in the ``damaged`` part of a batch's
:class:`~lexigram.ai.session.stores.base.BatchOutcome`) never stops a sweep: it
is logged at WARNING with its session id, counted in :attr:`SweepReport.damaged`
and the ``ai_session.sweep.damaged`` metric, and handed to ``store.quarantine``
so that later batches and sweeps do not meet it again; the sweep goes on with the
rest. The record itself is left for an operator to inspect or delete.
"""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from lexigram.concurrency import create_tracked_task
from lexigram.logging import get_logger

from lexigram.ai.session.events import SessionClosedEvent, SessionExpiredEvent
from lexigram.ai.session.exceptions import CorruptRecordError, SessionValidationError
from lexigram.ai.session.hooks import (
    HOOK_SESSION_CLOSED,
    HOOK_SESSION_EXPIRED,
    SessionClosedHook,
    SessionExpiredHook,
)
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.observability import telemetry
from lexigram.ai.session.stores.base import BatchOutcome, SessionRecord
from lexigram.ai.session.validation import MAX_DURATION_S

__all__ = ["MIN_TOMBSTONE_S", "SessionCleanupScheduler", "SweepProgress", "SweepReport"]

logger = get_logger(__name__)

#: Shortest tombstone a purge leaves, whatever ``purge_after_s`` is (one hour).
MIN_TOMBSTONE_S = 3600

T = TypeVar("T")

SweepProgress = Callable[[str, int], None]
"""Called after each batch with the phase (``"expire"`` / ``"purge"``) and the count so far."""


@dataclass(frozen=True)
class SweepReport:
    """What one sweep did.

    ``skipped`` counts sessions a store listed that this sweeper did not change
    (another sweeper got there first, or a write moved the deadline).
    ``damaged`` counts sessions whose stored record could not be decoded: each was
    logged and quarantined (taken out of the sweeper's indexes), and the sweep went
    on; ``damaged_ids`` names them, sorted. ``failed`` counts sessions a store call
    failed for (a batch that raised as a whole, or one session of it: the store down,
    a constraint), left for the next sweep; ``failed_ids`` names them, sorted, and
    ``error`` is the first failure's message. ``interrupted`` is True when
    :meth:`SessionCleanupScheduler.stop` cut it short.
    """

    expired: int = 0
    purged: int = 0
    skipped: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    damaged: int = 0
    damaged_ids: tuple[str, ...] = ()
    failed: int = 0
    failed_ids: tuple[str, ...] = ()
    error: str | None = None


def _skipped(
    skipped: set[str],
    ids: Sequence[str],
    done: set[str],
    damaged: set[str],
    failures: dict[str, str],
) -> None:
    """Keep in ``skipped`` the ids a batch left alone, each counted once per phase.

    A row another sweeper holds is skipped, listed again by the next batch while that
    sweeper's transaction is open, and may be taken by this one after all. An id the
    store failed for is counted as failed, not skipped (unless a later batch did it).
    """
    skipped.difference_update(done)
    for session_id in done:
        failures.pop(session_id, None)
    skipped.update(i for i in ids if i not in done and i not in damaged and i not in failures)


class SessionCleanupScheduler:
    """Runs :meth:`sweep` every ``cleanup_interval_s`` seconds between ``start`` and ``stop``.

    Arguments default to the manager's config (``cleanup_interval_s``,
    ``sweep_batch_size``, ``purge_after_s``). ``concurrency`` bounds how many
    sessions of a batch are expired, purged (by a store without batched operations)
    or notified at once; ``tombstone_s`` is how long a
    purged id stays reserved (``purge_after_s``, at least :data:`MIN_TOMBSTONE_S`).
    """

    def __init__(
        self,
        manager: SessionManagerImpl,
        *,
        interval_s: float | None = None,
        batch_size: int | None = None,
        purge_after_s: float | None = None,
        tombstone_s: float | None = None,
        concurrency: int = 16,
        jitter: float = 0.1,
    ) -> None:
        self.manager = manager
        self.store = manager.store
        self.config = manager.config
        self.interval_s = _bounded(_positive(
            "interval_s", interval_s if interval_s is not None else self.config.cleanup_interval_s
        ), "interval_s")
        cfg = self.config
        self.batch_size = int(
            _positive("batch_size", cfg.sweep_batch_size if batch_size is None else batch_size)
        )
        self.purge_after_s = _bounded(_non_negative(
            "purge_after_s", cfg.purge_after_s if purge_after_s is None else purge_after_s
        ), "purge_after_s")
        self.tombstone_s = _bounded(_non_negative(
            "tombstone_s",
            tombstone_s if tombstone_s is not None else max(self.purge_after_s, MIN_TOMBSTONE_S),
        ), "tombstone_s")
        self.concurrency = int(_positive("concurrency", concurrency))
        if not 0.0 <= jitter < 1.0:
            raise SessionValidationError("jitter", f"must be in [0, 1), got {jitter!r}")
        self.jitter = jitter
        self.last_report: SweepReport | None = None
        self.sweeps = 0
        self._stop = asyncio.Event()
        # One lock per event loop: an asyncio lock belongs to one loop, and sweeps
        # started on different loops are as safe together as sweeps of two processes.
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._tasks: set[asyncio.Task[None]] = set()

    # ---------------------------------------------------------------- control
    @property
    def running(self) -> bool:
        """Whether the background loop is running."""
        return any(not t.done() for t in self._tasks)

    def start(self) -> None:
        """Start the background loop (idempotent); the first sweep comes within one interval."""
        if self.running:
            return
        self._stop = asyncio.Event()
        create_tracked_task(self._run(), self._tasks, name="ai_session.sweeper")
        logger.debug("ai_session.sweeper_started", interval_s=self.interval_s)

    async def stop(self, *, grace_s: float = 10.0) -> None:
        """Stop the loop; a sweep in progress ends after its batch (cancelled after ``grace_s``)."""
        self._stop.set()
        tasks = list(self._tasks)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        # Sweeps already running hold the event just set; later manual sweeps run in full.
        self._stop = asyncio.Event()

    def _loop_lock(self) -> asyncio.Lock:
        """The lock serialising this sweeper's passes on the running event loop."""
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks.setdefault(loop, asyncio.Lock())
        return lock

    def _next_delay(self, first: bool) -> float:
        if first:
            # Spread the first sweep of several instances started together.
            return self.interval_s * random.uniform(0.5, 1.0)
        spread = self.interval_s * self.jitter
        return self.interval_s + random.uniform(-spread, spread)

    async def _run(self) -> None:
        stop = self._stop
        first = True
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=self._next_delay(first))
                return
            except TimeoutError:
                pass
            first = False
            try:
                await self.sweep()
            except Exception:
                logger.exception("ai_session.sweep_failed")

    # ------------------------------------------------------------------ sweep
    async def sweep(
        self, *, progress: SweepProgress | None = None, expire: bool = True, purge: bool = True
    ) -> SweepReport:
        """Expire idle sessions, then purge ended ones older than ``purge_after_s``; one pass.

        ``expire=False`` / ``purge=False`` skip a phase.
        """
        stop = self._stop
        async with self._loop_lock():
            tel = telemetry()
            backend = self.store.backend_name
            start = time.perf_counter()
            failed = False
            expired = purged = skipped = 0
            damaged: set[str] = set()
            failures: dict[str, str] = {}  # session id -> error, in the order met
            try:
                with tel.span("ai_session.sweep", {"ai_session.backend": backend}) as span:
                    if expire:
                        expired, skipped = await self._expire_phase(
                            stop, progress, damaged, failures
                        )
                    if purge and not stop.is_set():
                        purged, more_skipped = await self._purge_phase(
                            stop, progress, damaged, failures
                        )
                        skipped += more_skipped
                    if span is not None:
                        span.set_attribute("ai_session.sweep.expired", expired)
                        span.set_attribute("ai_session.sweep.purged", purged)
            except BaseException:
                failed = True
                raise
            finally:
                seconds = time.perf_counter() - start
                tel.sweep_finished(
                    expired=expired,
                    purged=purged,
                    seconds=seconds,
                    backend=backend,
                    failed=failed,
                    damaged=len(damaged),
                )
            self.sweeps += 1
            report = SweepReport(
                expired=expired,
                purged=purged,
                skipped=skipped,
                seconds=seconds,
                interrupted=stop.is_set(),
                damaged=len(damaged),
                damaged_ids=tuple(sorted(damaged)),
                failed=len(failures),
                failed_ids=tuple(sorted(failures)),
                error=next(iter(failures.values()), None),
            )
            self.last_report = report
            if expired or purged:
                logger.debug(
                    "ai_session.sweep", expired=expired, purged=purged, seconds=round(seconds, 3)
                )
            return report

    async def _expire_phase(
        self,
        stop: asyncio.Event,
        progress: SweepProgress | None,
        damaged: set[str],
        failures: dict[str, str],
    ) -> tuple[int, int]:
        done = 0
        skipped: set[str] = set()
        # A batch's notifications run while the store works on the next batch (one
        # batch at most in flight); the phase ends when the last ones are done.
        notifying: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                ids = await self.store.find_expired(limit=self.batch_size)
                if not ids:
                    break
                outcome = await self._batch("expire", ids, self._mark_expired_batch, failures)
                newly_damaged = await self._settle(outcome, "expire", damaged, failures)
                if notifying is not None:
                    await notifying
                notifying = asyncio.create_task(
                    self._notify_all(outcome.done), name="ai_session.sweep_notify"
                )
                newly = len(outcome.done)
                done += newly
                _skipped(
                    skipped, ids, {r.state.session_id for r in outcome.done}, damaged, failures
                )
                if progress is not None:
                    progress("expire", done)
                # A short batch is the last one; a batch where nothing changed (no
                # expiry, no newly damaged record taken out) means another sweeper is
                # ahead on the same ids: leave the rest to it.
                if len(ids) < self.batch_size or newly + newly_damaged == 0:
                    break
        except BaseException:
            if notifying is not None:
                notifying.cancel()  # cut short, as the sweep is
            raise
        finally:
            if notifying is not None:
                await asyncio.gather(notifying, return_exceptions=True)
        return done, len(skipped)

    async def _purge_phase(
        self,
        stop: asyncio.Event,
        progress: SweepProgress | None,
        damaged: set[str],
        failures: dict[str, str],
    ) -> tuple[int, int]:
        now = self.store.now()
        cutoff = now - timedelta(seconds=self.purge_after_s)
        until = now + timedelta(seconds=self.tombstone_s)
        done = 0
        skipped: set[str] = set()

        async def purge_batch(ids: Sequence[str]) -> BatchOutcome[str]:
            return await self.store.purge_batch(
                ids, tombstone_until=until, concurrency=self.concurrency
            )

        while not stop.is_set():
            ids = await self.store.find_purgeable(older_than=cutoff, limit=self.batch_size)
            if not ids:
                break
            outcome = await self._batch("purge", ids, purge_batch, failures)
            newly_damaged = await self._settle(outcome, "purge", damaged, failures)
            newly = len(outcome.done)
            done += newly
            _skipped(skipped, ids, set(outcome.done), damaged, failures)
            if progress is not None:
                progress("purge", done)
            if len(ids) < self.batch_size or newly + newly_damaged == 0:
                break
        return done, len(skipped)

    async def _mark_expired_batch(self, ids: Sequence[str]) -> BatchOutcome[SessionRecord]:
        return await self.store.mark_expired_batch(ids, concurrency=self.concurrency)

    async def _batch(
        self,
        phase: str,
        ids: Sequence[str],
        call: Callable[[Sequence[str]], Awaitable[BatchOutcome[T]]],
        failures: dict[str, str],
    ) -> BatchOutcome[T]:
        """One batched store call; a batch that fails as a whole changes nothing here
        (its ids are counted as failed, with the error)."""
        try:
            return await call(ids)
        except Exception as exc:
            logger.warning("ai_session.sweep_batch_failed", phase=phase, error=str(exc))
            for session_id in ids:
                failures.setdefault(session_id, f"{phase}: {exc}")
            return BatchOutcome()

    async def _settle(
        self,
        outcome: BatchOutcome[Any],
        phase: str,
        damaged: set[str],
        failures: dict[str, str],
    ) -> int:
        """Quarantine the batch's damaged records (once per sweep), log its failures.

        Returns how many damaged records were new to this sweep.
        """
        newly = 0
        for session_id, exc in outcome.damaged:
            if session_id not in damaged and await self._quarantine(session_id, phase, exc):
                damaged.add(session_id)
                newly += 1
        for session_id, error in outcome.failed:
            logger.warning("ai_session.sweep_item_failed", session_id=session_id, error=str(error))
            failures.setdefault(session_id, f"{phase}: {error}")
        return newly

    async def _notify_all(self, records: Sequence[SessionRecord]) -> None:
        """Fire what a close fires for each record, ``concurrency`` workers at once."""
        if not records:
            return
        pending = iter(records)

        async def worker() -> None:
            for record in pending:
                try:
                    await self._after_expiry(record)
                except Exception as exc:
                    logger.warning(
                        "ai_session.expiry_notify_failed",
                        session_id=record.state.session_id,
                        error=str(exc),
                    )

        await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(records)))))

    async def _quarantine(self, session_id: str, phase: str, exc: CorruptRecordError) -> bool:
        """Log a damaged record and take it out of the sweeper's indexes.

        The record is read once more first: a session deleted and created again under
        the id (an auto-creating adapter), or repaired, since the batch met it is
        healthy now and is left alone (quarantine marks whatever the id holds; a
        regression audit saw a re-created session refuse every write).
        """
        try:
            again = await self.store.load_record(session_id)
        except Exception:  # still damaged (or unreadable): quarantined below
            pass
        else:  # gone, or healthy now
            logger.debug(
                "ai_session.sweep_damaged_record_gone",
                session_id=session_id,
                phase=phase,
                stored=again is not None,
            )
            return False
        logger.warning(
            "ai_session.sweep_damaged_record",
            session_id=session_id,
            phase=phase,
            error=str(exc),
        )
        try:
            await self.store.quarantine(session_id)
        except Exception as failure:  # the sweep goes on; the next one retries
            logger.warning(
                "ai_session.sweep_quarantine_failed", session_id=session_id, error=str(failure)
            )
        return True

    async def _after_expiry(self, record: SessionRecord) -> None:
        """What a close does, for a session this sweeper just marked EXPIRED."""
        state = record.state
        manager = self.manager
        telemetry().session_ended("expired", backend=self.store.backend_name)
        if self.config.consolidate_on_close and manager.memory.consolidator is not None:
            try:
                turns = await self.store.get_turns(state.session_id)
            except Exception as exc:  # purged or deleted meanwhile
                logger.warning(
                    "ai_session.expiry_turns_unreadable",
                    session_id=state.session_id,
                    error=str(exc),
                )
            else:
                await manager.consolidate_ended(state.session_id, state.user_id, turns)
        notifier = manager.notifier
        sid, uid = state.session_id, state.user_id
        await notifier.notify_lazy(
            lambda: SessionExpiredEvent(session_id=sid, user_id=uid),
            HOOK_SESSION_EXPIRED,
            lambda: SessionExpiredHook(session_id=sid, user_id=uid),
        )
        await notifier.notify_lazy(
            lambda: SessionClosedEvent(
                session_id=sid,
                user_id=uid,
                duration_seconds=max((state.updated_at - state.created_at).total_seconds(), 0.0),
                reason="expired",
            ),
            HOOK_SESSION_CLOSED,
            lambda: SessionClosedHook(session_id=sid, user_id=uid, reason="expired"),
        )


def _positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise SessionValidationError(name, f"must be a number > 0, got {value!r}")
    return float(value)


def _non_negative(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise SessionValidationError(name, f"must be a number >= 0, got {value!r}")
    return float(value)


def _bounded(value: float, name: str) -> float:
    """``value`` as a float, refused past :data:`MAX_DURATION_S` (and when not finite)."""
    if not value <= MAX_DURATION_S:
        raise SessionValidationError(
            name, f"must be <= {MAX_DURATION_S} (a thousand years), got {value!r}"
        )
    return float(value)
