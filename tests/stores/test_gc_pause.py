"""The garbage-collector pause of long decodes: nested and threaded use restore the state."""

from __future__ import annotations

import gc
import threading
from typing import Any

from lexigram.ai.session.stores import gc_pause
from lexigram.ai.session.stores.gc_pause import paused_gc


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


def test_what_was_built_during_a_pause_is_not_walked_again(monkeypatch: Any) -> None:
    monkeypatch.setattr(gc_pause, "_promote", True)
    with paused_gc():
        built = [[i] for i in range(5_000)]
    # Moved out of the youngest generation: no young collection walks them next.
    assert gc.get_count()[0] < 1_000
    assert len(built) == 5_000 and gc.is_tracked(built[0])


def test_objects_the_application_froze_stay_frozen(monkeypatch: Any) -> None:
    monkeypatch.setattr(gc_pause, "_promote", True)
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with paused_gc():
            pass
        assert gc.get_freeze_count() == frozen
        assert gc_pause._promote is False  # and no longer tried
    finally:
        gc.unfreeze()
