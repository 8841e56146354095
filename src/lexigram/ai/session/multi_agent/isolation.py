"""``RoleIsolation``: which turns of the conversation an agent may see.

A turn is visible to everyone unless its metadata says otherwise:

* ``visible_to``: only these agents see the turn;
* ``hidden_from``: these agents do not see it (applied after ``visible_to``).

Each is an agent name or role, or a list of them; an entry matches an agent when it
equals the agent's name or its group role. The agent who spoke a turn always sees it.

Each turn is judged on its own: a group run keeps every agent's view up to date by
filtering only the newest turn, so a subclass must keep that property.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.multi_agent._checks import names_of
from lexigram.ai.session.multi_agent.agent import GroupMember

__all__ = ["HIDDEN_FROM", "VISIBLE_TO", "RoleIsolation"]

VISIBLE_TO = "visible_to"
HIDDEN_FROM = "hidden_from"


class RoleIsolation:
    """Filters the turns an agent is shown according to ``visible_to`` / ``hidden_from``."""

    def filter_for_agent(
        self, turns: Sequence[SessionTurn], agent: GroupMember | str | Any
    ) -> list[SessionTurn]:
        """The turns of ``turns`` that ``agent`` may see, in their order.

        ``agent`` is a :class:`GroupMember` (matched by name and role), an agent
        object with a ``name``, or a name. Malformed ``visible_to`` / ``hidden_from``
        metadata raises ``SessionValidationError`` naming the turn and field.
        """
        name, role = _identity(agent)
        keys = {name} if role is None else {name, role}
        if isinstance(turns, (str, bytes)) or not isinstance(turns, Iterable):
            raise SessionValidationError(
                "turns", f"expected a list of SessionTurn, got {type(turns).__name__}"
            )
        turns = list(turns)
        for index, turn in enumerate(turns):
            if not isinstance(turn, SessionTurn):
                raise SessionValidationError(
                    f"turns[{index}]", f"expected a SessionTurn, got {type(turn).__name__}"
                )
        return [
            turn
            for index, turn in enumerate(turns)
            if self.is_visible(turn, keys, name, index=index)
        ]

    def is_visible(
        self, turn: SessionTurn, keys: set[str], name: str, *, index: int | None = None
    ) -> bool:
        """Whether a turn is visible to the agent identified by ``keys`` (name and role)."""
        metadata = turn.metadata or {}
        if metadata.get("agent") == name:
            return True
        where = f"turns[{index}].metadata" if index is not None else "turn.metadata"
        allowed = names_of(metadata.get(VISIBLE_TO), f"{where}.{VISIBLE_TO}")
        if allowed is not None and not keys & allowed:
            return False
        hidden = names_of(metadata.get(HIDDEN_FROM), f"{where}.{HIDDEN_FROM}")
        return not (hidden is not None and keys & hidden)


def _identity(agent: GroupMember | str | Any) -> tuple[str, str | None]:
    if isinstance(agent, GroupMember):
        return agent.name, agent.role
    if isinstance(agent, str):
        name: Any = agent
        role = None
    else:
        name = getattr(agent, "name", None)
        role = getattr(agent, "role", None)
    if not isinstance(name, str) or not name:
        raise SessionValidationError(
            "agent", f"expected an agent, a member or a name, got {agent!r}"
        )
    return name, role if isinstance(role, str) else None


