"""Turn-taking strategies: who speaks next in a group session.

A :class:`TurnManager` is asked once per turn, with a :class:`TurnContext` that holds
the roster and the conversation so far (the newest turn last: the one to answer).
It returns the name of the next speaker, or None to end the run. The built-in
strategies are stateless: everything they need is in the context, so a resumed run
continues exactly where it stopped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.multi_agent._checks import require_name
from lexigram.ai.session.multi_agent._matching import mentions
from lexigram.ai.session.multi_agent.agent import GroupMember

__all__ = [
    "PriorityTurnManager",
    "RoundRobinTurnManager",
    "TopicBasedTurnManager",
    "TurnContext",
    "TurnManager",
    "next_in_order",
]


@dataclass(frozen=True, slots=True)
class TurnContext:
    """What a turn manager sees when it picks the next speaker."""

    session_id: str
    roster: tuple[GroupMember, ...]
    """The group's members, in the order they joined."""
    turns: Sequence[SessionTurn]
    """The conversation so far, oldest first; the last one is the turn to answer."""
    last_speaker: str | None
    """The agent who spoke the newest turn (None for the opening message)."""
    round: int
    """Round of the turn being assigned (1-based)."""
    step: int
    """Index of that turn within its round (0-based)."""

    @property
    def latest(self) -> SessionTurn | None:
        """The newest turn, or None."""
        return self.turns[-1] if self.turns else None

    @property
    def names(self) -> list[str]:
        """Member names in join order."""
        return [m.name for m in self.roster]


@runtime_checkable
class TurnManager(Protocol):
    """Chooses the next speaker of a group session."""

    async def select_next(self, context: TurnContext) -> str | None:
        """Name of the member who speaks next, or None to end the run."""
        ...


def next_in_order(order: Sequence[str], last_speaker: str | None) -> str | None:
    """The name after ``last_speaker`` in ``order`` (wrapping); the first when unknown."""
    if not order:
        return None
    names = list(order)
    if last_speaker is not None and last_speaker in names:
        return names[(names.index(last_speaker) + 1) % len(names)]
    return order[0]


class RoundRobinTurnManager:
    """Every member speaks once per round, in the order they joined."""

    async def select_next(self, context: TurnContext) -> str | None:
        """The member after the last speaker, wrapping to the first."""
        return next_in_order(context.names, context.last_speaker)


class PriorityTurnManager:
    """Every member speaks once per round, highest priority first (ties: join order).

    Priorities come from ``add_agent(..., priority=)``; ``priorities`` overrides them
    by name.
    """

    def __init__(self, priorities: Mapping[str, int] | None = None) -> None:
        if priorities is not None:
            if not isinstance(priorities, Mapping):
                raise SessionValidationError("priorities", f"expected a dict, got {priorities!r}")
            for name, value in priorities.items():
                require_name("priorities", name)
                if not isinstance(value, int) or isinstance(value, bool):
                    raise SessionValidationError(
                        f"priorities[{name!r}]", f"must be an integer, got {value!r}"
                    )
        self.priorities = dict(priorities or {})

    def order(self, roster: Sequence[GroupMember]) -> list[str]:
        """Speaking order within a round."""
        ranked = sorted(
            enumerate(roster),
            key=lambda item: (-self.priorities.get(item[1].name, item[1].priority), item[0]),
        )
        return [member.name for _, member in ranked]

    async def select_next(self, context: TurnContext) -> str | None:
        """The member after the last speaker in priority order, wrapping to the highest."""
        return next_in_order(self.order(context.roster), context.last_speaker)


class TopicBasedTurnManager:
    """Routes on the content of the newest turn: a keyword found there picks the agent.

    ``topic_map`` maps keyword -> agent name; keywords match case-insensitively as
    whole words. The keywords each member declared with ``add_agent(topics=...)``
    are consulted after ``topic_map``; the first keyword found wins. With no match
    (or only the agent who just spoke, unless ``allow_repeat``), the turn goes to
    ``fallback_agent`` when it is in the group, else round robin.
    """

    def __init__(
        self,
        topic_map: Mapping[str, str] | None = None,
        fallback_agent: str | None = None,
        *,
        allow_repeat: bool = False,
    ) -> None:
        if topic_map is not None and not isinstance(topic_map, Mapping):
            raise SessionValidationError("topic_map", f"expected a dict, got {topic_map!r}")
        for keyword, agent in (topic_map or {}).items():
            require_name("topic_map", keyword)
            require_name(f"topic_map[{keyword!r}]", agent)
        if fallback_agent is not None:
            require_name("fallback_agent", fallback_agent)
        self.topic_map = {k.strip(): v for k, v in (topic_map or {}).items()}
        self.fallback_agent = fallback_agent
        self.allow_repeat = allow_repeat

    def routes(self, roster: Sequence[GroupMember]) -> list[tuple[str, str]]:
        """(keyword, agent) pairs in the order they are tried."""
        pairs = list(self.topic_map.items())
        pairs.extend((topic, member.name) for member in roster for topic in member.topics)
        return pairs

    def route(self, text: str, context: TurnContext) -> str | None:
        """The agent the first matching keyword of ``text`` names, or None."""
        names = set(context.names)
        for keyword, agent in self.routes(context.roster):
            if agent not in names or not self._may_speak(agent, context):
                continue
            if mentions(text, keyword):
                return agent
        return None

    async def select_next(self, context: TurnContext) -> str | None:
        """Route on the newest turn's content; fall back as described on the class."""
        latest = context.latest
        chosen = self.route(latest.content if latest is not None else "", context)
        if chosen is not None:
            return chosen
        fallback = self.fallback_agent
        if fallback in context.names and self._may_speak(fallback, context):
            return fallback
        return next_in_order(context.names, context.last_speaker)

    def _may_speak(self, agent: str, context: TurnContext) -> bool:
        return self.allow_repeat or agent != context.last_speaker or len(context.roster) == 1
