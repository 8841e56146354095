"""``user_analytics`` over real stores: forks and merges counted once, unreadable
sessions named, its own parameters named (an outside audit), on every backend."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session import InMemorySessionStore, SessionConfig, SessionManagerImpl
from lexigram.ai.session.analytics import (
    aggregate,
    compute,
    iter_session_analytics,
    user_analytics,
)
from lexigram.ai.session.exceptions import CorruptRecordError, SessionValidationError
from lexigram.ai.session.stores.base import SessionPage
from lexigram.ai.session.stores.encrypted.store import EncryptedSessionStore

from ..checkpointing.harness import PARAMS, Env, EnvFactory, open_env_factory
from ..stores.backends import BackendSpec

T0 = datetime(2026, 5, 1, 8, 0, 0, tzinfo=UTC)


@pytest.fixture(params=PARAMS)
async def backend(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[BackendSpec, EnvFactory]]:
    spec: BackendSpec = request.param
    async with open_env_factory(spec) as make:
        yield spec, make


def said(
    turn_id: str, role: str, second: int, *, tokens: int, cost: float, **extra: Any
) -> SessionTurn:
    """A turn with a caller-chosen id (ids like "t1" repeat across unrelated sessions)."""
    return SessionTurn(
        turn_id=turn_id,
        role=role,
        content=f"{role} {turn_id}",
        timestamp=T0 + timedelta(seconds=second),
        tokens_used=tokens,
        cost=cost,
        **extra,
    )


async def _family(env: Env, user: str) -> dict[str, str]:
    """source (4 turns) -> branch (+2, merged back) -> twig (+1), and an unrelated
    session numbering its turns like the source."""
    m = env.manager
    source = (await m.create(user)).session_id
    await m.add_turns(source, [
        said("t1", "user", 1, tokens=10, cost=0.01),
        said("t2", "assistant", 2, tokens=10, cost=0.01, tool_calls=[{"name": "search"}]),
        said("t3", "user", 3, tokens=10, cost=0.01),
        said("t4", "assistant", 4, tokens=10, cost=0.01),
    ])
    branch = (await env.branches.fork(source, "b")).session_id
    await m.add_turns(branch, [
        said("b1", "user", 10, tokens=100, cost=1.0),
        said("b2", "assistant", 11, tokens=100, cost=1.0, tool_calls=[{"name": "calc"}]),
    ])
    await env.branches.merge(source, branch)
    twig = (await env.branches.fork(branch, "twig")).session_id
    # Numbered as its source numbers its own turns: the same id, another turn.
    await m.add_turns(twig, [said("t5", "user", 20, tokens=1000, cost=5.0)])
    await m.add_turns(source, [said("t5", "user", 21, tokens=7, cost=0.5)])
    other = (await m.create(user)).session_id
    await m.add_turns(other, [
        said("t1", "user", 1, tokens=10, cost=0.01),
        said("t2", "assistant", 2, tokens=10, cost=0.01),
    ])
    return {"source": source, "branch": branch, "twig": twig, "other": other}


# distinct turns: source t1-t4 (40 tokens, 0.04), b1 b2 (200, 2.0), twig's t5 (1000, 5.0),
# the source's own t5 (7, 0.5), other's t1 t2 (20, 0.02)
TURNS, TOKENS, COST = 4 + 2 + 1 + 1 + 2, 40 + 200 + 1000 + 7 + 20, 0.04 + 2.0 + 5.0 + 0.5 + 0.02


@pytest.mark.parametrize("page_size", [1, 100])
async def test_a_fork_and_a_merge_count_each_turn_once(
    backend: tuple[BackendSpec, EnvFactory], page_size: int
) -> None:
    _, make = backend
    env = await make()
    ids = await _family(env, "bob")
    total = await user_analytics(env.manager, "bob", page_size=page_size)
    assert total.session_count == 4
    assert (total.total_turns, total.total_tokens) == (TURNS, TOKENS)
    assert total.total_cost == pytest.approx(COST)
    assert total.tool_call_counts == {"search": 1, "calc": 1}
    assert total.avg_turns_per_session == pytest.approx(TURNS / 4)
    # headers only: a family's members have their turns read for their totals
    headers = await user_analytics(env.manager, "bob", include_turns=False, page_size=page_size)
    assert (headers.total_turns, headers.total_tokens) == (TURNS, TOKENS)
    assert headers.total_cost == pytest.approx(COST)
    assert headers.session_count == 4 and headers.agents_used == []
    # Each session's own figures still include what it inherited.
    own = {a.session_id: a for a in [
        a async for a in iter_session_analytics(env.manager, "bob", page_size=page_size)
    ]}
    assert own[ids["branch"]].total_turns == 6
    assert own[ids["twig"]].total_turns == 7
    assert own[ids["source"]].total_turns == 7
    assert own[ids["other"]].total_turns == 2


async def test_aggregate_of_states_counts_a_family_once(
    backend: tuple[BackendSpec, EnvFactory],
) -> None:
    _, make = backend
    env = await make()
    await _family(env, "cy")
    states = [
        s for h in (await env.manager.list_sessions("cy")).items
        if (s := await env.manager.get_state(h.session_id)) is not None
    ]
    total = aggregate(states)
    assert (total.total_turns, total.total_tokens) == (TURNS, TOKENS)
    # the same states in another order: the same totals
    again = aggregate(list(reversed(states)))
    assert (again.total_turns, again.total_tokens) == (TURNS, TOKENS)
    # SessionAnalytics rows are summed as given
    rows = aggregate([compute(s) for s in states])
    assert rows.total_turns == 7 + 6 + 7 + 2


def test_a_response_pair_counts_once_in_a_family() -> None:
    q = said("q", "user", 0, tokens=1, cost=0.0)
    a = said("a", "assistant", 2, tokens=1, cost=0.0)
    q2 = said("q2", "user", 10, tokens=1, cost=0.0)
    a2 = said("a2", "assistant", 10, tokens=1, cost=0.0)
    source = SessionState(session_id="s", user_id="u", status=SessionStatus.ACTIVE,
                          turns=[q, a])
    branch = SessionState(session_id="b", user_id="u", status=SessionStatus.ACTIVE,
                          turns=[q, a, q2, a2], parent_session_id="s")
    total = aggregate([branch, source])
    assert total.total_turns == 4
    # (2000 ms + 0 ms) / 2 pairs, not (2000 + 0 + 2000) / 3
    assert total.avg_response_time_ms == pytest.approx(1000.0)


async def test_sessions_that_cannot_be_read_are_named(
    backend: tuple[BackendSpec, EnvFactory],
) -> None:
    spec, make = backend
    env = await make()
    m = env.manager
    good = (await m.create("fay")).session_id
    await m.add_message(good, "user", "q", tokens_used=3, cost=0.25)
    bad = (await m.create("fay")).session_id
    await m.add_message(bad, "user", "q", tokens_used=5, cost=1.0)
    reader = m
    if isinstance(env.store, EncryptedSessionStore):
        # a process started without keys: every session here is encrypted
        reader = SessionManagerImpl(env.store.inner, env.config)
        unreadable = {good, bad}
    elif spec.corrupt is not None:
        await spec.corrupt(env.store, bad)
        unreadable = {bad}
    else:
        pytest.skip("no way to damage a stored session on this backend (see the stub test)")
    for include_turns in (True, False):
        total = await user_analytics(reader, "fay", include_turns=include_turns)
        assert set(total.damaged_session_ids) == unreadable
        assert total.session_count == 2 - len(unreadable)
        assert set(total.to_dict()["damaged_session_ids"]) == unreadable
        json.dumps(total.to_dict())
    left: list[str] = []
    rows = [a async for a in iter_session_analytics(reader, "fay", damaged=left)]
    assert set(left) == unreadable and len(rows) == 2 - len(unreadable)


class _Source:
    """A session source whose page names a damaged session and whose turns of
    another cannot be read."""

    def __init__(self, states: list[SessionState]) -> None:
        self.states = states

    async def list_sessions(self, user_id: str, **_: Any) -> SessionPage:
        return SessionPage(items=list(self.states), damaged=["undecodable"])

    async def get_turns(self, session_id: str, *, last: int | None = None) -> list[SessionTurn]:
        if session_id == "sealed":
            raise CorruptRecordError(session_id, "cannot be decoded")
        return [said("t1", "user", 0, tokens=2, cost=0.5)]


async def test_a_turn_read_that_fails_names_the_session() -> None:
    states = [
        SessionState(session_id=sid, user_id="gus", status=SessionStatus.ACTIVE, turn_count=1)
        for sid in ("fine", "sealed")
    ]
    total = await user_analytics(_Source(states), "gus")  # type: ignore[arg-type]
    assert total.session_count == 1 and total.total_tokens == 2
    assert total.damaged_session_ids == ["undecodable", "sealed"]


@pytest.mark.parametrize("bad", [0, -1, 10_001, "10", 2.5, True, None])
async def test_page_size_is_named_as_page_size(bad: object) -> None:
    manager = SessionManagerImpl(InMemorySessionStore(), SessionConfig())
    with pytest.raises(SessionValidationError) as err:
        await user_analytics(manager, "x", page_size=bad)  # type: ignore[arg-type]
    assert err.value.field == "page_size"
    with pytest.raises(SessionValidationError) as err:
        [a async for a in iter_session_analytics(manager, "x", page_size=bad)]  # type: ignore[arg-type]
    assert err.value.field == "page_size"
    with pytest.raises(SessionValidationError) as err:
        await user_analytics(manager, "x", include_turns="no")  # type: ignore[arg-type]
    assert err.value.field == "include_turns"


def test_turns_by_role_counts_roles_case_insensitively() -> None:
    turns = [said(f"t{i}", role, i, tokens=0, cost=0.0)
             for i, role in enumerate(["User", "user", "ASSISTANT", "assistant"])]
    result = compute(SessionState(session_id="s", user_id="h", status=SessionStatus.ACTIVE,
                                  turns=turns))
    assert result.turns_by_role == {"user": 2, "assistant": 2}
    assert result.response_count == 1  # User -> ASSISTANT; the next assistant answers nothing


def test_a_familys_seen_turns_are_dropped_once_its_members_are_counted() -> None:
    """Memory: only a family's seen turn keys are held, and only while it is counted."""
    from lexigram.ai.session.analytics.user import _Families

    families = _Families()
    families.link("twig", "branch")
    families.link("branch", "source")
    for sid in ("twig", "branch"):
        families.expect(sid)
    families.expect("source", known=True)
    assert families.seen("lonely") is None  # a session in no family holds nothing
    seen = families.seen("twig")
    assert seen is not None
    seen.add(("t1", T0))
    families.counted("twig")
    families.counted("branch")
    assert families.seen("source") == {("t1", T0)}
    families.counted("source")
    assert families._seen == {}
    # a source not known to be listed keeps them to the end
    families.link("b2", "gone")
    families.expect("b2")
    families.expect("gone", known=False)
    families.seen("b2")
    families.counted("b2")
    assert len(families._seen) == 1
