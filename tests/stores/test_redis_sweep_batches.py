"""The Redis sweeper's batches on a single server: one script call per chunk of sessions.

``mark_expired_batch`` and ``purge_batch`` run ``<script>_many`` (``session_batch.lua``)
once per :data:`batch_scripts.CHUNK` sessions, and the index updates run as one
``index_batch.lua`` call: checked here across a chunk boundary, with a damaged
session failing alone, for the user and parent indexes a purge names, and for the
index commands' replies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionStatus

from lexigram.ai.session.exceptions import SessionStoreError
from lexigram.ai.session.stores.cache import CacheSessionStore
from lexigram.ai.session.stores.redis.batch_scripts import (
    CHUNK,
    run_index_commands,
    scriptable,
)
from lexigram.ai.session.testing.conformance import FakeClock, make_state
from tests.stores.backends.redis import open_store

pytestmark = pytest.mark.redis

_TTL = 60


@pytest.fixture
async def store() -> AsyncIterator[CacheSessionStore]:
    async with open_store(cluster=False, session_ttl=_TTL) as factory:
        made = await factory()
        assert isinstance(made, CacheSessionStore)
        made.clock = FakeClock(datetime.now(UTC))
        yield made


def _clock(store: CacheSessionStore) -> FakeClock:
    assert isinstance(store.clock, FakeClock)
    return store.clock


async def _sessions(store: CacheSessionStore, count: int) -> list[str]:
    ids = []
    for n in range(count):
        state = make_state(f"batch-user-{n % 7}")
        await store.create_session(state)
        ids.append(state.session_id)
    return ids


async def test_a_batch_across_chunks_expires_each_session_once_and_moves_its_indexes(
    store: CacheSessionStore,
) -> None:
    ids = await _sessions(store, CHUNK + 5)
    _clock(store).advance(_TTL + 1)
    assert sorted(await store.find_expired(limit=len(ids) + 10)) == sorted(ids)
    outcome = await store.mark_expired_batch(ids)
    assert sorted(r.state.session_id for r in outcome.done) == sorted(ids)
    assert not outcome.failed and not outcome.damaged
    assert {r.state.status for r in outcome.done} == {SessionStatus.EXPIRED}
    again = await store.mark_expired_batch(ids)  # another sweeper's batch: nothing left
    assert again.done == [] and not again.failed
    client = store.client
    assert await client.zcard(store.keys.deadlines) == 0
    assert await client.zcard(store.keys.ended) == len(ids)
    for n in range(7):
        assert await client.zcard(store.keys.user_live(f"batch-user-{n}")) == 0
    assert await store.find_expired() == []
    ttl = await client.pttl(store.keys.header(ids[-1]))
    assert ttl > 0  # the storage-level expiry was set, as by a single mark_expired


async def test_a_damaged_session_fails_alone_in_a_purge_batch(store: CacheSessionStore) -> None:
    ids = await _sessions(store, 4)
    _clock(store).advance(_TTL + 1)
    await store.mark_expired_batch(ids)
    bad = ids[1]
    await store.client.set(store.keys.session_key(bad, "c"), "not a sorted set")
    until = _clock(store).now + timedelta(hours=1)
    outcome = await store.purge_batch(ids, tombstone_until=until)
    assert sorted(outcome.done) == sorted(i for i in ids if i != bad)
    assert [sid for sid, _ in outcome.failed] == [bad]
    for sid in outcome.done:
        assert await store.load(sid) is None
    assert await store.load(bad) is not None


async def test_a_purge_batch_forgets_each_session_in_its_users_and_parents_indexes(
    store: CacheSessionStore,
) -> None:
    # The purge script reads only status, user and parent of each header: the
    # indexes those name must lose the purged sessions (and nothing else).
    parent = make_state("purge-user", metadata={"k": [1, 2]}, variables={"v": "x"})
    await store.create_session(parent)
    pid = parent.session_id
    branch = make_state("purge-user", parent_session_id=pid, branch_name="b")
    await store.fork_session(pid, branch, max_branches=3)
    other = make_state("purge-other")
    await store.create_session(other)
    ids = [branch.session_id, other.session_id]
    _clock(store).advance(_TTL + 1)
    expired = await store.mark_expired_batch([pid, *ids])
    assert len(expired.done) == 3 and not expired.damaged  # non-empty JSON fields checked
    until = _clock(store).now + timedelta(hours=1)
    outcome = await store.purge_batch(ids, tombstone_until=until)
    assert sorted(outcome.done) == sorted(ids) and not outcome.failed
    client = store.client
    assert await client.zcard(store.keys.branches(pid)) == 0  # the parent's branch list
    assert await client.zrange(store.keys.user_sessions("purge-user"), 0, -1) == [pid.encode()]
    assert await client.zcard(store.keys.user_sessions("purge-other")) == 0
    assert await client.zscore(store.keys.ended, pid) is not None
    assert all([await client.zscore(store.keys.ended, sid) is None for sid in ids])
    again = await store.purge_batch(ids, tombstone_until=until)  # nothing left to purge
    assert again.done == [] and not again.failed


async def test_index_commands_in_one_call_answer_like_a_pipeline(
    store: CacheSessionStore,
) -> None:
    key = store.keys.ended
    members = {f"m{n}": n for n in range(1500)}  # more than one group's arguments
    commands: list[tuple[str, tuple[Any, ...]]] = [
        ("zadd", (key, members)),
        ("zadd", (key, {"m0": 5}, True)),  # NX: not changed
        ("zadd", (key, {"m1": 7}, False, True)),  # XX: updated, none added
        ("zrem", (key, "m2", "m3", "absent")),
        *[("zrem", (key, f"absent-{n}")) for n in range(4)],
        ("delete", (store.keys.checkpoint("none"),)),
    ]
    assert scriptable(commands)
    scripts = store._core.scripts
    assert await run_index_commands(scripts, commands) == [1500, 0, 0, 2, 0, 0, 0, 0, 0]
    assert await store.client.zscore(key, "m0") == 0
    assert await store.client.zscore(key, "m1") == 7
    assert await store.client.zcard(key) == 1498
    await store.client.set(store.keys.deadlines, "wrong type")
    with pytest.raises(SessionStoreError):
        await run_index_commands(scripts, [("zrem", (store.keys.deadlines, "x")), *commands[3:]])
    assert await store.client.zcard(key) == 1498  # the others ran


@pytest.mark.parametrize("write", ["append", "update", "clear", "suspend", "restore"])
async def test_a_session_created_without_ttl_is_swept_once_a_write_gives_it_a_deadline(
    store: CacheSessionStore, write: str
) -> None:
    """Created while ``session_ttl`` was 0 (no deadline, so no index entry), then written
    with a TTL: it read as expired but the sweeper never found it (an outside audit)."""
    from lexigram.ai.session.stores.base import SessionPatch
    from lexigram.ai.session.testing import make_turn

    store.session_ttl = 0
    state = make_state("ttl-on-user")
    await store.create_session(state)
    sid = state.session_id
    store.session_ttl = _TTL  # expiry turned on (a redeploy)
    if write == "restore":
        store.session_ttl = 0
        await store.create_checkpoint(sid, checkpoint_id="cp-ttl-on")
        store.session_ttl = _TTL
        await store.restore_checkpoint("cp-ttl-on")
    elif write == "append":
        await store.append_turns(sid, [make_turn(turn_id="t1")])
    elif write == "update":
        await store.update_session(sid, SessionPatch(variables={"k": 1}))
    elif write == "clear":
        await store.clear_turns(sid)
    else:
        await store.transition(
            sid, SessionStatus.SUSPENDED, allowed_from=frozenset({SessionStatus.ACTIVE})
        )
    _clock(store).advance(_TTL + 1)
    assert await store.find_expired() == [sid]
    outcome = await store.mark_expired_batch([sid])
    assert [r.state.status for r in outcome.done] == [SessionStatus.EXPIRED]


async def test_the_first_deadline_is_indexed_even_when_the_caller_is_cancelled(
    store: CacheSessionStore,
) -> None:
    """The index entry follows the write script: a caller cancelled between the two left
    the session unindexed for good (later writes do not say "new deadline" again)."""
    import asyncio

    from lexigram.ai.session.testing import make_turn

    store.session_ttl = 0
    state = make_state("ttl-on-user")
    await store.create_session(state)
    sid = state.session_id
    store.session_ttl = _TTL
    index = store._core.index
    real = index.add_deadline
    entered = asyncio.Event()

    async def slow(*args: Any, **kwargs: Any) -> bool:
        entered.set()
        await asyncio.sleep(0.2)
        return await real(*args, **kwargs)

    index.add_deadline = slow  # type: ignore[method-assign]
    call = asyncio.ensure_future(store.append_turns(sid, [make_turn(turn_id="t1")]))
    await asyncio.wait_for(entered.wait(), 5)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.sleep(0.4)  # the entry lands without its caller
    index.add_deadline = real  # type: ignore[method-assign]
    _clock(store).advance(_TTL + 1)
    assert await store.find_expired() == [sid]
