"""``PageContext``: what every page needs besides its data (links, mode, CSRF token)."""

from __future__ import annotations

from dataclasses import dataclass

from lexigram.ai.session.explorer.html import url

__all__ = ["PageContext"]


@dataclass(frozen=True)
class PageContext:
    """Where the explorer is mounted, on which backend, and whether it may write."""

    base: str
    backend: str
    allow_writes: bool
    csrf: str

    def href(self, path: str, **query: object) -> str:
        """A link to ``path`` under the explorer's root with the query parameters given."""
        return url(self.base + path, **query)

    def session(self, session_id: str, **query: object) -> str:
        """The page of a session."""
        return self.href("/session", id=session_id, **query)
