"""Bounds on the sessions anonymous callers may create (``allow_anonymous``).

Every cookie-less request is a new anonymous identity, so the per-user cap
(``max_sessions_per_user``) never applies to a client that drops its cookie. Two
bounds, kept in memory by each middleware instance (and the copies its ``wrap()``
makes; not shared between instances), limit what such clients can create through
``ensure()``:

* **per client address**: at most ``anonymous_sessions_per_minute`` new anonymous
  sessions per address (``scope["client"]``) in a fixed one-minute window. At most
  :data:`MAX_TRACKED_CLIENTS` addresses are tracked; past that, the address whose
  window started first is forgotten.
* **in total**: at most ``max_anonymous_sessions`` live anonymous sessions created
  through this middleware. When the bound is reached, the oldest tracked sessions are
  re-read from the store (at most :data:`RECHECK_BATCH`, at most once every
  :data:`RECHECK_EVERY_S` seconds) and those no longer live (closed, expired,
  purged) stop counting.

A reservation whose session was not created after all (``ensure()`` refused by the
manager, a store error) is refunded: it stops counting in the total, and in the
client's window while that window is still the current one.

A refusal raises :class:`AnonymousLimitError`, which the middleware answers with
``429 Too Many Requests`` and a ``Retry-After`` header. ``0`` disables a bound.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from lexigram.contracts.ai.session import SessionStatus
from lexigram.logging import get_logger

from lexigram.ai.session.exceptions import SessionCapacityError

__all__ = [
    "MAX_TRACKED_CLIENTS",
    "RECHECK_BATCH",
    "RECHECK_EVERY_S",
    "AnonymousLimitError",
    "AnonymousLimiter",
    "Reservation",
    "send_too_many",
]

logger = get_logger(__name__)

#: Client addresses whose window is remembered at once (bounded memory).
MAX_TRACKED_CLIENTS = 10_000
#: Tracked sessions re-read from the store per check when the total bound is reached.
RECHECK_BATCH = 20
#: Least time between two such checks, in seconds.
RECHECK_EVERY_S = 5.0
#: ``Retry-After`` of a refusal by the total bound, in seconds.
TOTAL_RETRY_AFTER_S = 60
_WINDOW_S = 60.0
_LIVE = frozenset({SessionStatus.ACTIVE, SessionStatus.SUSPENDED})

StatusReader = Callable[[str], Awaitable[SessionStatus | None]]
"""Reads a session's current status from the store (None: not stored any more)."""


class AnonymousLimitError(SessionCapacityError):
    """A new anonymous session was refused by a bound; retry after ``retry_after`` s.

    ``bound`` names the configuration field that refused it
    (``anonymous_sessions_per_minute`` or ``max_anonymous_sessions``).
    """

    def __init__(self, detail: str, *, retry_after: int, bound: str, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.retry_after = retry_after
        self.bound = bound


@dataclass(frozen=True)
class Reservation:
    """One admission by :meth:`AnonymousLimiter.reserve`: the client and its window.

    ``window`` is the start of the client's window it was counted in (None: the
    per-client bound is off), so that :meth:`AnonymousLimiter.refund` only gives
    back a count of the window it was taken from.
    """

    client: str
    window: float | None


class AnonymousLimiter:
    """The two bounds of one middleware (see the module docstring).

    ``read_status`` is how tracked sessions are re-checked; ``clock`` a monotonic
    clock in seconds (injectable for tests).
    """

    def __init__(
        self,
        *,
        per_minute: int,
        max_live: int,
        read_status: StatusReader,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = MAX_TRACKED_CLIENTS,
    ) -> None:
        self.per_minute = per_minute
        self.max_live = max_live
        self._read_status = read_status
        self._clock = clock
        self._max_clients = max_clients
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._live: OrderedDict[str, None] = OrderedDict()
        self._pending = 0
        self._last_recheck: float | None = None

    @property
    def live_count(self) -> int:
        """Anonymous sessions counted against ``max_anonymous_sessions`` (with reservations)."""
        return len(self._live) + self._pending

    @property
    def tracked_clients(self) -> int:
        """Client addresses whose current window is remembered."""
        return len(self._windows)

    async def reserve(self, client: str) -> Reservation:
        """Admit one new anonymous session for ``client`` or raise :class:`AnonymousLimitError`.

        An admission holds a place in the total until :meth:`settle` (the session was
        created) or :meth:`refund` (it was not) is called. The checks and the counting
        run without awaiting in between, so concurrent requests never pass a bound
        together.
        """
        rechecked = False
        while True:
            now = self._clock()
            self._forget_old_windows(now)
            window = self._windows.get(client)
            if self.per_minute and window is not None and window[1] >= self.per_minute:
                retry = max(1, math.ceil(window[0] + _WINDOW_S - now))
                raise AnonymousLimitError(
                    f"client {client!r} created {self.per_minute} anonymous sessions this "
                    f"minute (anonymous_sessions_per_minute={self.per_minute})",
                    retry_after=retry,
                    bound="anonymous_sessions_per_minute",
                )
            if self.max_live and self.live_count >= self.max_live:
                if not rechecked:
                    rechecked = True
                    await self._recheck(now)
                    continue  # check everything again: others may have run meanwhile
                raise AnonymousLimitError(
                    f"{self.max_live} anonymous sessions are live "
                    f"(max_anonymous_sessions={self.max_live})",
                    retry_after=TOTAL_RETRY_AFTER_S,
                    bound="max_anonymous_sessions",
                )
            start: float | None = None
            if self.per_minute:
                start = self._count(client, window, now)
            self._pending += 1
            return Reservation(client=client, window=start)

    def settle(self, session_id: str | None) -> None:
        """End a reservation: ``session_id`` was created (now counted), or None (nothing was)."""
        self._pending = max(0, self._pending - 1)
        if session_id is not None and self.max_live:
            self._live[session_id] = None

    def refund(self, reservation: Reservation) -> None:
        """End a reservation whose session was not created: it stops counting anywhere.

        Its place in the total is released, and its count in the client's window is
        given back when that window is still the current one.
        """
        self._pending = max(0, self._pending - 1)
        if reservation.window is None:
            return
        window = self._windows.get(reservation.client)
        if window is not None and window[0] == reservation.window and window[1] > 0:
            self._windows[reservation.client] = (window[0], window[1] - 1)

    def forget(self, session_id: str) -> None:
        """Stop counting a session (it was ended)."""
        self._live.pop(session_id, None)

    def _count(self, client: str, window: tuple[float, int] | None, now: float) -> float:
        """Count one session in ``client``'s window; return the window's start."""
        if window is None:
            while len(self._windows) >= self._max_clients:
                self._windows.popitem(last=False)
            self._windows[client] = (now, 1)
            return now
        self._windows[client] = (window[0], window[1] + 1)
        return window[0]

    def _forget_old_windows(self, now: float) -> None:
        # Windows are in order of their start: a new window is appended at the end.
        while self._windows:
            start, _ = next(iter(self._windows.values()))
            if start + _WINDOW_S > now:
                break
            self._windows.popitem(last=False)

    async def _recheck(self, now: float) -> None:
        """Drop tracked sessions the store no longer has live (oldest first, bounded)."""
        if self._last_recheck is not None and now - self._last_recheck < RECHECK_EVERY_S:
            return
        self._last_recheck = now
        for session_id in list(self._live)[:RECHECK_BATCH]:
            status = await self._read_status(session_id)
            if status is None or status not in _LIVE:
                self._live.pop(session_id, None)
            else:
                self._live.move_to_end(session_id)


async def send_too_many(
    scope: MutableMapping[str, Any],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    refused: AnonymousLimitError,
) -> None:
    """Answer a refused anonymous session: 429 + Retry-After (close 1013 on a WebSocket)."""
    logger.debug(
        "ai_session.web.anonymous_limited", bound=refused.bound, retry_after=refused.retry_after
    )
    if scope.get("type") == "websocket":
        await send({"type": "websocket.close", "code": 1013, "reason": "try again later"})
        return
    body = f"Too many anonymous sessions; retry after {refused.retry_after} s.\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(refused.retry_after).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
