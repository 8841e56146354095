"""Whole-word, case-insensitive phrase matching shared by routing and stop words."""

from __future__ import annotations

import re
from functools import lru_cache

__all__ = ["find_phrase", "mentions"]


@lru_cache(maxsize=512)
def _pattern(phrase: str, case_sensitive: bool) -> re.Pattern[str]:
    # Lookarounds instead of \b so that phrases ending in punctuation ("c++") still match.
    flags = 0 if case_sensitive else re.IGNORECASE
    return re.compile(rf"(?<!\w){re.escape(phrase)}(?!\w)", flags)


def find_phrase(text: str, phrase: str, *, case_sensitive: bool = False) -> int:
    """Index of the first whole-word occurrence of ``phrase`` in ``text``, or -1."""
    match = _pattern(phrase, case_sensitive).search(text)
    return -1 if match is None else match.start()


def mentions(text: str, phrase: str, *, case_sensitive: bool = False) -> bool:
    """Whether ``phrase`` occurs in ``text`` as a whole word (or words)."""
    return find_phrase(text, phrase, case_sensitive=case_sensitive) >= 0
