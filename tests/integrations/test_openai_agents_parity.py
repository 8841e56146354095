"""The Agents SDK session adapter answers the same on every backend.

A seeded random sequence of ``get_items`` (with and without a limit), ``add_items``
(of SDK items, other JSON values, and values that are not JSON), ``pop_item``,
``clear_session`` and closing the session runs on two adapter sessions per backend,
the in-memory store first: every answer, or the type and field of every error, must
be the same.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from lexigram.ai.session.integrations.openai_agents.session import OpenAIAgentsSession
from lexigram.ai.session.testing import FakeClock
from tests.stores.test_parity_random import (
    SEEDS,
    SPECS,
    T0,
    Side,
    _deterministic_ids,
    _outcome,
    _sides,
)

pytestmark = [mark for spec in SPECS for mark in spec.marks]

ITEMS: list[Any] = [
    {"role": "user", "content": "hi"},
    {"role": "assistant", "content": "hello there"},
    {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": '{"q": 1}'},
    {"type": "function_call_output", "call_id": "c1", "output": "42"},
    {"role": "user", "content": [{"type": "input_text", "text": "ünï 😀"}]},
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "x" * 300},
    {"weird": True},
    {"role": 5, "content": None},
    "not a dict",
    {"bad": {1, 2}},  # not JSON: refused, naming items[i]
    {"n": float("nan")},
    {"s": "\ud800"},
]


@pytest.mark.parametrize("seed", SEEDS[:5])
async def test_the_adapter_answers_the_same_on_every_backend(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(T0)
    rng = random.Random(seed)
    with _deterministic_ids(monkeypatch):
        async with _sides(clock) as sides:
            adapters = {
                s.name: {sid: OpenAIAgentsSession(s.manager, sid) for sid in ("a1", "a2")}
                for s in sides
            }
            kinds = ["get", "limit", "add", "add", "add", "pop", "clear", "tick"]
            answers: set[str] = set()
            for step in range(120):
                sid, kind = rng.choice(["a1", "a2"]), rng.choice(kinds)
                call: Callable[[Side], Awaitable[Any]]
                if kind == "tick":
                    clock.now += timedelta(seconds=rng.choice([1, 5, 30]))
                    continue
                if rng.random() < 0.03:
                    kind = "close"
                if kind == "add":
                    items = [rng.choice(ITEMS) for _ in range(rng.choice([0, 1, 2, 3]))]
                    call = lambda s, i=items, k=sid: adapters[s.name][k].add_items(list(i))  # noqa: E731
                elif kind == "limit":
                    limit = rng.choice([0, 1, 2, 5, -1])
                    call = lambda s, n=limit, k=sid: adapters[s.name][k].get_items(n)  # noqa: E731
                elif kind == "get":
                    call = lambda s, k=sid: adapters[s.name][k].get_items()  # noqa: E731
                elif kind == "pop":
                    call = lambda s, k=sid: adapters[s.name][k].pop_item()  # noqa: E731
                elif kind == "clear":
                    call = lambda s, k=sid: adapters[s.name][k].clear_session()  # noqa: E731
                else:
                    call = lambda s, k=sid: s.manager.close(k)  # noqa: E731
                want = await _outcome(call, sides[0])
                answers.add(want[1] if want[0] == "error" else f"{kind} {bool(want[1])}")
                for side in sides[1:]:
                    got = await _outcome(call, side)
                    assert got == want, f"seed {seed} step {step} ({kind} {sid}) on {side.name}"
                clock.now += timedelta(milliseconds=1)
            # The sequence met items read back, and refusals of values that are not JSON.
            assert {"get True", "limit True", "SessionTypeError"} <= answers, answers
