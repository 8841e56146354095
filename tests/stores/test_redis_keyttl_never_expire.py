"""``session_ttl: 0`` after a TTL: the keys of a session written since never expire.

An outside audit: while ``session_ttl`` > 0 every key of a session carries a Redis
expiry (deadline + ``purge_after_s`` + 1 day, the safety net for when no sweeper
runs). Reconfigured with ``session_ttl: 0`` ("never expire"), the writes cleared the
session's deadline but left that expiry on its keys, so Redis deleted an ACTIVE
session still being written to about eight days later, with no tombstone nor event.
A write under TTL 0 now makes every key of the session persistent (the checkpoint,
archive and branch keys included), once: the header's ``kp`` field says the keys
carry no expiry, so later appends cost nothing more. The reverse (TTL 0, then a TTL)
still gives the keys their expiry on the next write.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from lexigram.contracts.ai.session import SessionStatus

from lexigram.ai.session.stores.base import SessionPatch
from lexigram.ai.session.stores.cache import CacheSessionStore
from lexigram.ai.session.stores.redis.core import KEY_EXPIRY_MARGIN_S
from lexigram.ai.session.testing.conformance import FakeClock, make_state, make_turn
from tests.stores.backends.redis import open_store

pytestmark = pytest.mark.redis

_TTL = 60
_PURGE = 100
_GRACE_MS = (_PURGE + KEY_EXPIRY_MARGIN_S) * 1000
_A, _C = SessionStatus.ACTIVE, SessionStatus.CLOSED


@pytest.fixture
async def store(cluster: bool) -> AsyncIterator[CacheSessionStore]:
    async with open_store(
        cluster=cluster, session_ttl=_TTL, purge_after_s=_PURGE, clock=FakeClock()
    ) as factory:
        made = await factory()
        assert isinstance(made, CacheSessionStore)
        yield made


async def ttls(store: CacheSessionStore, sid: str) -> dict[str, int]:
    """PTTL of every stored session key but the tombstone and the reply index."""
    out = {}
    for key in store.keys.session(sid)[:10]:
        if await store.client.exists(key):
            out[key.rsplit(":", 1)[1]] = int(await store.client.pttl(key))
    return out


async def busy_session(store: CacheSessionStore) -> str:
    """A session using every kind of key: turns, checkpoint, archive, a branch."""
    state = make_state("alice")
    sid = state.session_id
    await store.create_session(state)
    await store.append_turns(sid, [make_turn(n) for n in range(3)])
    await store.create_checkpoint(sid, checkpoint_id=f"cp-{sid}")
    await store.pop_turn(sid)  # archives a turn the checkpoint names
    await store.fork_session(sid, make_state("alice"))
    found = await ttls(store, sid)
    assert set(found) >= set("htrikacdb"), found
    assert all(_GRACE_MS < t <= _TTL * 1000 + _GRACE_MS for t in found.values()), found
    return sid


async def test_an_append_under_ttl_0_makes_every_key_persistent(store: CacheSessionStore) -> None:
    sid = await busy_session(store)
    store.session_ttl = 0  # the operator: "never expire"
    await store.append_turns(sid, [make_turn(10)])
    found = await ttls(store, sid)
    assert len(found) >= 9
    assert all(t == -1 for t in found.values()), found
    record = await store.load_record(sid)
    assert record is not None
    assert record.state.status is _A and record.expires_at is None
    # later appends keep it so (and find the flag, so they do nothing more)
    await store.append_turns(sid, [make_turn(11)])
    assert all(t == -1 for t in (await ttls(store, sid)).values())
    assert await store.client.hget(store.keys.header(sid), "kp") == b"1"


@pytest.mark.parametrize("write", ["update", "checkpoint", "pop", "close"])
async def test_any_other_write_under_ttl_0_makes_every_key_persistent(
    store: CacheSessionStore, write: str
) -> None:
    sid = await busy_session(store)
    store.session_ttl = 0
    if write == "update":
        await store.update_session(sid, SessionPatch(variables={"k": 1}))
    elif write == "checkpoint":
        await store.create_checkpoint(sid, checkpoint_id=f"cp2-{sid}")
    elif write == "pop":
        await store.pop_turn(sid)
    else:
        await store.transition(sid, _C, allowed_from=frozenset({_A}))
    found = await ttls(store, sid)
    assert len(found) >= 9
    assert all(t == -1 for t in found.values()), found


async def test_turning_a_ttl_on_again_sets_the_expiry_on_the_next_write(
    store: CacheSessionStore,
) -> None:
    store.session_ttl = 0
    state = make_state("alice")
    sid = state.session_id
    await store.create_session(state)
    await store.append_turns(sid, [make_turn(1), make_turn(2)])
    await store.create_checkpoint(sid, checkpoint_id=f"cp-{sid}")
    assert all(t == -1 for t in (await ttls(store, sid)).values())
    store.session_ttl = _TTL
    await store.append_turns(sid, [make_turn(3)])
    found = await ttls(store, sid)
    assert all(_GRACE_MS < t <= _TTL * 1000 + _GRACE_MS for t in found.values()), found
    assert await store.client.hget(store.keys.header(sid), "kp") is None
    # and off again: persistent again
    store.session_ttl = 0
    await store.append_turns(sid, [make_turn(4)])
    assert all(t == -1 for t in (await ttls(store, sid)).values())
    # the checkpoints do not carry the flag (their header is the session's)
    checkpoint = await store.load_checkpoint(f"cp-{sid}")
    assert checkpoint is not None


async def test_a_session_stored_before_the_flag_is_made_persistent_too(
    store: CacheSessionStore,
) -> None:
    """Keys that carry an expiry and a header without ``kp`` (written by an earlier
    version of the store, whatever its TTL): the first write under TTL 0 removes it."""
    store.session_ttl = 0
    state = make_state("alice")
    sid = state.session_id
    await store.create_session(state)
    await store.append_turns(sid, [make_turn(1)])
    await store.client.hdel(store.keys.header(sid), "kp")
    for key in store.keys.session(sid)[:10]:
        await store.client.pexpire(key, 600_000)
    await store.append_turns(sid, [make_turn(2)])
    assert all(t == -1 for t in (await ttls(store, sid)).values())
