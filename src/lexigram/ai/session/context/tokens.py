"""Token counting for context budgets: a protocol and offline implementations.

The default :class:`HeuristicTokenCounter` needs no network and no vocabulary file;
it over-estimates rather than under-estimates, so a history it fits into a budget
fits the model too. A message costs its text plus what else goes to the model with
it (:func:`message_extras`: tool calls with their arguments, a tool result's call id,
...). Plug an exact tokenizer in with :class:`CallableTokenCounter`::

    import tiktoken
    enc = tiktoken.get_encoding("cl100k_base")   # fetched once by tiktoken itself
    counter = CallableTokenCounter(lambda text: len(enc.encode(text)))
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from lexigram.ai.session.exceptions import SessionValidationError

__all__ = [
    "CallableTokenCounter",
    "HeuristicTokenCounter",
    "TokenCounter",
    "message_extras",
    "message_role",
    "message_text",
]

# Kana, CJK ideographs and Hangul syllables: written without spaces, and tokenizers give
# about one token per character, so each is a piece of its own (a run of them was one
# "word", and a sentence of 15 of them counted 4 tokens).
_CJK = (
    "\u1100-\u11ff"  # Hangul jamo (a decomposed syllable)
    "\u3040-\u30ff\u3130-\u318f\u31f0-\u31ff"  # kana, compatibility jamo
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # ideographs, compatibility ideographs
    "\ua960-\ua97f\uac00-\ud7ff"  # Hangul syllables and extended jamo
    "\uff65-\uff9f\uffa0-\uffdc"  # half-width katakana and Hangul
    "\U00020000-\U0003134f"  # ideographs of the supplementary planes
)
_WORD = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]", re.UNICODE)


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


#: Fields besides ``content`` that a chat message carries to the model:
#: ``ChatMessage``'s ``name``, ``tool_call_id``, ``tool_calls`` and ``thinking_blocks``,
#: and ``SessionTurn``'s ``skill_results`` (a caller may pass them on, so they count).
_EXTRA_FIELDS = ("name", "tool_call_id", "tool_calls", "thinking_blocks", "skill_results")
_MAX_DEPTH = 64


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON-ready data (dataclasses and pydantic models as their fields)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if depth >= _MAX_DEPTH:
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v, depth + 1) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name, None), depth + 1)
            for f in dataclasses.fields(value)
        }
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return _plain(dump(), depth + 1)
        except Exception:  # an odd model still counts, by its text
            return str(value)
    return str(value)


def message_extras(message: Any) -> str:
    """What ``message`` sends to the model besides its ``content``, as text to count.

    Its ``name`` and ``tool_call_id`` (a ``SessionTurn``'s from ``metadata``), and its
    ``tool_calls`` (names and arguments), ``thinking_blocks`` and ``skill_results``
    serialized as compact JSON; ``""`` when it has none of them.
    """
    parts: list[str] = []
    for field in _EXTRA_FIELDS:
        value = getattr(message, field, None)
        if field == "tool_call_id" and not value:
            metadata = getattr(message, "metadata", None)
            value = metadata.get("tool_call_id") if isinstance(metadata, Mapping) else None
        if value is None or value == "" or (isinstance(value, Sequence | Mapping) and not value):
            continue
        if isinstance(value, str):
            parts.append(value)
        else:
            parts.append(
                json.dumps(_plain(value), ensure_ascii=False, separators=(",", ":"), default=str)
            )
    return "\n".join(parts)


def _finite_positive(field: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise SessionValidationError(field, f"must be a finite number > 0, got {value!r}")
    return float(value)


def _count_setting(field: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SessionValidationError(field, f"must be an integer >= 0, got {value!r}")
    return value


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
        self.chars_per_token = _finite_positive("chars_per_token", chars_per_token)
        self.tokens_per_piece = _finite_positive("tokens_per_piece", tokens_per_piece)
        self.per_message = _count_setting("per_message", per_message)

    def count(self, text: str) -> int:
        """Estimated tokens of ``text`` (0 for an empty text)."""
        if not text:
            return 0
        by_chars = len(text) / self.chars_per_token
        by_pieces = len(_WORD.findall(text)) * self.tokens_per_piece
        # min(): extreme (finite) settings can overflow to inf; the count stays an int
        return max(1, math.ceil(min(max(by_chars, by_pieces), sys.maxsize)))

    def count_message(self, role: str, text: str) -> int:
        """Estimated prompt tokens of one message: framing + role + text."""
        return self.per_message + self.count(role) + self.count(text)


class CallableTokenCounter:
    """Wraps any ``text -> int`` function (e.g. an exact tokenizer) as a :class:`TokenCounter`."""

    def __init__(self, count: Callable[[str], int], *, per_message: int = 4) -> None:
        if not callable(count):
            raise SessionValidationError("count", f"expected a callable, got {count!r}")
        self._count = count
        self.per_message = _count_setting("per_message", per_message)

    def count(self, text: str) -> int:
        """Tokens of ``text`` as the wrapped function reports them."""
        value = self._count(text)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SessionValidationError("count", f"token counter returned {value!r}")
        return value

    def count_message(self, role: str, text: str) -> int:
        """Prompt tokens of one message: framing + role + text."""
        return self.per_message + self.count(role) + self.count(text)
