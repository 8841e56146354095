"""erase_user: nothing of the user left in the raw storage, other users intact, resumable."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from lexigram.contracts.ai.session import SessionTurn
from lexigram.hooks import HookRegistry

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.exceptions import SessionNotFoundError
from lexigram.ai.session.hooks import HOOK_USER_ERASED, SessionUserErasedHook
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.stores.base import SessionStore
from lexigram.ai.session.stores.encrypted.store import EncryptedSessionStore
from lexigram.ai.session.stores.in_memory import InMemorySessionStore

from .helpers import Secrets, fill_session, keyring
from .raw import RawBackend


def _manager(store: SessionStore, hooks: HookRegistry | None = None) -> SessionManagerImpl:
    config = SessionConfig(auto_checkpoint_interval=None, session_ttl=0)
    return SessionManagerImpl(store, config, hooks=hooks or HookRegistry())


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
async def test_erase_user_leaves_no_trace_and_spares_others(
    raw_backend: RawBackend, encrypted: bool
) -> None:
    plain = await raw_backend.make()
    store: SessionStore = EncryptedSessionStore(plain, keyring("k1")) if encrypted else plain
    hooks = HookRegistry()
    fired: list[Any] = []

    async def on_erased(*, payload: Any) -> None:
        fired.append(payload)

    hooks.register_action(HOOK_USER_ERASED, on_erased)
    manager = _manager(store, hooks)
    victim, other = f"victim-{Secrets().tag}", f"other-{Secrets().tag}"
    victim_secrets = [Secrets(), Secrets()]
    victim_ids = [await fill_session(store, victim, s) for s in victim_secrets]
    await store.delete_checkpoint(f"cp-{victim_ids[0]}")  # a turn no longer live ...
    await store.pop_turn(victim_ids[1])  # ... and a popped turn: erased as well
    kept = Secrets()
    kept_id = await fill_session(store, other, kept)

    erasure = await manager.erase_user(victim)

    assert set(erasure.sessions) == {*victim_ids, *(f"{s}-b" for s in victim_ids)}
    assert erasure.complete and erasure.checkpoints == 1 and erasure.turns >= 2
    assert fired == [
        SessionUserErasedHook(user_id=victim, sessions=4, checkpoints=1, turns=erasure.turns)
    ]
    raw = await raw_backend.dump()
    assert victim.encode() not in raw
    for secret in victim_secrets:
        for marker in secret.all():
            assert marker.encode() not in raw, marker
    for session_id in victim_ids:
        assert session_id.encode() not in raw
        assert await store.load(session_id) is None
        with pytest.raises(SessionNotFoundError):  # a late write is refused
            await store.append_turns(
                session_id,
                [SessionTurn(turn_id="late", role="user", content="x",
                             timestamp=datetime.now(UTC))],
            )
    # The other user's sessions are intact.
    assert other.encode() in raw
    state = await store.load(kept_id)
    assert state is not None and state.turns[0].content == kept.value("CONTENT")
    assert len(await store.list_checkpoints(kept_id)) == 1
    assert (await store.load(f"{kept_id}-b")) is not None
    again = await manager.erase_user(victim)  # nothing left: a no-op
    assert again.sessions == [] and again.complete


async def test_an_interrupted_erasure_is_finished_by_a_second_run() -> None:
    inner = InMemorySessionStore()
    ids = [await fill_session(inner, "ursula", Secrets()) for _ in range(3)]
    calls = 0
    real = inner.erase_session

    async def failing(session_id: str) -> bool:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("connection lost")
        return await real(session_id)

    inner.erase_session = failing  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await inner.erase_user("ursula")
    left = await inner.list_user_sessions("ursula")
    assert 0 < len(left) < 6  # part of the job was done, atomically per session
    inner.erase_session = real  # type: ignore[method-assign]
    erasure = await inner.erase_user("ursula")
    assert erasure.complete
    assert len(await inner.list_user_sessions("ursula")) == 0
    for session_id in ids:
        assert await inner.load(session_id) is None
    assert "ursula" not in inner._by_user  # no empty index left behind


async def test_erasure_needs_no_key() -> None:
    inner = InMemorySessionStore()
    await fill_session(EncryptedSessionStore(inner, keyring("lost")), "vera", Secrets())
    erasure = await EncryptedSessionStore(inner, keyring("other")).erase_user("vera")
    assert len(erasure.sessions) == 2 and erasure.complete
    assert len(await inner.list_user_sessions("vera")) == 0


async def test_erase_user_publishes_an_event_with_counts_only() -> None:
    from lexigram.ai.session.events import SessionUserErasedEvent

    published: list[Any] = []

    class Bus:
        async def publish(self, event: Any) -> None:
            published.append(event)

    store = InMemorySessionStore()
    secrets = Secrets()
    await fill_session(store, "wanda", secrets)
    manager = SessionManagerImpl(
        store, SessionConfig(auto_checkpoint_interval=None), event_bus=Bus(),  # type: ignore[arg-type]
        hooks=HookRegistry(),
    )
    await manager.erase_user("wanda")
    assert len(published) == 1 and isinstance(published[0], SessionUserErasedEvent)
    event = published[0]
    assert (event.user_id, event.sessions, event.checkpoints, event.turns) == ("wanda", 2, 1, 2)
    assert secrets.value("CONTENT") not in repr(event)


async def test_a_rerun_on_sqlite_rewrites_the_file_even_with_nothing_left_to_erase(
    tmp_path: Any,
) -> None:
    """A run killed after erasing the rows but before rewriting the file left the text in
    freed pages and the WAL; the re-run erased nothing and skipped the rewrite (an
    outside audit: ``complete=True`` with the text still in the file)."""
    db = tmp_path / "e.db"
    config = SessionConfig(backend="sql", database_url=f"sqlite+aiosqlite:///{db}", session_ttl=0)
    async with SessionManagerImpl.open(config) as manager:
        state = await manager.create("victim")
        await manager.add_message(state.session_id, "user", "SECRET-STRING " * 50)
        await manager.store.erase_session(state.session_id)  # the first run, killed here
        report = await manager.erase_user("victim")
        assert report.sessions == [] and report.complete
        on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert b"SECRET-STRING" not in on_disk


async def test_a_damaged_sessions_checkpoints_and_turns_are_counted() -> None:
    """The report (and the event, the audit record) undercounted a damaged session's
    checkpoints and turns although they were removed (an outside audit)."""
    store = InMemorySessionStore()
    manager = SessionManagerImpl(store, SessionConfig(auto_checkpoint_interval=None))
    ids = []
    for _ in range(2):
        state = await manager.create("alice")
        for i in range(3):
            await manager.add_message(state.session_id, "user", f"m{i}")
        await manager.checkpoint(state.session_id)
        ids.append(state.session_id)

    real = store.load_record

    async def damaged(session_id: str) -> Any:
        if session_id == ids[0]:
            from lexigram.ai.session.exceptions import CorruptRecordError

            raise CorruptRecordError(f"session {session_id!r}", "field metadata: damaged")
        return await real(session_id)

    store.load_record = damaged  # type: ignore[method-assign]
    report = await manager.erase_user("alice")
    assert report.damaged == [ids[0]]
    assert (report.checkpoints, report.turns) == (2, 6)


async def test_a_sqlite_reader_holding_a_snapshot_fails_the_erasure_in_about_5_s(
    tmp_path: Any,
) -> None:
    """Each WAL checkpoint attempt waited the connection's 30 s busy timeout: a reader
    holding a snapshot for 100 s held the erasure 100 s (an outside audit); the docs
    promise ``SessionStoreError`` after about 5 s, and a re-run once the reader is gone
    finishes it."""
    import sqlite3
    import time

    from lexigram.ai.session.exceptions import SessionStoreError

    db = tmp_path / "e.db"
    config = SessionConfig(backend="sql", database_url=f"sqlite+aiosqlite:///{db}", session_ttl=0)
    async with SessionManagerImpl.open(config) as manager:
        state = await manager.create("victim")
        await manager.add_message(state.session_id, "user", "SECRET-STRING " * 50)
        reader = sqlite3.connect(db, isolation_level=None)
        try:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM ai_session_sessions").fetchall()
            await manager.add_message(state.session_id, "user", "SECRET-STRING again")
            started = time.monotonic()
            with pytest.raises(SessionStoreError, match="run the erasure again"):
                await manager.erase_user("victim")
            assert time.monotonic() - started < 15
        finally:
            reader.close()
        report = await manager.erase_user("victim")
        assert report.complete
        on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert b"SECRET-STRING" not in on_disk


async def test_erasure_drops_the_tombstones_that_name_the_user(raw_backend: RawBackend) -> None:
    """A purged session under an id chosen after the user (the Agents SDK adapter's
    default: the user id is the session id) left the user's id in its tombstone after
    ``erase_user`` (an outside audit); tombstones of ids that do not name the user stay."""
    from datetime import timedelta

    store = await raw_backend.make()
    manager = _manager(store)
    tag = Secrets().tag
    victim = f"customer-{tag}"
    until = datetime.now(UTC) + timedelta(days=7)
    for session_id in (victim, f"chat:{victim}:2", f"other-{tag}", f"x{victim}"):
        await manager.create(victim if "other" not in session_id else "someone",
                             session_id=session_id)
        await manager.close(session_id)
        assert await store.purge(session_id, tombstone_until=until)

    erasure = await manager.erase_user(victim)

    assert erasure.complete
    raw = await raw_backend.dump()
    assert victim.encode() not in raw.replace(f"x{victim}".encode(), b"")
    assert f"other-{tag}".encode() in raw and f"x{victim}".encode() in raw
    await manager.create(victim, session_id=victim)  # reusable, as after delete
    with pytest.raises(Exception, match="exists|purged|tombstone"):
        await manager.create("someone", session_id=f"other-{tag}")


async def test_redis_erasure_drops_a_killed_runs_delete_reply_naming_the_user() -> None:
    """A run killed after a session's delete script left its recorded reply
    (``{"u": user, ...}``, kept 5 minutes) under that session's keys; the re-run, which
    no longer lists that session, left the user's id there (an outside audit)."""
    import uuid

    import redis.asyncio as aioredis

    from lexigram.ai.session.stores.cache import CacheSessionStore
    from tests.services import REDIS_URL, drop_redis_keys, require_redis

    require_redis()
    prefix = f"erk{uuid.uuid4().hex[:8]}"
    store = CacheSessionStore(REDIS_URL, key_prefix=prefix)
    await store.initialize()
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        victim = f"victim-{uuid.uuid4().hex[:6]}"
        left = store.keys.op("gone-session", "op1", "delete")
        other = store.keys.op("gone-other", "op2", "delete")
        await client.set(left, orjson.dumps({"u": victim, "c": []}), ex=300)
        await client.set(other, orjson.dumps({"u": "someone-else", "c": []}), ex=300)
        erasure = await _manager(store).erase_user(victim)
        assert erasure.complete
        assert await client.exists(left) == 0 and await client.exists(other) == 1
    finally:
        await drop_redis_keys(client, prefix)
        await client.aclose()
        await store.close()
