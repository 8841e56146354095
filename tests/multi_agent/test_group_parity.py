"""Group sessions give the same transcript on every backend.

Three scripted agents (a writer, a critic, an editor who may approve) with seeded
behaviour, including refusals, exceptions, budgets and turns visible to one agent
only, run six group rounds on two sessions per backend, the in-memory store first.
Each run's result and the stored sessions must be the same everywhere, up to the
random run ids and the wall-clock times group turns carry.
"""

from __future__ import annotations

import random
import re
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionState
from lexigram.result import Err, Ok

from lexigram.ai.session.multi_agent import GroupSession, StopWordTermination
from lexigram.ai.session.multi_agent.agent import AgentReply
from lexigram.ai.session.testing import FakeClock
from tests.stores.test_parity_random import (
    SEEDS,
    SPECS,
    T0,
    Side,
    _current,
    _deterministic_ids,
    _sides,
)

pytestmark = [mark for spec in SPECS for mark in spec.marks]

_RUN_ID = re.compile(r"[0-9a-f]{32}")
_CLOCK_KEYS = {"started_at", "updated_at"}


class _Scripted:
    """An agent whose replies are drawn from its own seeded generator."""

    def __init__(self, name: str, seed: int) -> None:
        self.name = name
        self._rng = random.Random(seed)
        self._n = 0

    async def execute(self, *, message: str, history: list[Any]) -> Any:
        self._n += 1
        draw = self._rng.random()
        if draw < 0.08:
            return Err("refused")
        if draw < 0.12:
            raise RuntimeError("boom")
        if draw < 0.2:
            return Ok(AgentReply(f"{self.name} {self._n} APPROVED", tokens_used=3, cost=0.5))
        if draw < 0.25:
            aside = {"visible_to": ["editor"]}
            return Ok(AgentReply(f"{self.name} aside {self._n}", metadata=aside))
        return Ok(f"{self.name} {self._n} on {len(history)} turns: {message[:20]}")


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if k not in _CLOCK_KEYS}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, str):
        return _RUN_ID.sub("RUN", value)
    return value


def _comparable(state: SessionState | None) -> Any:
    if state is None:
        return None
    turns = [
        (t.role, t.content, _scrub(t.metadata), t.tokens_used, t.cost, _scrub(t.turn_id))
        for t in state.turns
    ]
    return (state.status.value, state.turn_count, state.total_tokens, state.total_cost,
            turns, _scrub(state.variables), _scrub(state.metadata))  # fmt: skip


async def _play(side: Side, seed: int) -> list[Any]:
    _current.append(side)
    try:
        out: list[Any] = []
        for sid in ("g1", "g2"):
            await side.manager.create("alice", session_id=sid)
        rng = random.Random(seed)
        for n in range(6):
            sid = rng.choice(["g1", "g2"])
            group = GroupSession(
                side.manager, termination=StopWordTermination("APPROVED", agents=["editor"])
            )
            group.add_agent(_Scripted("writer", seed * 100 + n))
            group.add_agent(_Scripted("critic", seed * 200 + n), role="reviewer")
            group.add_agent(_Scripted("editor", seed * 300 + n), priority=10)
            rounds = rng.choice([1, 2, 4])
            try:
                out.append(_comparable(await group.run(sid, f"task {n}", max_rounds=rounds)))
            except Exception as exc:
                out.append(("error", type(exc).__name__, getattr(exc, "field", None)))
        for sid in ("g1", "g2"):
            out.append(_comparable(await side.manager.get_state(sid)))
        return out
    finally:
        _current.pop()


@pytest.mark.parametrize("seed", SEEDS[:5])
async def test_the_same_transcript_on_every_backend(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _deterministic_ids(monkeypatch):
        async with _sides(FakeClock(T0)) as sides:
            want = await _play(sides[0], seed)
            roles = {t[0] for state in want[-2:] for t in state[4]}
            assert {"user", "assistant", "system"} <= roles  # replies and failures
            for side in sides[1:]:
                assert await _play(side, seed) == want, f"seed {seed} on {side.name}"
