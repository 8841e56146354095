"""Progress lines for long CLI operations, on stderr so stdout stays machine-readable."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressLine"]


class ProgressLine:
    """Reports ``done/total`` of an operation.

    On a terminal the line is rewritten in place; otherwise a line is written at
    most every ``every_s`` seconds, and always for the last step and on
    :meth:`finish`.
    """

    def __init__(
        self, label: str, *, stream: TextIO | None = None, every_s: float = 1.0, unit: str = ""
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = every_s
        self.unit = unit
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last: float | None = None
        self._shown: str | None = None
        self._pending: str | None = None

    def _text(self, done: int, total: int | None) -> str:
        count = f"{done}/{total}" if total is not None else str(done)
        return f"{self.label}: {count}{' ' + self.unit if self.unit else ''}"

    def __call__(self, done: int, total: int | None = None) -> None:
        """Record progress; may print."""
        text = self._text(done, total)
        now = time.monotonic()
        final = total is not None and done >= total
        if self._tty:
            self.stream.write("\r" + text.ljust(len(self._shown or "")))
            self.stream.flush()
            self._shown = text
            self._pending = None
            return
        if final or self._last is None or now - self._last >= self.every_s:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last = now
            self._shown = text
            self._pending = None
        else:
            self._pending = text

    def phase(self, phase: str, done: int) -> None:
        """Adapter for sweep progress callbacks: ``(phase, count so far)``."""
        if phase != self.label:
            self.finish()
            self._shown = None
            self._last = None
            self.label = phase
        self(done)

    def finish(self) -> None:
        """Print what was not printed yet and end the line."""
        if self._tty:
            if self._shown is not None:
                self.stream.write("\n")
        elif self._pending is not None:
            self.stream.write(self._pending + "\n")
        self._pending = None
        self.stream.flush()
