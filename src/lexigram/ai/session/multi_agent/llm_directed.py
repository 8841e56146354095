"""``LLMDirectedTurnManager``: a model picks the next speaker.

The manager shows the model the roster and the recent conversation through the
framework's LLM contract (``lexigram.contracts.ai.llm.LLMClientProtocol``) and asks
for one name. The answer is checked against the roster; an invalid answer, an
``Err`` or a failing client falls back to round robin, so a confused model never
stops the group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lexigram.contracts.ai.llm import ChatMessage, LLMClientProtocol
from lexigram.logging import get_logger
from lexigram.result import Result

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.multi_agent._checks import require_int
from lexigram.ai.session.multi_agent._matching import mentions
from lexigram.ai.session.multi_agent.agent import GroupMember
from lexigram.ai.session.multi_agent.turn_managers import TurnContext, next_in_order

__all__ = ["DEFAULT_SELECTOR_PROMPT", "LLMDirectedTurnManager", "parse_choice"]

logger = get_logger(__name__)

DEFAULT_SELECTOR_PROMPT = (
    "You coordinate a conversation between several agents. "
    "Decide which agent should speak next so that the task progresses.\n"
    "Agents:\n{roster}\n"
    "Answer with exactly one name from this list and nothing else: {candidates}."
)
"""System prompt; ``{roster}`` and ``{candidates}`` are filled in."""

_STRIP = " \t\r\n`'\"*.,:;!?()[]<>"


def parse_choice(reply: str, candidates: Sequence[str]) -> str | None:
    """The candidate a model's reply names, or None when it names none or several.

    An exact name (case, quotes and punctuation aside) wins; otherwise the reply must
    mention exactly one candidate as a whole word.
    """
    stripped = reply.strip(_STRIP)
    if stripped in candidates:  # "Bob" is Bob even beside a "bob"
        return stripped
    by_key = {name.casefold(): name for name in candidates}
    exact = by_key.get(stripped.casefold())
    if exact is not None:
        return exact
    named = [name for name in candidates if mentions(reply, name)]
    return named[0] if len(named) == 1 else None


class LLMDirectedTurnManager:
    """Asks a model which agent speaks next; round robin when the answer is unusable.

    ``history_window`` limits how many recent turns the model is shown. Unless
    ``allow_repeat``, the agent who just spoke is not offered (in a group of two or
    more). ``fallbacks`` counts the choices that fell back to round robin and
    ``last_reply`` keeps the model's latest raw answer.
    """

    def __init__(
        self,
        llm: LLMClientProtocol,
        *,
        model: str | None = None,
        temperature: float | None = 0.0,
        max_tokens: int | None = 32,
        history_window: int = 12,
        allow_repeat: bool = False,
        system_prompt: str = DEFAULT_SELECTOR_PROMPT,
    ) -> None:
        if not callable(getattr(llm, "complete", None)):
            raise SessionValidationError(
                "llm", f"expected an LLMClientProtocol, got {type(llm).__name__}"
            )
        require_int("history_window", history_window, 1)
        self.llm = llm
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.history_window = history_window
        self.allow_repeat = allow_repeat
        self.system_prompt = system_prompt
        self.fallbacks = 0
        self.last_reply: str | None = None

    def candidates(self, context: TurnContext) -> list[str]:
        """Names the model may choose from."""
        names = context.names
        if self.allow_repeat or len(names) < 2:
            return names
        return [n for n in names if n != context.last_speaker]

    def messages(self, context: TurnContext, candidates: Sequence[str]) -> list[ChatMessage]:
        """The prompt sent to the model."""
        system = self.system_prompt.format(
            roster=_describe(context.roster), candidates=", ".join(candidates)
        )
        lines = [_line(turn) for turn in list(context.turns)[-self.history_window :]]
        user = (
            "Conversation so far (oldest first):\n"
            + ("\n".join(lines) if lines else "(empty)")
            + f"\n\nWho speaks next? Reply with one of: {', '.join(candidates)}."
        )
        return [ChatMessage(role="system", content=system), ChatMessage(role="user", content=user)]

    async def select_next(self, context: TurnContext) -> str | None:
        """The model's choice when valid, else the round-robin successor."""
        candidates = self.candidates(context)
        if not candidates:
            return None
        choice = await self._ask(context, candidates)
        if choice is not None:
            return choice
        self.fallbacks += 1
        return next_in_order(context.names, context.last_speaker)

    async def _ask(self, context: TurnContext, candidates: list[str]) -> str | None:
        self.last_reply = None
        try:
            result = await self.llm.complete(
                self.messages(context, candidates),
                model=self.model,
                temperature=self.temperature,
                max_tokens=self.max_tokens,
            )
        except Exception as exc:
            logger.warning(
                "ai_session.group.selector_failed", session_id=context.session_id, error=str(exc)
            )
            return None
        if not isinstance(result, Result):
            logger.warning(
                "ai_session.group.selector_failed",
                session_id=context.session_id,
                error=f"complete() returned {type(result).__name__}, expected a Result",
            )
            return None
        if not result.is_ok():
            logger.warning(
                "ai_session.group.selector_failed",
                session_id=context.session_id,
                error=str(result.unwrap_err()),
            )
            return None
        content: Any = getattr(result.unwrap(), "content", None)
        self.last_reply = content if isinstance(content, str) else None
        choice = parse_choice(content, candidates) if isinstance(content, str) else None
        if choice is None:
            logger.warning(
                "ai_session.group.selector_invalid_choice",
                session_id=context.session_id,
                reply=str(content)[:200],
                candidates=candidates,
            )
        return choice


def _describe(roster: Sequence[GroupMember]) -> str:
    rows = []
    for member in roster:
        topics = f"; topics: {', '.join(member.topics)}" if member.topics else ""
        rows.append(f"- {member.name} (role: {member.role}{topics})")
    return "\n".join(rows)


def _line(turn: Any) -> str:
    speaker = (turn.metadata or {}).get("agent") or turn.role
    return f"[{speaker}]: {turn.content}"
