"""Redis store: erasure leaves nothing of the user, imported branches, totals wording.

Against the real Redis on 127.0.0.1:6379 and the local Redis Cluster. After an
erasure every key and value under the store's prefix is read back raw: neither the
user's id nor their content may be left, whatever the retry replies held.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from lexigram.contracts.ai.session import SessionStatus

from lexigram.ai.session.exceptions import SessionNotFoundError, SessionValidationError
from lexigram.ai.session.stores.base import SessionPatch, SessionStore
from lexigram.ai.session.stores.cache import CacheSessionStore
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from lexigram.ai.session.testing.conformance import FakeClock, make_state, make_turn
from lexigram.ai.session.validation import MAX_SAFE_INT
from tests.stores.backends.redis import open_store

pytestmark = pytest.mark.redis

_A, _C = SessionStatus.ACTIVE, SessionStatus.CLOSED
_SECRET = "ALICE-HOME-ADDRESS"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(cluster: bool, clock: FakeClock) -> AsyncIterator[CacheSessionStore]:
    async with open_store(cluster=cluster, session_ttl=60, purge_after_s=0, clock=clock) as made:
        store = await made()
        assert isinstance(store, CacheSessionStore)
        yield store


async def raw_dump(store: CacheSessionStore) -> str:
    """Every key under the store's prefix with its value, as one text."""
    client = store.client
    out: list[str] = []
    async for key in client.scan_iter(match=store.keys.pattern, count=1000):
        kind = (await client.type(key)).decode()
        value: object
        if kind == "string":
            value = await client.get(key)
        elif kind == "hash":
            value = await client.hgetall(key)
        elif kind == "list":
            value = await client.lrange(key, 0, -1)
        elif kind == "zset":
            value = await client.zrange(key, 0, -1)
        else:
            value = kind
        out.append(f"{key!r} {value!r}")
    return "\n".join(out)


async def lived_session(store: SessionStore, user_id: str, session_id: str | None = None) -> str:
    """A session written through every kind of write (each records a retry reply)."""
    fields = {"metadata": {"addr": _SECRET}}
    if session_id is not None:
        fields["session_id"] = session_id  # type: ignore[assignment]
    state = make_state(user_id, **fields)
    await store.create_session(state)
    sid = state.session_id
    await store.append_turns(sid, [make_turn(1, content=f"{_SECRET} text")])
    await store.update_session(sid, SessionPatch(metadata={"addr": _SECRET, "n": 2}))
    return sid


async def close(store: SessionStore, sid: str) -> None:
    await store.transition(sid, _C, allowed_from=frozenset({_A}))


# ----------------------------------------------------------------- D1 erasure
@pytest.mark.parametrize("batch", [False, True])
async def test_erase_user_after_purge_leaves_no_reply_naming_the_user(
    store: CacheSessionStore, clock: FakeClock, batch: bool
) -> None:
    sid = await lived_session(store, "aliceD1")
    await close(store, sid)
    until = clock() + timedelta(hours=1)
    if batch:
        assert (await store.purge_batch([sid], tombstone_until=until)).done == [sid]
    else:
        assert await store.purge(sid, tombstone_until=until)
    erasure = await store.erase_user("aliceD1")
    assert erasure.complete
    raw = await raw_dump(store)
    assert "aliceD1" not in raw
    assert _SECRET not in raw


async def test_purge_alone_leaves_only_the_tombstone(
    store: CacheSessionStore, clock: FakeClock
) -> None:
    sid = await lived_session(store, "alicePurge")
    await close(store, sid)
    assert await store.purge(sid, tombstone_until=clock() + timedelta(hours=1))
    raw = await raw_dump(store)
    assert _SECRET not in raw
    assert [line for line in raw.splitlines() if sid in line] == [
        line for line in raw.splitlines() if store.keys.tombstone(sid) in line
    ]


async def test_erase_session_deletes_the_session_replies_at_once(store: CacheSessionStore) -> None:
    sid = await lived_session(store, "aliceOne")
    await store.pop_turn(sid)
    assert await store.erase_session(sid)
    raw = await raw_dump(store)
    assert sid not in raw
    assert _SECRET not in raw


async def test_a_retried_write_still_answers_its_first_reply(store: CacheSessionStore) -> None:
    sid = await lived_session(store, "aliceRetry")
    core = store._core
    op = "f" * 32
    args = [core.clock()[1], core.deadline_arg(core.now()), '{"v":"{\\"x\\":1}"}']
    first = await core.run("update", sid, args, op=op)
    again = await core.run("update", sid, args, op=op)
    assert first == again
    index = await store.client.zrange(store.keys.session_key(sid, "q"), 0, -1)
    assert store.keys.op(sid, op, "update").encode() in index


# ------------------------------------------------------- D6 refused late write
async def test_refused_write_to_an_erased_session_stores_nothing(store: CacheSessionStore) -> None:
    sid = await lived_session(store, "carol25", session_id="carol25-support-ticket")
    await store.erase_user("carol25")
    with pytest.raises(SessionNotFoundError):
        await store.append_turns(sid, [make_turn(2)])
    with pytest.raises(SessionNotFoundError):
        await store.update_session(sid, SessionPatch(metadata={"late": True}))
    with pytest.raises(SessionNotFoundError):
        await store.transition(sid, _C, allowed_from=frozenset({_A}))
    assert await store.mark_expired(sid) is None
    assert "carol25" not in await raw_dump(store)


# ------------------------------------------------------------ D2 import branch
async def test_a_branch_created_whole_is_listed_under_its_parent(store: CacheSessionStore) -> None:
    parent = await lived_session(store, "aliceD2")
    branch = make_state("bobD2", session_id="branch-of-alice", parent_session_id=parent)
    await store.create_session(branch)
    assert [r.state.session_id for r in await store.list_branches(parent)] == ["branch-of-alice"]
    erasure = await store.erase_user("aliceD2")
    assert set(erasure.sessions) == {parent, "branch-of-alice"}
    assert await store.load_record("branch-of-alice") is None


async def test_a_deleted_imported_branch_leaves_its_parent_index(store: CacheSessionStore) -> None:
    parent = await lived_session(store, "aliceD2b")
    branch = make_state("aliceD2b", parent_session_id=parent)
    await store.create_session(branch)
    await store.delete(branch.session_id)
    assert await store.list_branches(parent) == []
    assert not await store.client.exists(store.keys.branches(parent))


async def test_a_branch_of_a_missing_parent_indexes_nothing(store: CacheSessionStore) -> None:
    branch = make_state("aliceD2c", parent_session_id="no-such-parent")
    await store.create_session(branch)
    keys = [line.split(" ", 1)[0] for line in (await raw_dump(store)).splitlines()]
    assert not [key for key in keys if "{no-such-parent}" in key]


# ------------------------------------------------------------- R7 wording
@pytest.mark.parametrize(
    ("field", "turns"),
    [
        ("total_tokens", [make_turn(1, tokens=MAX_SAFE_INT), make_turn(2, tokens=1)]),
        ("total_cost", [make_turn(1, cost=1e308), make_turn(2, cost=1e308)]),
    ],
)
async def test_totals_past_their_limit_are_worded_as_in_memory(
    store: CacheSessionStore, clock: FakeClock, field: str, turns: list[object]
) -> None:
    async def refusal(target: SessionStore) -> SessionValidationError:
        state = make_state("aliceR7")
        await target.create_session(state)
        await target.append_turns(state.session_id, [turns[0]])  # type: ignore[list-item]
        with pytest.raises(SessionValidationError) as err:
            await target.append_turns(state.session_id, [turns[1]])  # type: ignore[list-item]
        return err.value

    expected = await refusal(InMemorySessionStore(session_ttl=60, clock=clock))
    got = await refusal(store)
    assert (got.field, str(got)) == (expected.field, str(expected))
    assert got.field == field
