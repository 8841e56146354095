"""Pausing the cyclic garbage collector while a store builds a large result.

Decoding a long session allocates several container objects per turn (the turn, its
field dict, its lists). With the collector running, those allocations trigger young
collections that walk the new objects again and again, and promote them into the
oldest generation, which makes the next full collection (a walk of the whole heap,
tens of milliseconds in a large process) come sooner. Decoding builds only objects
that stay reachable from the result (no reference cycles, no garbage), so pausing
the collector for its duration loses nothing: reference counting still frees
everything at once, and collection resumes as soon as the last pause ends.

The pause is process-wide and shared by every thread: the collector is disabled by
the first pause to start (when it was enabled) and enabled again when the last one
ends. A collector the application disabled itself is left disabled.

When the pause ends, everything allocated during it would still sit in the youngest
generation, and the next allocation would start a young collection that walks it all
(~0.3 ms per 1,000 decoded turns, ~5 ms for 5,000) while the caller still holds the
result. Instead the young objects are moved to the oldest generation at once
(``gc.freeze()`` then ``gc.unfreeze()``: two list splices, no walk), which is where the
collector would have moved the surviving result anyway.

``gc.freeze()`` also sets the youngest generation's allocation count back to zero, and
whatever sat in the young generations moves to the oldest one unexamined. So the first
pause to start first runs a young collection (what other code allocated since the last
one, a few hundred objects): its garbage is reclaimed and the count restarts from zero
there, so the freeze forgives only the pause's own allocations, which are the result.
(What the middle generation holds is moved on unexamined; the collector's middle and
full collections keep their pace, since the freeze leaves their counts alone, and the
next full collection examines it.) Without that step a process that read a
long session every few hundred allocations never ran a young collection again, and
the cyclic garbage of any other code stayed in memory for good
(``tests/stores/test_gc_pause.py``).

The promotion is also skipped when the young generation holds more than the pause
announced it would build (``count`` items, a few tracked objects each): other threads
allocated meanwhile, and their objects are left for the collector to examine. A pause
without ``count`` never promotes.

The promotion is skipped, for the life of the process, as soon as the application
has frozen objects itself (``gc.get_freeze_count()``, e.g. to share pages with forked
workers), since ``gc.unfreeze()`` would release those too.
"""

from __future__ import annotations

import gc
import threading
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType

__all__ = ["MIN_PAUSE", "paused_gc"]

#: Below this many turns a pause is not worth its (sub-microsecond) cost.
MIN_PAUSE = 256

#: Tracked objects a pause may allocate per turn or record it announces before what it
#: built is taken for its own (a turn is four to eight: the turn, its dict, its lists,
#: the dicts of its tool calls); more means other threads allocated meanwhile.
_PER_ITEM = 16
#: Allocations a pause may make besides its items (lists, rows, headers).
_SLACK = 2_000

_lock = threading.Lock()
_holders = 0
_resume = False
_expected = 0
_promote = True


class _Paused:
    """Context manager: the collector is off inside (see the module docstring)."""

    __slots__ = ("_expect",)

    def __init__(self, expect: int) -> None:
        self._expect = expect

    def __enter__(self) -> None:
        global _holders, _resume, _expected
        if _promote and _holders == 0 and gc.isenabled():
            # Outside the lock: a collection may run finalizers. A race only adds one.
            gc.collect(0)
        with _lock:
            if _holders == 0:
                _resume = gc.isenabled()
                _expected = 0
                if _resume:
                    gc.disable()
            _holders += 1
            _expected += self._expect

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _holders, _promote
        with _lock:
            _holders -= 1
            if _holders == 0 and _resume:
                # Promoted only when the young generation holds no more than the
                # pauses built: anything more (other threads) is left to be examined.
                if _promote and gc.get_count()[0] <= _expected:
                    if gc.get_freeze_count():
                        _promote = False  # the application freezes objects: leave them
                    else:
                        gc.freeze()
                        gc.unfreeze()
                gc.enable()


_NOT_PAUSED: AbstractContextManager[None] = nullcontext()
#: The pause of a caller that announces no count: it never promotes.
_PAUSED_UNCOUNTED = _Paused(0)


def paused_gc(count: int | None = None) -> AbstractContextManager[None]:
    """A context manager that pauses cyclic garbage collection while it is open.

    With ``count`` (how many turns or records the caller is about to build), the
    collector is paused only from :data:`MIN_PAUSE` on; below, nothing happens.
    """
    if count is None:
        return _PAUSED_UNCOUNTED
    return _Paused(count * _PER_ITEM + _SLACK) if count >= MIN_PAUSE else _NOT_PAUSED
