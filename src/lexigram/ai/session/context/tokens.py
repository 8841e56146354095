"""Token counting for context budgets: a protocol and offline implementations.

The default :class:`HeuristicTokenCounter` needs no network and no vocabulary file;
it over-estimates rather than under-estimates, so a history it fits into a budget
fits the model too. Plug an exact tokenizer in with :class:`CallableTokenCounter`::

    import tiktoken
    enc = tiktoken.get_encoding("cl100k_base")   # fetched once by tiktoken itself
    counter = CallableTokenCounter(lambda text: len(enc.encode(text)))
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from lexigram.ai.session.exceptions import SessionValidationError

__all__ = [
    "CallableTokenCounter",
    "HeuristicTokenCounter",
    "TokenCounter",
    "message_role",
    "message_text",
]

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@runtime_checkable
class TokenCounter(Protocol):
    """Counts the tokens of a text and of one chat message."""

    def count(self, text: str) -> int:
        """Tokens of ``text``."""
        ...

    def count_message(self, role: str, text: str) -> int:
        """Tokens one chat message with ``role`` and ``text`` takes in a prompt."""
        ...


def message_text(content: Any) -> str:
    """The text of a message's ``content``: a string, or multimodal parts joined.

    Parts may be strings, dicts with ``text`` (or ``content``), or objects with a
    ``text`` attribute; anything else (images, audio) contributes nothing.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        value = content.get("text", content.get("content", ""))
        return value if isinstance(value, str) else message_text(value)
    if isinstance(content, Sequence) and not isinstance(content, bytes | bytearray):
        return "\n".join(t for t in (message_text(part) for part in content) if t)
    text = getattr(content, "text", None)
    return text if isinstance(text, str) else ""


def message_role(message: Any) -> str:
    """A message's role as a lower-case string (enums use their value)."""
    role = getattr(message, "role", "")
    role = getattr(role, "value", role)
    return str(role).lower()


class HeuristicTokenCounter:
    """An offline estimate tuned on BPE tokenizers of chat models.

    A text counts as the larger of ``chars / chars_per_token`` and
    ``pieces * tokens_per_piece`` (a piece is a word or a punctuation mark), so
    both prose and code or CJK text are covered. Each message adds
    ``per_message`` tokens of framing (role markers), as chat formats do.
    """

    def __init__(
        self,
        *,
        chars_per_token: float = 4.0,
        tokens_per_piece: float = 1.3,
        per_message: int = 4,
    ) -> None:
        if not chars_per_token > 0:
            raise SessionValidationError("chars_per_token", f"must be > 0, got {chars_per_token!r}")
        if not tokens_per_piece > 0:
            raise SessionValidationError(
                "tokens_per_piece", f"must be > 0, got {tokens_per_piece!r}"
            )
        if per_message < 0:
            raise SessionValidationError("per_message", f"must be >= 0, got {per_message!r}")
        self.chars_per_token = chars_per_token
        self.tokens_per_piece = tokens_per_piece
        self.per_message = per_message

    def count(self, text: str) -> int:
        """Estimated tokens of ``text`` (0 for an empty text)."""
        if not text:
            return 0
        by_chars = len(text) / self.chars_per_token
        by_pieces = len(_WORD.findall(text)) * self.tokens_per_piece
        return max(1, math.ceil(max(by_chars, by_pieces)))

    def count_message(self, role: str, text: str) -> int:
        """Estimated prompt tokens of one message: framing + role + text."""
        return self.per_message + self.count(role) + self.count(text)


class CallableTokenCounter:
    """Wraps any ``text -> int`` function (e.g. an exact tokenizer) as a :class:`TokenCounter`."""

    def __init__(self, count: Callable[[str], int], *, per_message: int = 4) -> None:
        if not callable(count):
            raise SessionValidationError("count", f"expected a callable, got {count!r}")
        if per_message < 0:
            raise SessionValidationError("per_message", f"must be >= 0, got {per_message!r}")
        self._count = count
        self.per_message = per_message

    def count(self, text: str) -> int:
        """Tokens of ``text`` as the wrapped function reports them."""
        value = self._count(text)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SessionValidationError("count", f"token counter returned {value!r}")
        return value

    def count_message(self, role: str, text: str) -> int:
        """Prompt tokens of one message: framing + role + text."""
        return self.per_message + self.count(role) + self.count(text)
