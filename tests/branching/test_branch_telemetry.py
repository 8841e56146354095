"""A fork counts as a created session and a merge's turns as appended, so that the
active-sessions gauge (created minus ended) never goes below zero (an outside audit)."""

from __future__ import annotations

import pytest

from lexigram.ai.session.exceptions import SessionCapacityError

from ..checkpointing.harness import EnvFactory, add
from ..manager.test_events_telemetry import Otel


async def test_fork_and_merge_keep_the_active_gauge_right(
    make_env: EnvFactory, otel: Otel
) -> None:
    env = await make_env()
    m = env.manager
    sid = (await m.create("ivy")).session_id
    await add(env, sid, 0, 1)
    branch = await env.branches.fork(sid, "b")
    assert otel.total("ai_session.sessions.created") == 2
    assert otel.total("ai_session.sessions.active") == 2
    await add(env, branch.session_id, 10, 2)
    merged = await env.branches.merge(sid, branch.session_id)  # appends 2 turns to sid
    assert merged.turn_count == 3
    assert otel.total("ai_session.turns.appended") == 1 + 2 + 2
    await m.close(branch.session_id)
    await m.close(sid)
    assert otel.total("ai_session.sessions.ended") == 2
    assert otel.total("ai_session.sessions.active") == 0


async def test_a_refused_fork_or_merge_counts_nothing(make_env: EnvFactory, otel: Otel) -> None:
    env = await make_env(max_branches_per_session=1)
    sid = (await env.manager.create("ivy")).session_id
    await add(env, sid, 0, 1)
    branch = await env.branches.fork(sid, "b")
    with pytest.raises(SessionCapacityError):  # max_branches_per_session
        await env.branches.fork(sid, "c")
    assert otel.total("ai_session.sessions.created") == 2
    await env.branches.merge(sid, branch.session_id)  # nothing new on the branch
    assert otel.total("ai_session.turns.appended") == 1
