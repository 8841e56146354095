"""``RoleIsolation``: ``visible_to`` / ``hidden_from`` decide what each agent sees."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.multi_agent import AgentReply, GroupMember, GroupSession, RoleIsolation

from .conftest import ScriptedAgent


def _turn(tid: str, **metadata: Any) -> SessionTurn:
    return SessionTurn(
        turn_id=tid, role="assistant", content=tid, timestamp=datetime.now(UTC), metadata=metadata
    )


TURNS = [
    _turn("public"),
    _turn("only_critic", visible_to=["critic"]),
    _turn("only_reviewers", visible_to="reviewer"),
    _turn("not_writer", hidden_from=["writer"]),
    _turn("not_reviewers", hidden_from="reviewer"),
    _turn("by_writer_hidden_from_writer", agent="writer", hidden_from=["writer"]),
    _turn("critic_but_not_reviewers", visible_to=["critic"], hidden_from=["reviewer"]),
]


def _ids(turns: list[SessionTurn]) -> list[str]:
    return [t.turn_id for t in turns]


def test_visible_to_and_hidden_from_by_name() -> None:
    iso = RoleIsolation()
    assert _ids(iso.filter_for_agent(TURNS, "writer")) == [
        "public",
        "not_reviewers",
        "by_writer_hidden_from_writer",
    ]
    assert _ids(iso.filter_for_agent(TURNS, "critic")) == [
        "public",
        "only_critic",
        "not_writer",
        "not_reviewers",
        "by_writer_hidden_from_writer",
        "critic_but_not_reviewers",
    ]


def test_entries_match_the_agents_role() -> None:
    iso = RoleIsolation()
    critic = GroupMember(agent=ScriptedAgent("critic"), role="reviewer")
    assert _ids(iso.filter_for_agent(TURNS, critic)) == [
        "public",
        "only_critic",
        "only_reviewers",
        "not_writer",
        "by_writer_hidden_from_writer",
    ]


def test_agent_object_is_accepted() -> None:
    assert _ids(RoleIsolation().filter_for_agent(TURNS[:2], ScriptedAgent("critic"))) == [
        "public",
        "only_critic",
    ]


def test_malformed_metadata_names_the_turn_and_field() -> None:
    bad = [_turn("ok"), _turn("bad", visible_to=42)]
    with pytest.raises(SessionValidationError, match=r"turns\[1\]\.metadata\.visible_to"):
        RoleIsolation().filter_for_agent(bad, "writer")
    with pytest.raises(SessionValidationError, match=r"agent"):
        RoleIsolation().filter_for_agent(bad, 3)


@pytest.mark.parametrize("history_limit", [None, 100])
async def test_group_hands_each_agent_only_what_it_may_see(
    manager: SessionManagerImpl, session_id: str, history_limit: int | None
) -> None:
    writer = ScriptedAgent(
        "writer", [AgentReply("secret note", metadata={"visible_to": ["editor"]})]
    )
    critic = ScriptedAgent(
        "critic", [AgentReply("harsh words", metadata={"hidden_from": "author"})]
    )
    editor = ScriptedAgent("editor")
    group = GroupSession(manager, history_limit=history_limit)
    group.add_agent(writer, role="author")
    group.add_agent(critic)
    group.add_agent(editor)
    await group.run(session_id, "brief", max_rounds=2)

    def seen(call: tuple[str, list[SessionTurn]]) -> list[str]:
        message, history = call
        return [t.content for t in history] + [message]

    # Critic does not see the writer's private note: its newest visible turn is the brief.
    assert seen(critic.calls[0]) == ["brief"]
    assert seen(editor.calls[0]) == ["brief", "secret note", "harsh words"]
    # Round 2: the writer (role "author") sees its own note but not the critic's words.
    assert seen(writer.calls[1]) == ["brief", "secret note", "editor #1"]
    # The visibility metadata is stored with the turns.
    stored = await manager.get_turns(session_id)
    assert stored[1].metadata["visible_to"] == ["editor"]
    assert stored[1].metadata["agent"] == "writer"
