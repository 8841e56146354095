"""A longer purge retention keeps the keys of sessions that had already ended.

An outside audit: the keys of an ended session carry a Redis expiry of
``purge_after_s`` + 1 day after its end (the safety net for when no sweeper runs).
Raising ``purge_after_s`` (or sweeping with a larger ``--purge-after``) did not keep the
sessions that had ended before for longer: their keys vanished at the old time
(closed under 3,600 s, reopened with 30 days, swept: header PTTL 25 h), where the
in-memory and SQL stores keep them until the new purge time. The sweeper's
``find_purgeable`` now moves the expiry of the kept ended sessions' keys once per
retention, in pages over the ended index.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from lexigram.contracts.ai.session import SessionStatus

from lexigram.ai.session.manager.cleanup import SessionCleanupScheduler
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.stores.cache import CacheSessionStore
from lexigram.ai.session.stores.redis import sweeping
from lexigram.ai.session.stores.redis.core import KEY_EXPIRY_MARGIN_S
from lexigram.ai.session.testing.conformance import FakeClock, make_state, make_turn
from tests.services import REDIS_URL, require_redis
from tests.stores.redis_cluster import shared_cluster

pytestmark = pytest.mark.redis

_A, _C = SessionStatus.ACTIVE, SessionStatus.CLOSED
_HOUR_MS = 3_600_000
_DAY = 86_400


class Stores:
    """Stores over one key prefix and one fake clock, each with its own settings."""

    def __init__(self, url: str, cluster: bool) -> None:
        self.url, self.cluster = url, cluster
        self.prefix = f"lxkt:{uuid.uuid4().hex[:12]}"
        self.clock = FakeClock()
        self.made: list[CacheSessionStore] = []

    async def open(self, **options: int) -> CacheSessionStore:
        store = CacheSessionStore(
            self.url,
            key_prefix=self.prefix,
            cluster=self.cluster,
            clock=self.clock,
            session_ttl=options.pop("session_ttl", 60),
            **options,
        )
        await store.initialize()
        self.made.append(store)
        return store


@pytest.fixture
async def stores(cluster: bool) -> AsyncIterator[Stores]:
    if cluster:
        url = shared_cluster().url
    else:
        require_redis()
        url = REDIS_URL
    made = Stores(url, cluster)
    try:
        yield made
    finally:
        if made.made:
            client = made.made[0].client
            async for key in client.scan_iter(match=made.made[0].keys.pattern, count=1000):
                await client.unlink(key)
        for store in made.made:
            await store.close()


async def ended(store: CacheSessionStore, turns: int = 2) -> str:
    now = store.now()
    state = make_state("alice", created_at=now, updated_at=now)
    sid = state.session_id
    await store.create_session(state)
    await store.append_turns(sid, [make_turn(n) for n in range(turns)])
    await store.create_checkpoint(sid, checkpoint_id=f"cp-{sid}")
    await store.transition(sid, _C, allowed_from=frozenset({_A}))
    return sid


async def key_ttls(store: CacheSessionStore, sid: str) -> list[int]:
    out = []
    for key in store.keys.session(sid)[:10]:
        if await store.client.exists(key):
            out.append(int(await store.client.pttl(key)))
    return out


def kept_for(retention_s: int) -> tuple[int, int]:
    """The PTTL range of keys kept ``retention_s`` + 1 day after an end just now."""
    ms = (retention_s + KEY_EXPIRY_MARGIN_S) * 1000
    return ms - 60_000, ms + _HOUR_MS


async def test_a_raised_purge_after_keeps_sessions_that_ended_before(stores: Stores) -> None:
    old = await stores.open(purge_after_s=3600)
    sid = await ended(old)
    assert all(t <= (3600 + KEY_EXPIRY_MARGIN_S) * 1000 for t in await key_ttls(old, sid))
    new = await stores.open(purge_after_s=30 * _DAY)
    manager = SessionManagerImpl(
        new, {"purge_after_s": 30 * _DAY, "session_ttl": 60, "auto_checkpoint_interval": None}
    )
    report = await SessionCleanupScheduler(manager).sweep()
    assert report.purged == 0
    lo, hi = kept_for(30 * _DAY)
    found = await key_ttls(new, sid)
    assert len(found) >= 7
    assert all(lo < t <= hi for t in found), found
    # once through, a sweep does not walk again (and nothing is shortened)
    await SessionCleanupScheduler(manager).sweep()
    assert all(lo - 60_000 < t <= hi for t in await key_ttls(new, sid))


async def test_a_retention_lowered_then_raised_again_keeps_what_ended_meanwhile(
    stores: Stores,
) -> None:
    """30 d, then 1 h, then 30 d again: the walk record still said 30 d, so the sessions
    ended under 1 h were never walked and expired after 25 h (a regression audit)."""
    first = await stores.open(purge_after_s=30 * _DAY)
    await first.find_purgeable(older_than=stores.clock.now - timedelta(days=30))
    lowered = await stores.open(purge_after_s=3600)
    sid = await ended(lowered)
    raised = await stores.open(purge_after_s=30 * _DAY)
    stores.clock.advance(60)
    for _ in range(3):
        assert await raised.find_purgeable(
            older_than=stores.clock.now - timedelta(days=30)
        ) == []
    lo, hi = kept_for(30 * _DAY)
    found = await key_ttls(raised, sid)
    assert found and all(lo - _HOUR_MS < t <= hi for t in found), found


async def test_a_sweep_keeping_longer_than_the_config_keeps_the_keys(stores: Stores) -> None:
    """``sweep --purge-after N`` with N past the store's ``purge_after_s``."""
    store = await stores.open(purge_after_s=3600)
    sid = await ended(store)
    stores.clock.advance(2 * 3600)  # past the configured purge time, within N
    cutoff = store.now() - timedelta(days=10)
    assert await store.find_purgeable(older_than=cutoff) == []
    found = await key_ttls(store, sid)
    assert all(t > 10 * _DAY * 1000 for t in found), found
    # a session that ends later is kept as long by the next sweep with that N
    later = await ended(store)
    assert all(t < 2 * _DAY * 1000 for t in await key_ttls(store, later))
    await store.find_purgeable(older_than=store.now() - timedelta(days=10))
    assert all(t > 10 * _DAY * 1000 for t in await key_ttls(store, later))


async def test_the_walk_goes_on_in_pages_over_equal_end_times(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sessions ended at one instant (one sweep batch expires many at once) span pages;
    each call walks a bounded number of pages and the next goes on where it stopped."""
    monkeypatch.setattr(sweeping, "_KEEP_PAGE", 3)
    monkeypatch.setattr(sweeping, "_KEEP_PAGES", 2)
    old = await stores.open(purge_after_s=3600)
    sids = [await ended(old, turns=1) for _ in range(10)]  # the clock stands still
    new = await stores.open(purge_after_s=30 * _DAY)
    cutoff = new.now() - timedelta(days=30)
    await new.find_purgeable(older_than=cutoff)
    lo, _ = kept_for(30 * _DAY)
    kept = [sid for sid in sids if min(await key_ttls(new, sid)) > lo]
    assert len(kept) == 6  # two pages of three
    await new.find_purgeable(older_than=cutoff)
    for sid in sids:
        assert min(await key_ttls(new, sid)) > lo, sid


async def test_keys_without_an_expiry_and_live_sessions_are_left_as_they_are(
    stores: Stores,
) -> None:
    never = await stores.open(purge_after_s=3600, session_ttl=0)
    persistent = await ended(never)
    old = await stores.open(purge_after_s=3600)
    state = make_state("alice")
    await old.create_session(state)
    live_before = await key_ttls(old, state.session_id)
    new = await stores.open(purge_after_s=30 * _DAY)
    await new.find_purgeable(older_than=new.now() - timedelta(days=30))
    assert all(t == -1 for t in await key_ttls(new, persistent))
    live_after = await key_ttls(new, state.session_id)
    assert all(abs(a - b) < 60_000 for a, b in zip(live_before, live_after, strict=True))


async def test_a_sweep_within_the_store_s_own_retention_walks_nothing(stores: Stores) -> None:
    """The store records its own key expiry when it starts (when none is recorded):
    a sweep whose retention that covers reads one hash and walks nothing."""
    store = await stores.open(purge_after_s=3600)
    mark = store.keys.ended_grace
    recorded = await store.client.hgetall(mark)
    assert recorded[b"g"] == str((3600 + KEY_EXPIRY_MARGIN_S) * 1000).encode()
    assert recorded[b"c"] == b"1"
    await ended(store)
    assert await store.find_purgeable(older_than=store.now() - timedelta(seconds=3600)) == []
    assert await store.client.hgetall(mark) == recorded
    # another store with a shorter retention lowers it (the sessions it ends expire
    # sooner), so that a store keeping them longer walks them again
    await stores.open(purge_after_s=60)
    lowered = await store.client.hgetall(mark)
    assert lowered[b"g"] == str((60 + KEY_EXPIRY_MARGIN_S) * 1000).encode()
    assert lowered[b"c"] == b"1"
