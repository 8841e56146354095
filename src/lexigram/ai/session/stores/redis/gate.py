"""``CallGate``: how many calls of one event loop's client are in flight, and no lost cancellation.

The gate is a semaphore of the pool's size. It also gives back a cancellation that
the driver swallowed: on Python 3.11, ``asyncio.wait_for`` returns its inner call's
result instead of raising when the call finishes at the moment the task is
cancelled, and redis-py sends every command through it when the connection has a
``socket_timeout`` (a Redis Cluster's connections always do). A task cancelled in a
store call then ran on as if it had not been: ``asyncio.timeout()`` around an agent
step expired without ``TimeoutError``, and Ctrl-C let ``keys rotate`` run to its end
(measured on a local Cluster: 7 of 10 cancellations lost). A call that returns while
a cancellation requested during it was not delivered ends with ``CancelledError``
(what was sent may have run, as with any cancelled call). Python 3.12 and later
deliver the cancellation themselves and take the plain semaphore.
"""

from __future__ import annotations

import asyncio
import sys
from types import TracebackType
from typing import Any

__all__ = ["CallGate", "new_gate"]


class CallGate:
    """A semaphore that re-raises a cancellation swallowed while it was held."""

    __slots__ = ("_entered", "_semaphore")

    def __init__(self, size: int) -> None:
        self._semaphore = asyncio.Semaphore(size)
        # Per task holding the gate: the cancellation requests pending when it entered,
        # and how deep it holds it (one task never needs it twice, but may).
        self._entered: dict[asyncio.Task[Any], tuple[int, int]] = {}

    async def __aenter__(self) -> None:
        await self._semaphore.acquire()
        task = asyncio.current_task()
        if task is None:
            return
        held = self._entered.get(task)
        if held is None:
            self._entered[task] = (task.cancelling(), 1)
        else:
            self._entered[task] = (held[0], held[1] + 1)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._semaphore.release()
        task = asyncio.current_task()
        held = None if task is None else self._entered.pop(task, None)
        if held is None or task is None:
            return
        pending, depth = held
        if depth > 1:
            self._entered[task] = (pending, depth - 1)
            return
        if exc_type is None and task.cancelling() > pending:
            raise asyncio.CancelledError


def new_gate(size: int) -> asyncio.Semaphore | CallGate:
    """The gate for ``size`` calls in flight: a :class:`CallGate` where asyncio needs it."""
    if sys.version_info >= (3, 12):
        return asyncio.Semaphore(size)
    return CallGate(size)
