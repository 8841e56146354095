"""The garbage-collector pause of long decodes: nested and threaded use restore the state."""

from __future__ import annotations

import gc
import threading

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
