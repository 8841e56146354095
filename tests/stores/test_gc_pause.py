"""The garbage-collector pause of long decodes: nested and threaded use restore the state."""

from __future__ import annotations

import gc
import threading
import weakref
from typing import Any

from lexigram.ai.session.stores import gc_pause
from lexigram.ai.session.stores.gc_pause import MIN_PAUSE, paused_gc


def test_pauses_and_resumes_when_nested() -> None:
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause is still open
    assert gc.isenabled()


def test_resumes_after_an_error() -> None:
    try:
        with paused_gc():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert gc.isenabled()


def test_a_collector_the_application_disabled_stays_disabled() -> None:
    gc.disable()
    try:
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_overlapping_pauses_in_threads_resume_once_all_end() -> None:
    inside = threading.Barrier(3)
    release = threading.Event()

    def hold() -> None:
        with paused_gc():
            inside.wait()
            release.wait()

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for t in threads:
        t.start()
    inside.wait()
    assert not gc.isenabled()
    release.set()
    for t in threads:
        t.join()
    assert gc.isenabled()


def _cycles_left_after(pause_every: int, rounds: int = 50_000) -> int:
    """Tracked objects left over after ``rounds`` cycles made and dropped, with a long
    decode's pause every ``pause_every`` of them."""
    gc.collect()
    before = len(gc.get_objects())
    for i in range(rounds):
        a: list[Any] = []
        a.append({"back": a})  # a reference cycle: only the collector frees it
        del a
        if i % pause_every == 0:
            with paused_gc(MIN_PAUSE):
                pass
    return len(gc.get_objects()) - before


def test_frequent_long_decodes_do_not_stop_the_collector(monkeypatch: Any) -> None:
    monkeypatch.setattr(gc_pause, "_promote", True)
    # 100,000 objects in cycles are made; the collector must keep reclaiming them
    # (an earlier pause reset the young generation's count and none ever was).
    assert _cycles_left_after(pause_every=100) < 10_000
    assert _cycles_left_after(pause_every=1) < 10_000
    gc.collect()


def test_what_was_built_during_a_pause_is_not_walked_again(monkeypatch: Any) -> None:
    monkeypatch.setattr(gc_pause, "_promote", True)
    with paused_gc(5_000):
        built = [[i] for i in range(5_000)]
    # Moved out of the youngest generation: no young collection walks them next.
    assert gc.get_count()[0] < 1_000
    assert len(built) == 5_000 and gc.is_tracked(built[0])


def test_young_garbage_is_collected_before_a_pause_not_promoted(monkeypatch: Any) -> None:
    monkeypatch.setattr(gc_pause, "_promote", True)
    gc.collect()
    garbage: list[Any] = []
    garbage.append(garbage)  # a cycle in the youngest generation
    witness = weakref.ref(_Node(garbage))
    del garbage
    with paused_gc():
        pass
    assert witness() is None  # reclaimed by the collection before the pause


def test_what_others_allocated_during_a_pause_is_left_young(monkeypatch: Any) -> None:
    monkeypatch.setattr(gc_pause, "_promote", True)
    gc.collect()
    with paused_gc(MIN_PAUSE):
        # Far more than MIN_PAUSE turns make: as another thread would, meanwhile.
        for _ in range(20_000):
            cycle: list[Any] = []
            cycle.append(cycle)
        witness = weakref.ref(_Node(cycle))
        del cycle
    gc.collect(0)  # a young collection reaches it: it was not promoted
    assert witness() is None


def test_a_pause_without_a_count_promotes_nothing(monkeypatch: Any) -> None:
    monkeypatch.setattr(gc_pause, "_promote", True)
    gc.collect()
    with paused_gc():
        cycle: list[Any] = []
        witness = weakref.ref(_Node(cycle))
        del cycle
    gc.collect(0)
    assert witness() is None


def test_objects_the_application_froze_stay_frozen(monkeypatch: Any) -> None:
    monkeypatch.setattr(gc_pause, "_promote", True)
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with paused_gc(MIN_PAUSE):
            pass
        assert gc.get_freeze_count() == frozen
        assert gc_pause._promote is False  # and no longer tried
    finally:
        gc.unfreeze()


class _Node:
    """An object a weak reference can watch, kept alive only by a cycle."""

    def __init__(self, cycle: list[Any]) -> None:
        self.cycle = cycle
        cycle.append(self)
