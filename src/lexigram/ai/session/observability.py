"""OpenTelemetry spans and metrics for the session subsystem.

When ``opentelemetry-api`` is importable, every instrumented manager operation runs
in a span (``ai_session.<operation>``) made current for its duration, so the
framework's log processor stamps ``trace_id``/``span_id`` on the log lines written
inside it, and these instruments are recorded:

=====================================  ==============  ==================================
name                                   kind            attributes
=====================================  ==============  ==================================
``ai_session.operation.duration``      histogram (ms)  ``operation``, ``outcome``, ``backend``
``ai_session.turns.appended``          counter         ``backend``
``ai_session.sessions.created``        counter         ``backend``
``ai_session.sessions.ended``          counter         ``backend``, ``reason``
``ai_session.sessions.active``         up-down counter ``backend``
``ai_session.sweeps``                  counter         ``backend``, ``outcome``
``ai_session.sweep.duration``          histogram (ms)  ``backend``
``ai_session.sweep.expired``           counter         ``backend``
``ai_session.sweep.purged``            counter         ``backend``
``ai_session.sweep.damaged``           counter         ``backend``
=====================================  ==============  ==================================

``sessions.created`` counts ``create`` and each branch a fork makes; ``turns.appended``
counts the turns of ``add_turns`` and those a merge appends to its parent (a fork's
copied turns are not appended); ``sessions.active`` is created minus ended, as seen by
this process.

Spans and instruments come from the global OpenTelemetry providers (whatever the
application or ``lexigram-monitor`` installed), or from the providers given to
:class:`SessionTelemetry`. Without ``opentelemetry`` every call is a no-op that
costs one attribute check; with it but before any provider is installed, the
instrumented operations skip their span and duration sample (nobody receives them).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

__all__ = [
    "OTEL_AVAILABLE",
    "SessionTelemetry",
    "instrumented",
    "set_telemetry",
    "telemetry",
]

P = ParamSpec("P")
R = TypeVar("R")

try:  # pragma: no branch - depends on the environment
    from opentelemetry import metrics as _otel_metrics
    from opentelemetry import trace as _otel_trace

    OTEL_AVAILABLE = True
except ImportError:  # pragma: no cover - exercised in a subprocess test
    _otel_metrics = None  # type: ignore[assignment]
    _otel_trace = None  # type: ignore[assignment]
    OTEL_AVAILABLE = False

_SCOPE = "lexigram.ai.session"
#: How long "no provider installed" is trusted before the globals are looked at again.
_RECHECK_S = 1.0


class SessionTelemetry:
    """Spans and metrics of one process; a no-op when OpenTelemetry is missing.

    ``tracer_provider`` / ``meter_provider`` default to the global OpenTelemetry
    providers (proxies that follow a provider installed later). ``enabled=False``
    turns everything into no-ops.
    """

    def __init__(
        self,
        *,
        tracer_provider: Any = None,
        meter_provider: Any = None,
        enabled: bool = True,
    ) -> None:
        self.enabled = bool(enabled and OTEL_AVAILABLE)
        self._listening = tracer_provider is not None or meter_provider is not None
        self._recheck_at = 0.0
        if not self.enabled:
            return
        assert _otel_trace is not None and _otel_metrics is not None
        tp = tracer_provider or _otel_trace.get_tracer_provider()
        mp = meter_provider or _otel_metrics.get_meter_provider()
        self._tracer = tp.get_tracer(_SCOPE)
        meter = mp.get_meter(_SCOPE)
        self._op_duration = meter.create_histogram(
            "ai_session.operation.duration", unit="ms", description="Duration of session operations"
        )
        self._appended = meter.create_counter(
            "ai_session.turns.appended",
            unit="{turn}",
            description="Turns appended to sessions (add_turns, and a merge's into its parent)",
        )
        self._created = meter.create_counter(
            "ai_session.sessions.created",
            unit="{session}",
            description="Sessions created (create, and a fork's branch)",
        )
        self._ended = meter.create_counter(
            "ai_session.sessions.ended",
            unit="{session}",
            description="Sessions closed, capped or expired",
        )
        self._active = meter.create_up_down_counter(
            "ai_session.sessions.active",
            unit="{session}",
            description="Sessions created minus sessions ended, as seen by this process",
        )
        self._sweeps = meter.create_counter(
            "ai_session.sweeps", unit="{sweep}", description="Cleanup sweeps run"
        )
        self._sweep_duration = meter.create_histogram(
            "ai_session.sweep.duration", unit="ms", description="Duration of one cleanup sweep"
        )
        self._sweep_expired = meter.create_counter(
            "ai_session.sweep.expired", unit="{session}", description="Sessions marked EXPIRED"
        )
        self._sweep_purged = meter.create_counter(
            "ai_session.sweep.purged", unit="{session}", description="Ended sessions purged"
        )
        self._sweep_damaged = meter.create_counter(
            "ai_session.sweep.damaged",
            unit="{session}",
            description="Undecodable sessions a sweep skipped and quarantined",
        )

    # ----------------------------------------------------------------- spans
    def listening(self) -> bool:
        """Whether spans or durations reach a provider (one was given or installed globally).

        While only OpenTelemetry's placeholder providers exist, a span and its
        duration sample would be thrown away: the instrumented operations then skip
        them (and their clock reads). The globals are looked at again at most once a
        second (a provider installed later is picked up within a second); once true
        it stays true.
        """
        if self._listening:
            return True
        if not self.enabled or _otel_trace is None or _otel_metrics is None:
            return False
        now = time.monotonic()
        if now < self._recheck_at:  # looked less than a second ago: nobody then
            return False
        self._recheck_at = now + _RECHECK_S
        tracer = _otel_trace.get_tracer_provider()
        meter = _otel_metrics.get_meter_provider()
        self._listening = not isinstance(
            tracer, _otel_trace.ProxyTracerProvider | _otel_trace.NoOpTracerProvider
        ) or not (
            isinstance(meter, _otel_metrics.NoOpMeterProvider)
            or type(meter).__name__ == "_ProxyMeterProvider"
        )
        return self._listening

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Any]:
        """A span made current for the block (None when disabled); errors are recorded."""
        if not self.enabled:
            yield None
            return
        with self._tracer.start_as_current_span(name, attributes=dict(attributes or {})) as span:
            yield span

    @contextmanager
    def operation(self, op: str, *, backend: str = "") -> Iterator[Any]:
        """Span ``ai_session.<op>`` plus a duration sample tagged with the outcome."""
        if not self.enabled:
            yield None
            return
        start = time.perf_counter()
        outcome = "ok"
        try:
            with self.span(f"ai_session.{op}", {"ai_session.backend": backend}) as span:
                yield span
        except BaseException as exc:
            outcome = type(exc).__name__
            raise
        finally:
            self._op_duration.record(
                (time.perf_counter() - start) * 1000.0,
                {"operation": op, "outcome": outcome, "backend": backend},
            )

    # --------------------------------------------------------------- metrics
    def turns_appended(self, count: int, *, backend: str = "") -> None:
        """Count ``count`` appended turns (``add_turns``, a merge into the parent)."""
        if self.enabled:
            self._appended.add(count, {"backend": backend})

    def session_created(self, *, backend: str = "") -> None:
        """Count a created session, a fork's branch too (and one more active)."""
        if self.enabled:
            self._created.add(1, {"backend": backend})
            self._active.add(1, {"backend": backend})

    def session_ended(self, reason: str, *, backend: str = "") -> None:
        """Count a session that ended (closed, capped, expired) and one less active."""
        if self.enabled:
            self._ended.add(1, {"backend": backend, "reason": reason})
            self._active.add(-1, {"backend": backend})

    def sweep_finished(
        self,
        *,
        expired: int,
        purged: int,
        seconds: float,
        backend: str = "",
        failed: bool = False,
        damaged: int = 0,
    ) -> None:
        """Record one sweep's outcome and duration (``damaged``: records it quarantined)."""
        if not self.enabled:
            return
        attrs = {"backend": backend}
        self._sweeps.add(1, {"backend": backend, "outcome": "error" if failed else "ok"})
        self._sweep_duration.record(seconds * 1000.0, attrs)
        if expired:
            self._sweep_expired.add(expired, attrs)
        if purged:
            self._sweep_purged.add(purged, attrs)
        if damaged:
            self._sweep_damaged.add(damaged, attrs)


_current: SessionTelemetry | None = None


def telemetry() -> SessionTelemetry:
    """The process-wide telemetry (built on first use from the global providers)."""
    global _current
    if _current is None:
        _current = SessionTelemetry()
    return _current


def set_telemetry(value: SessionTelemetry | None) -> SessionTelemetry | None:
    """Replace the process-wide telemetry (None: rebuild from the globals); returns the old one."""
    global _current
    old, _current = _current, value
    return old


def _backend_of(obj: Any) -> str:
    store = getattr(obj, "store", None)
    return str(getattr(store, "backend_name", "") or "")


def instrumented(
    op: str,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorate an async method of an object with a ``store``: span + duration metric."""

    def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            tel = telemetry()
            if not tel.enabled or not tel.listening():
                return await fn(*args, **kwargs)
            with tel.operation(op, backend=_backend_of(args[0]) if args else ""):
                return await fn(*args, **kwargs)

        return wrapper

    return decorate
