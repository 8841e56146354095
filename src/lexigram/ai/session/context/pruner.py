"""``RelevanceContextPruner``: fit a conversation into a turn count or a token budget.

Selection, in this order:

1. System messages are always kept (they count toward the limits; past ``max_turns``
   only the oldest ones fit). They are kept even when they alone exceed
   ``token_budget``: :attr:`PruneResult.over_budget` then says so.
2. The newest ``keep_last`` units (none by default) are kept when they fit.
3. The rest are taken by score, best first, while they fit; a unit that does not
   fit is skipped and smaller ones may still go in.
4. The output is in the original (chronological) order.

The score of a unit is ``relevance_weight * relevance + recency_weight * recency``:
relevance is BM25 of the query terms against the unit's text, scaled to [0, 1]
and smoothed so that a relevant answer pulls in its question (half of a
neighbour's relevance); recency halves every ``half_life`` units back from the
newest. A *unit* is a message plus the ``tool`` messages that answer its tool calls,
so a tool result is never kept without the call it belongs to.

Works on any message-like objects with ``role`` and ``content`` (``ChatMessage``,
``SessionTurn``, ...); multimodal content counts by its text parts. A message's
tokens are its role and text by the counter's ``count_message`` plus, by its
``count``, what else it carries to the model (:func:`message_extras`: tool calls
with their arguments, ``name``, ``tool_call_id``, ``thinking_blocks``,
``skill_results``).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from lexigram.contracts.ai.llm.protocols import ChatMessageProtocol

from lexigram.ai.session.context.tokens import (
    HeuristicTokenCounter,
    TokenCounter,
    message_extras,
    message_role,
    message_text,
)
from lexigram.ai.session.exceptions import SessionValidationError

__all__ = ["PruneResult", "RelevanceContextPruner", "terms"]

M = TypeVar("M")

_TERM = re.compile(r"[^\W_]+", re.UNICODE)
_STOPWORDS = frozenset(
    {
        "a", "an", "the", "and", "or", "but", "if", "then", "else", "of", "to", "in", "on", "at",
        "by", "for", "with", "from", "as", "is", "are", "was", "were", "be", "been", "being", "it",
        "its", "this", "that", "these", "those", "i", "me", "my", "we", "our", "you", "your", "he",
        "she", "they", "them", "his", "her", "their", "do", "does", "did", "done", "have", "has",
        "had", "not", "no", "yes", "so", "than", "too", "very", "can", "could", "would", "should",
        "will", "just", "about", "into", "over", "under", "again", "what", "which", "who", "whom",
        "how", "when", "where", "why", "all", "any", "some", "such", "there", "here", "out", "up",
        "down", "off", "also", "only", "own", "same", "other", "more", "most",
    }
)
_TOOL_ROLES = frozenset({"tool", "function"})


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def terms(text: str) -> list[str]:
    """The index terms of ``text``: lower-case words, stop words out, light stemming."""
    return [
        _stem(w)
        for w in (m.group(0).lower() for m in _TERM.finditer(text))
        if (len(w) > 1 or not w.isascii()) and w not in _STOPWORDS
    ]


@dataclass(frozen=True, slots=True)
class PruneResult(Generic[M]):
    """What :meth:`RelevanceContextPruner.select` kept.

    ``tokens`` is what the kept messages cost; ``over_budget`` is True when that is
    more than ``token_budget``, which only the always-kept (system) messages can
    cause: they are kept even when they alone do not fit.
    """

    messages: list[M]
    kept_indices: list[int]
    tokens: int
    dropped: int
    scores: list[float]
    over_budget: bool = False


@dataclass(slots=True)
class _Unit:
    indices: list[int]
    system: bool
    text: str
    tokens: int
    role: str = ""  # the first message's


def _roles(value: Any) -> frozenset[str]:
    """``always_keep_roles``: a role, or an iterable of roles (enums by their value)."""
    field = "always_keep_roles"
    if isinstance(value, str):
        value = (value,)  # one role, not its letters
    elif isinstance(value, bytes | bytearray | Mapping) or not isinstance(value, Iterable):
        raise SessionValidationError(
            field, f"expected a role or a list of roles, got {type(value).__name__}"
        )
    roles: set[str] = set()
    for item in value:
        role = getattr(item, "value", item)  # an enum by its value, as message_role reads
        if not isinstance(role, str) or not role.strip():
            raise SessionValidationError(
                field, f"expected a role or a list of roles, got an item {item!r}"
            )
        roles.add(role.lower())
    return frozenset(roles)


class RelevanceContextPruner:
    """Relevance + recency pruning (implements ``ContextPrunerProtocol``).

    ``token_counter`` defaults to the offline :class:`HeuristicTokenCounter`.
    """

    def __init__(
        self,
        *,
        token_counter: TokenCounter | None = None,
        relevance_weight: float = 0.6,
        recency_weight: float = 0.4,
        half_life: float = 8.0,
        keep_last: int = 0,
        always_keep_roles: Iterable[str] = ("system",),
    ) -> None:
        weights = (("relevance_weight", relevance_weight), ("recency_weight", recency_weight))
        for name, value in weights:
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise SessionValidationError(name, f"must be a finite number >= 0, got {value!r}")
        if relevance_weight + recency_weight <= 0:
            raise SessionValidationError("relevance_weight", "weights must not both be 0")
        if isinstance(half_life, bool) or not isinstance(half_life, int | float):
            raise SessionValidationError("half_life", f"must be a number > 0, got {half_life!r}")
        if not half_life > 0:
            raise SessionValidationError("half_life", f"must be > 0, got {half_life!r}")
        if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0:
            raise SessionValidationError("keep_last", f"must be an integer >= 0, got {keep_last!r}")
        if token_counter is not None and not isinstance(token_counter, TokenCounter):
            raise SessionValidationError(
                "token_counter", f"expected a TokenCounter, got {type(token_counter).__name__}"
            )
        self.token_counter: TokenCounter = token_counter or HeuristicTokenCounter()
        self.relevance_weight = float(relevance_weight)
        self.recency_weight = float(recency_weight)
        self.half_life = float(half_life)
        self.keep_last = keep_last
        self.always_keep_roles = _roles(always_keep_roles)

    # ------------------------------------------------------------ public API
    async def prune(
        self,
        history: Sequence[ChatMessageProtocol],
        current_query: str,
        max_turns: int,
    ) -> list[ChatMessageProtocol]:
        """At most ``max_turns`` messages, system messages first, in chronological order."""
        return self.select(history, current_query, max_turns=max_turns).messages

    def fit(
        self,
        messages: Sequence[M],
        query: str,
        token_budget: int,
        *,
        max_turns: int | None = None,
    ) -> list[M]:
        """The messages that fit ``token_budget`` (and ``max_turns``), chronological.

        The always-kept (system) messages are in even when they alone exceed
        ``token_budget``; :meth:`select` returns the same with ``over_budget`` to tell.
        """
        return self.select(messages, query, token_budget=token_budget, max_turns=max_turns).messages

    def select(
        self,
        messages: Sequence[M],
        query: str,
        *,
        max_turns: int | None = None,
        token_budget: int | None = None,
    ) -> PruneResult[M]:
        """Choose messages within the limits; the result tells what was kept and why."""
        items = self._check(messages, query, max_turns, token_budget)
        units = self._units(items)
        scores = self._scores(units, query)
        turn_room = math.inf if max_turns is None else max_turns
        token_room = math.inf if token_budget is None else token_budget
        chosen: set[int] = set()

        def take(u: int) -> None:
            nonlocal turn_room, token_room
            chosen.add(u)
            turn_room -= len(units[u].indices)
            token_room -= units[u].tokens

        def fits(u: int) -> bool:
            return len(units[u].indices) <= turn_room and units[u].tokens <= token_room

        for u, unit in enumerate(units):
            # System messages always go in, but never past max_turns (the oldest win).
            if unit.system and len(unit.indices) <= turn_room:
                take(u)
        others = [u for u, unit in enumerate(units) if not unit.system]
        for u in reversed(others[-self.keep_last :] if self.keep_last else []):
            if fits(u):
                take(u)
        ranked = sorted((u for u in others if u not in chosen), key=lambda u: (-scores[u], -u))
        for u in ranked:
            if turn_room <= 0 or token_room <= 0:
                break
            if fits(u):
                take(u)
        kept = sorted(i for u in chosen for i in units[u].indices)
        tokens = sum(units[u].tokens for u in chosen)
        per_message = [0.0] * len(items)
        for u, unit in enumerate(units):
            for i in unit.indices:
                per_message[i] = 1.0 if unit.system else scores[u]
        return PruneResult(
            messages=[items[i] for i in kept],
            kept_indices=kept,
            tokens=tokens,
            dropped=len(items) - len(kept),
            scores=per_message,
            over_budget=token_budget is not None and tokens > token_budget,
        )

    def count_tokens(self, messages: Iterable[Any]) -> int:
        """Prompt tokens of ``messages`` by this pruner's counter (as :meth:`select` counts)."""
        return sum(
            self._tokens(m, message_role(m), message_text(getattr(m, "content", "")))
            for m in messages
        )

    # -------------------------------------------------------------- internals
    def _tokens(self, message: Any, role: str, text: str) -> int:
        """One message's framing, role and text, plus what else it sends the model."""
        tokens = self.token_counter.count_message(role, text)
        extras = message_extras(message)
        return tokens + self.token_counter.count(extras) if extras else tokens

    @staticmethod
    def _check(
        messages: Sequence[M], query: str, max_turns: int | None, token_budget: int | None
    ) -> list[M]:
        if isinstance(messages, str | bytes) or not isinstance(messages, Sequence):
            raise SessionValidationError("history", "expected a sequence of messages")
        for i, m in enumerate(messages):
            if not hasattr(m, "role") or not hasattr(m, "content"):
                raise SessionValidationError(
                    f"history[{i}]", f"needs 'role' and 'content', got {type(m).__name__}"
                )
        if not isinstance(query, str):
            raise SessionValidationError("current_query", f"expected a string, got {query!r}")
        for name, value in (("max_turns", max_turns), ("token_budget", token_budget)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise SessionValidationError(name, f"must be an integer >= 0, got {value!r}")
        return list(messages)

    def _units(self, items: list[Any]) -> list[_Unit]:
        units: list[_Unit] = []
        for i, message in enumerate(items):
            role = message_role(message)
            text = message_text(message.content)
            tokens = self._tokens(message, role, text)
            # A tool result joins the unit of the call it answers, also when that unit is
            # always kept (``always_keep_roles=("assistant",)``): a kept call without its
            # result is refused by chat APIs. Only a true system message keeps none.
            if role in _TOOL_ROLES and units and units[-1].role != "system":
                unit = units[-1]
                unit.indices.append(i)
                unit.text += "\n" + text
                unit.tokens += tokens
                continue
            units.append(
                _Unit(
                    indices=[i],
                    system=role in self.always_keep_roles,
                    text=text,
                    tokens=tokens,
                    role=role,
                )
            )
        return units

    def _scores(self, units: list[_Unit], query: str) -> list[float]:
        others = [u for u, unit in enumerate(units) if not unit.system]
        scores = [0.0] * len(units)
        if not others:
            return scores
        relevance = self._relevance([units[u].text for u in others], terms(query))
        smoothed = [
            max(
                r,
                0.5 * relevance[k - 1] if k > 0 else 0.0,
                0.5 * relevance[k + 1] if k + 1 < len(relevance) else 0.0,
            )
            for k, r in enumerate(relevance)
        ]
        newest = len(others) - 1
        for k, u in enumerate(others):
            recency = 0.5 ** ((newest - k) / self.half_life)
            scores[u] = self.relevance_weight * smoothed[k] + self.recency_weight * recency
        return scores

    @staticmethod
    def _relevance(texts: list[str], query_terms: list[str]) -> list[float]:
        """BM25 (k1=1.2, b=0.75) of the query against each text, scaled to [0, 1]."""
        if not query_terms:
            return [0.0] * len(texts)
        docs = [Counter(terms(t)) for t in texts]
        lengths = [sum(d.values()) for d in docs]
        avg = (sum(lengths) / len(docs)) or 1.0
        n = len(docs)
        wanted = set(query_terms)
        df = {t: sum(1 for d in docs if t in d) for t in wanted}
        idf = {t: math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in wanted}
        raw: list[float] = []
        for doc, length in zip(docs, lengths, strict=True):
            score = 0.0
            for t in wanted:
                tf = doc.get(t, 0)
                if tf:
                    score += idf[t] * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length / avg))
            raw.append(score)
        top = max(raw)
        return [s / top for s in raw] if top > 0 else raw
