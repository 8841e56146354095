"""A transcript page: every turn with its role, content, tool calls, usage and metadata.

Turns recorded by a group session are marked with their agent and grouped by round,
and a grid shows who spoke in which round.
"""

from __future__ import annotations

import zlib
from typing import Any

from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session.analytics.session import tool_names
from lexigram.ai.session.explorer.html import Markup, el
from lexigram.ai.session.explorer.pages.format import (
    SHOWN_CHARS,
    cost,
    pretty_json,
    shown,
    when,
)
from lexigram.ai.session.explorer.service import TurnEntry, TurnPage, is_group_turn
from lexigram.ai.session.multi_agent.turn_state import GROUP_KEY

__all__ = ["SHOWN_CHARS", "agent_class", "rounds_grid", "transcript"]

_PALETTE = 8


def agent_class(agent: str) -> str:
    """A stable colour class for an agent name."""
    return f"agent-{zlib.crc32(agent.encode()) % _PALETTE}"


def _round(turn: SessionTurn) -> int | None:
    value = turn.metadata.get("round")
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    group = turn.metadata.get(GROUP_KEY)
    if isinstance(group, dict) and isinstance(group.get("round"), int):
        return int(group["round"])
    return None


def _agent(turn: SessionTurn) -> str | None:
    agent = turn.metadata.get("agent")
    return agent if isinstance(agent, str) and agent else None


def _answers(turn: SessionTurn) -> str | None:
    """``result of <tool> (<call id>)`` for a tool turn that names its call."""
    if turn.role != "tool":
        return None
    name = turn.metadata.get("name") or turn.metadata.get("tool_name")
    call_id = turn.metadata.get("tool_call_id")
    if not isinstance(name, str) and not isinstance(call_id, str):
        return None
    text = "result of " + (name if isinstance(name, str) else "tool call")
    return text + (f" ({call_id})" if isinstance(call_id, str) else "")


def _tool_call(call: Any) -> Markup:
    names = tool_names([call])
    name = names[0] if names else "tool call"
    return el("details", {"class": "tool-call"},
              el("summary", None, el("span", {"class": "tool-name"}, name)),
              el("pre", None, _shown(pretty_json(call))))


def _shown(text: str) -> list[object]:
    """``text``, or its first :data:`SHOWN_CHARS` characters and a note of the rest."""
    return shown(text, "/api/session/turns")


def _turn(entry: TurnEntry) -> Markup:
    turn = entry.turn
    agent = _agent(turn)
    round_ = _round(turn)
    facts: list[object] = [
        el("a", {"class": "pos", "href": f"#turn-{entry.position}"}, f"#{entry.position}"),
        el("span", {"class": f"role role-{turn.role}"}, turn.role),
    ]
    if agent:
        facts.append(el("span", {"class": f"agent {agent_class(agent)}"}, agent))
    if round_ is not None:
        facts.append(el("span", {"class": "round-tag"}, f"round {round_}"))
    answered = _answers(turn)
    if answered:
        facts.append(el("span", {"class": "tool-result-of"}, answered))
    if turn.model:
        facts.append(el("span", {"class": "model"}, turn.model))
    facts.append(el("span", {"class": "tokens"}, f"{turn.tokens_used} tok"))
    facts.append(el("span", {"class": "cost"}, f"${cost(turn.cost)}"))
    facts.append(when(turn.timestamp))
    parts: list[object] = [el("header", None, facts),
                           el("div", {"class": "content"}, _shown(turn.content))]
    if turn.tool_calls:
        parts.append(el("div", {"class": "tool-calls"},
                        el("span", {"class": "label"}, "tool calls"),
                        [_tool_call(c) for c in turn.tool_calls]))
    if turn.skill_results:
        parts.append(el("details", {"class": "tool-results"},
                        el("summary", None, f"skill results ({len(turn.skill_results)})"),
                        el("pre", None, _shown(pretty_json(turn.skill_results)))))
    extra = {"turn_id": turn.turn_id, "seq": entry.seq, "provider": turn.provider,
             "metadata": turn.metadata}
    parts.append(el("details", {"class": "meta"}, el("summary", None, "metadata"),
                    el("pre", None, _shown(pretty_json(extra)))))
    return el("article", {"class": f"turn role-{turn.role}", "id": f"turn-{entry.position}",
                          "data-seq": entry.seq, "data-turn-id": turn.turn_id}, parts)


def transcript(page: TurnPage) -> Markup:
    """The turns of ``page``, with a separator where a group round begins."""
    items: list[object] = []
    current: int | None = None
    for entry in page.entries:
        round_ = _round(entry.turn) if is_group_turn(entry.turn) else None
        if round_ is not None and round_ != current:
            label = "opening" if round_ == 0 else f"Round {round_}"
            items.append(el("div", {"class": "round-sep", "data-round": round_}, label))
            current = round_
        items.append(_turn(entry))
    return el("section", {"class": "transcript", "id": "transcript"}, items)


def rounds_grid(page: TurnPage) -> Markup | None:
    """Rounds (rows) by agents (columns) for the group turns of ``page``; None if there are none."""
    cells: dict[tuple[int, str], list[TurnEntry]] = {}
    agents: list[str] = []
    rounds: list[int] = []
    for entry in page.entries:
        agent, round_ = _agent(entry.turn), _round(entry.turn)
        if agent is None or round_ is None:
            continue
        if agent not in agents:
            agents.append(agent)
        if round_ not in rounds:
            rounds.append(round_)
        cells.setdefault((round_, agent), []).append(entry)
    if not cells:
        return None

    def cell(round_: int, agent: str) -> Markup:
        found = cells.get((round_, agent), [])
        return el("td", None, [
            el("a", {"href": f"#turn-{e.position}", "class": "cell-turn"},
               e.turn.content if len(e.turn.content) <= 80 else e.turn.content[:79] + "…")
            for e in found
        ])

    head = el("tr", None, el("th", None, "Round"),
              [el("th", None, el("span", {"class": f"agent {agent_class(a)}"}, a))
               for a in agents])
    rows = [el("tr", {"data-round": r}, el("th", None, r), [cell(r, a) for a in agents])
            for r in sorted(rounds)]
    return el("table", {"class": "rounds", "id": "rounds"},
              el("thead", None, head), el("tbody", None, rows))
