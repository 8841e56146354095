"""``PerLoop``: which loop gets which resource, and where each one is closed."""

from __future__ import annotations

import asyncio
import threading
import warnings

import pytest

from lexigram.ai.session.exceptions import SessionStoreError, StoreUnavailableError
from lexigram.ai.session.stores.loops import PerLoop
from tests.loops.support import DEADLINE_S, Worker, bounded, join


class Recorder:
    """A resource that records how it ended."""

    any_loop = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.closed_on: asyncio.AbstractEventLoop | None = None
        self.closes = 0
        self.abandoned = False

    async def aclose(self) -> None:
        self.closed_on = asyncio.get_running_loop()
        self.closes += 1

    def abandon(self) -> None:
        self.abandoned = True


def registry(made: list[Recorder]) -> PerLoop[Recorder]:
    """A registry whose first resource is ``boot``, the others recorded in ``made``."""

    def make() -> Recorder:
        made.append(Recorder(f"r{len(made)}"))
        return made[-1]

    return PerLoop(make, first=Recorder("boot"), what="the test registry")


@bounded
async def test_one_resource_per_loop_the_first_to_the_first_loop() -> None:
    made: list[Recorder] = []
    per_loop = registry(made)
    here = per_loop.get()
    assert here.name == "boot" and per_loop.get() is here

    async def elsewhere() -> tuple[Recorder, Recorder, asyncio.AbstractEventLoop]:
        return per_loop.get(), per_loop.get(), asyncio.get_running_loop()

    (first, again, loop), = await join(Worker(elsewhere).start())
    assert first is again and first is made[0] and first is not here
    # asyncio.run shut that loop down: its resource was closed on it, and let go.
    assert first.closed_on is loop and first.closes == 1 and not first.abandoned
    assert per_loop.loops() == 1 and per_loop.get() is here
    await per_loop.aclose()
    assert here.closed_on is asyncio.get_running_loop() and first.closes == 1
    with pytest.raises(StoreUnavailableError):
        per_loop.get()


@bounded
async def test_a_loop_closed_alone_is_abandoned_when_the_next_loop_comes() -> None:
    made: list[Recorder] = []
    per_loop = registry(made)
    per_loop.get()
    loop = asyncio.new_event_loop()

    async def take() -> Recorder:
        return per_loop.get()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(take()), loop.close()))
    thread.start()
    await asyncio.to_thread(thread.join, DEADLINE_S)
    assert loop.is_closed() and made[0].closed_on is None and not made[0].abandoned
    await join(Worker(take).start())  # a new loop: the closed one is swept
    assert made[0].abandoned and made[0].closes == 0
    assert made[1].closes == 1  # the new loop's own, closed by asyncio.run
    await per_loop.aclose()


@bounded
async def test_close_reaches_running_loops_and_abandons_idle_ones() -> None:
    made: list[Recorder] = []
    per_loop = registry(made)
    per_loop.get()
    taken = threading.Event()
    release = threading.Event()

    async def hold() -> asyncio.AbstractEventLoop:
        per_loop.get()
        taken.set()
        await asyncio.to_thread(release.wait, DEADLINE_S)
        return asyncio.get_running_loop()

    running = Worker(hold).start()
    idle = asyncio.new_event_loop()
    try:
        await asyncio.to_thread(idle.run_until_complete, _take(per_loop))
        assert await asyncio.to_thread(taken.wait, DEADLINE_S)
        await asyncio.wait_for(per_loop.aclose(), DEADLINE_S)
        on_running = made[0] if made[0].closed_on is not None else made[1]
        on_idle = made[1] if on_running is made[0] else made[0]
        assert on_idle.abandoned and on_idle.closes == 0
        release.set()
        (loop,) = await join(running)
        assert on_running.closed_on is loop and on_running.closes == 1
    finally:
        release.set()
        idle.close()


async def _take(per_loop: PerLoop[Recorder]) -> Recorder:
    return per_loop.get()


@bounded
async def test_without_a_maker_other_loops_are_refused() -> None:
    per_loop: PerLoop[Recorder] = PerLoop(
        None, first=Recorder("given"), what="the test registry", refusal="bring your own"
    )
    assert per_loop.get().name == "given"

    async def other() -> Recorder:
        return per_loop.get()

    with pytest.raises(SessionStoreError) as info:
        await join(Worker(other).start())
    assert "event loop" in str(info.value) and "bring your own" in str(info.value)
    await per_loop.aclose()


@bounded
async def test_a_loop_reused_after_shutdown_asyncgens_is_served_again() -> None:
    """Runner.run_sync: one loop per thread, async generators shut down after each run."""
    made: list[Recorder] = []
    per_loop = registry(made)
    per_loop.get()
    loop = asyncio.new_event_loop()
    caught: list[warnings.WarningMessage] = []

    def runs() -> None:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            for _ in range(3):
                loop.run_until_complete(_take(per_loop))
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
        caught.extend(seen)

    thread = threading.Thread(target=runs)
    thread.start()
    await asyncio.to_thread(thread.join, DEADLINE_S)
    assert [m.closes for m in made] == [1, 1, 1]  # a fresh one per run, each closed on it
    assert all(m.closed_on is loop for m in made)
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    await per_loop.aclose()


@bounded
async def test_a_loop_closed_alone_is_abandoned_at_the_next_call_of_a_known_loop() -> None:
    """A worker's loop closed with ``loop.close()`` mid-transaction kept its connection,
    and the server's row lock, until a *new* loop came: the main loop's next write to the
    session waited on that lock, for good (an outside audit). Any later call now lets go
    of a closed loop's resource."""
    made: list[Recorder] = []
    per_loop = registry(made)
    here = per_loop.get()
    loop = asyncio.new_event_loop()

    async def take() -> Recorder:
        return per_loop.get()

    def run_then_close() -> None:
        loop.run_until_complete(take())
        loop.close()

    thread = threading.Thread(target=run_then_close)
    thread.start()
    await asyncio.to_thread(thread.join, DEADLINE_S)
    assert here is per_loop.get()  # this loop's next call, no new loop involved
    assert made[0].abandoned and per_loop.loops() == 1
    await per_loop.aclose()


class _Ends(Recorder):
    """A resource whose close never finishes on its own loop."""

    async def aclose(self) -> None:
        await asyncio.Event().wait()


@bounded
async def test_close_is_not_cancelled_by_another_loop_ending_meanwhile() -> None:
    """``close()`` hands each running loop the close of its resource; a loop ending
    meanwhile (``asyncio.run`` cancels what it still runs) made ``close()`` raise
    ``CancelledError`` in a caller nobody cancelled (an outside audit)."""
    per_loop: PerLoop[Recorder] = PerLoop(
        lambda: _Ends("other"), first=Recorder("boot"), what="the test registry"
    )
    per_loop.get()
    started, stop = threading.Event(), threading.Event()

    async def hold() -> None:
        per_loop.get()
        started.set()
        await asyncio.to_thread(stop.wait, DEADLINE_S)

    worker = Worker(hold).start()
    assert await asyncio.to_thread(started.wait, DEADLINE_S)
    closing = asyncio.ensure_future(per_loop.aclose())
    await asyncio.sleep(0.2)  # the close is on the worker's loop, waiting
    stop.set()  # the worker's asyncio.run ends, cancelling it
    await asyncio.wait_for(closing, DEADLINE_S)  # no CancelledError
    await join(worker)
