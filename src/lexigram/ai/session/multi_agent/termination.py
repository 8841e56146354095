"""Termination conditions of a group run; they compose with ``|`` (any) and ``&`` (all).

After every agent turn the run asks its condition whether to stop. A condition looks
at a :class:`TerminationContext` (the turn just spoken, its round, who has spoken in
this run, the session's token and cost totals including that turn) and returns the
reason to stop, or None. Conditions keep no state of their own, so a resumed run
judges exactly as the interrupted one would have.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass

from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.multi_agent._checks import (
    require_int,
    require_name,
    require_positive_number,
)
from lexigram.ai.session.multi_agent._matching import mentions

__all__ = [
    "AgentSpokeTermination",
    "AllOf",
    "AnyOf",
    "CostBudgetTermination",
    "MaxRoundsTermination",
    "StopWordTermination",
    "TerminationCondition",
    "TerminationContext",
    "TokenBudgetTermination",
]


@dataclass(frozen=True, slots=True)
class TerminationContext:
    """The facts a termination condition judges, after one agent turn."""

    turn: SessionTurn
    speaker: str
    round: int
    step: int
    roster_size: int
    spoken: frozenset[str]
    """Agents who have spoken in this run, including ``speaker``."""
    total_tokens: int
    """The session's token total including ``turn``."""
    total_cost: float
    """The session's cost total including ``turn``."""

    @property
    def round_complete(self) -> bool:
        """Whether ``turn`` is the last turn of its round."""
        return self.step + 1 >= self.roster_size


class TerminationCondition(abc.ABC):
    """Decides when a group run stops. Combine with ``a | b`` and ``a & b``."""

    @abc.abstractmethod
    def check(self, context: TerminationContext) -> str | None:
        """The reason to stop after this turn, or None to go on."""

    def __or__(self, other: TerminationCondition) -> TerminationCondition:
        """Stop when either condition says so."""
        return AnyOf([self, _check_condition(other)])

    def __and__(self, other: TerminationCondition) -> TerminationCondition:
        """Stop when both conditions say so after the same turn."""
        return AllOf([self, _check_condition(other)])


class AnyOf(TerminationCondition):
    """Stops when any of its conditions does (the first reason is reported)."""

    def __init__(self, conditions: Iterable[TerminationCondition]) -> None:
        self.conditions = _flatten(AnyOf, conditions)

    def check(self, context: TerminationContext) -> str | None:
        """The first reason any condition gives."""
        for condition in self.conditions:
            reason = condition.check(context)
            if reason is not None:
                return reason
        return None


class AllOf(TerminationCondition):
    """Stops when every one of its conditions does (reasons joined with ``and``)."""

    def __init__(self, conditions: Iterable[TerminationCondition]) -> None:
        self.conditions = _flatten(AllOf, conditions)

    def check(self, context: TerminationContext) -> str | None:
        """All reasons joined, or None when one condition says go on."""
        reasons = []
        for condition in self.conditions:
            reason = condition.check(context)
            if reason is None:
                return None
            reasons.append(reason)
        return " and ".join(reasons) if reasons else None


class MaxRoundsTermination(TerminationCondition):
    """Stops once ``max_rounds`` full rounds have been spoken."""

    def __init__(self, max_rounds: int) -> None:
        self.max_rounds = require_int("max_rounds", max_rounds, 1)

    def check(self, context: TerminationContext) -> str | None:
        """A reason after the last turn of round ``max_rounds``."""
        if context.round > self.max_rounds or (
            context.round == self.max_rounds and context.round_complete
        ):
            return f"max_rounds reached ({self.max_rounds})"
        return None


class StopWordTermination(TerminationCondition):
    """Stops when an agent says one of ``words`` (whole words; case-insensitive by default).

    ``agents`` restricts whose turns count (names); by default every agent's do.
    """

    def __init__(
        self, *words: str, agents: Iterable[str] | None = None, case_sensitive: bool = False
    ) -> None:
        if not words:
            raise SessionValidationError("words", "give at least one stop word")
        for word in words:
            require_name("words", word)
        self.words = tuple(w.strip() for w in words)
        self.agents = None if agents is None else frozenset(_names("agents", agents))
        self.case_sensitive = case_sensitive

    def check(self, context: TerminationContext) -> str | None:
        """A reason when the turn contains a stop word."""
        if self.agents is not None and context.speaker not in self.agents:
            return None
        for word in self.words:
            if mentions(context.turn.content, word, case_sensitive=self.case_sensitive):
                return f"stop word {word!r} said by {context.speaker!r}"
        return None


class TokenBudgetTermination(TerminationCondition):
    """Stops when the session's total tokens reach ``max_tokens``."""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = require_int("max_tokens", max_tokens, 1)

    def check(self, context: TerminationContext) -> str | None:
        """A reason once ``total_tokens >= max_tokens``."""
        if context.total_tokens >= self.max_tokens:
            return f"token budget reached ({context.total_tokens} >= {self.max_tokens})"
        return None


class CostBudgetTermination(TerminationCondition):
    """Stops when the session's total cost reaches ``max_cost``."""

    def __init__(self, max_cost: float) -> None:
        self.max_cost = require_positive_number("max_cost", max_cost)

    def check(self, context: TerminationContext) -> str | None:
        """A reason once ``total_cost >= max_cost``."""
        if context.total_cost >= self.max_cost:
            return f"cost budget reached ({context.total_cost:g} >= {self.max_cost:g})"
        return None


class AgentSpokeTermination(TerminationCondition):
    """Stops once the named agent has spoken in this run."""

    def __init__(self, agent: str) -> None:
        self.agent = require_name("agent", agent)

    def check(self, context: TerminationContext) -> str | None:
        """A reason once ``agent`` is among the speakers of the run."""
        if self.agent in context.spoken:
            return f"agent {self.agent!r} has spoken"
        return None


def _check_condition(value: object) -> TerminationCondition:
    if not isinstance(value, TerminationCondition):
        raise SessionValidationError(
            "termination", f"expected a TerminationCondition, got {type(value).__name__}"
        )
    return value


def _flatten(kind: type, conditions: Iterable[TerminationCondition]) -> list[TerminationCondition]:
    flat: list[TerminationCondition] = []
    for condition in conditions:
        _check_condition(condition)
        if type(condition) is kind:
            flat.extend(condition.conditions)  # type: ignore[attr-defined]
        else:
            flat.append(condition)
    return flat


def _names(field: str, value: Iterable[str]) -> list[str]:
    if isinstance(value, str):
        return [value]
    names = list(value)
    for name in names:
        require_name(field, name)
    return names
