"""OpenTelemetry spans and metrics of the manager and the sweeper (SDK in-memory readers)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from lexigram.ai.session import (
    InMemorySessionStore,
    SessionClosedError,
    SessionConfig,
    SessionManagerImpl,
)
from lexigram.ai.session.manager.cleanup import SessionCleanupScheduler
from lexigram.ai.session.observability import SessionTelemetry, set_telemetry


class Otel:
    """An SDK tracer and meter provider recording in memory."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def span_names(self) -> list[str]:
        return [s.name for s in self.spans.get_finished_spans()]

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for rm in data.resource_metrics if data else []:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def total(self, name: str, **attrs: str) -> float:
        return sum(
            p.value
            for p in self.points(name)
            if all(p.attributes.get(k) == v for k, v in attrs.items())
        )


@pytest.fixture
def otel() -> Iterator[Otel]:
    recorder = Otel()
    old = set_telemetry(
        SessionTelemetry(
            tracer_provider=recorder.tracer_provider, meter_provider=recorder.meter_provider
        )
    )
    try:
        yield recorder
    finally:
        set_telemetry(old)


async def test_manager_operations_emit_spans_and_metrics(otel: Otel) -> None:
    manager = SessionManagerImpl(
        InMemorySessionStore(), SessionConfig(auto_checkpoint_interval=None)
    )
    state = await manager.create("alice")
    for i in range(3):
        await manager.add_message(state.session_id, "user", f"m{i}")
    await manager.close(state.session_id)
    with pytest.raises(SessionClosedError):
        await manager.add_message(state.session_id, "user", "late")

    names = otel.span_names()
    assert names.count("ai_session.create") == 1
    assert names.count("ai_session.add_turns") == 4
    assert names.count("ai_session.close") == 1
    spans = otel.spans.get_finished_spans()
    failed = [s for s in spans if s.status.status_code == StatusCode.ERROR]
    assert [s.name for s in failed] == ["ai_session.add_turns"]
    assert all(
        s.attributes.get("ai_session.backend") == "memory"
        for s in otel.spans.get_finished_spans()
    )
    assert otel.total("ai_session.turns.appended", backend="memory") == 3
    assert otel.total("ai_session.sessions.created") == 1
    assert otel.total("ai_session.sessions.ended", reason="closed") == 1
    assert otel.total("ai_session.sessions.active") == 0
    durations = otel.points("ai_session.operation.duration")
    outcomes = {(p.attributes["operation"], p.attributes["outcome"]): p.count for p in durations}
    assert outcomes[("add_turns", "ok")] == 3
    assert outcomes[("add_turns", "SessionClosedError")] == 1


async def test_sweeps_emit_a_span_and_sweep_metrics(otel: Otel) -> None:
    manager = SessionManagerImpl(InMemorySessionStore(), SessionConfig(session_ttl=1))
    for user in ("a", "b"):
        await manager.create(user)
    await asyncio.sleep(1.1)
    report = await SessionCleanupScheduler(manager, purge_after_s=3600).sweep()
    assert report.expired == 2
    sweep = [s for s in otel.spans.get_finished_spans() if s.name == "ai_session.sweep"]
    assert len(sweep) == 1 and sweep[0].attributes["ai_session.sweep.expired"] == 2
    assert otel.total("ai_session.sweeps", outcome="ok") == 1
    assert otel.total("ai_session.sweep.expired") == 2
    assert otel.total("ai_session.sessions.ended", reason="expired") == 2
    assert otel.total("ai_session.sessions.active") == 0
    assert sum(p.count for p in otel.points("ai_session.sweep.duration")) == 1


async def test_disabled_telemetry_records_nothing(otel: Otel) -> None:
    set_telemetry(SessionTelemetry(tracer_provider=otel.tracer_provider, enabled=False))
    manager = SessionManagerImpl(InMemorySessionStore(), SessionConfig())
    state = await manager.create("alice")
    await manager.close(state.session_id)
    assert otel.span_names() == []


def test_without_opentelemetry_everything_is_a_no_op() -> None:
    code = """
import asyncio, sys
sys.modules["opentelemetry"] = None  # as if opentelemetry-api were not installed
from lexigram.ai.session import InMemorySessionStore, SessionConfig, SessionManagerImpl
from lexigram.ai.session.observability import OTEL_AVAILABLE, telemetry
from lexigram.ai.session.manager.cleanup import SessionCleanupScheduler

async def main():
    m = SessionManagerImpl(InMemorySessionStore(), SessionConfig())
    s = await m.create("u")
    await m.add_message(s.session_id, "user", "hi")
    await m.close(s.session_id)
    await SessionCleanupScheduler(m).sweep()
    assert not OTEL_AVAILABLE and not telemetry().enabled
    assert "opentelemetry.trace" not in sys.modules
    print("ok", (await m.get_state(s.session_id)).status.value)

asyncio.run(main())
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok closed")
