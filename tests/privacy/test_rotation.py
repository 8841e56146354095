"""Key rotation and retirement on every durable backend, in one process (CLI: test_cli)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session.encryption.keyring import Keyring
from lexigram.ai.session.exceptions import EncryptionKeyError, SessionValidationError
from lexigram.ai.session.stores.base import KEY_ENVELOPE_FIELD, SessionPatch
from lexigram.ai.session.stores.encrypted.envelopes import envelope_access
from lexigram.ai.session.stores.encrypted.rotation import RotationReport, key_usage, rotate_keys
from lexigram.ai.session.stores.encrypted.store import EncryptedSessionStore

from .helpers import Secrets, fill_session, keyring
from .raw import RawBackend


async def test_rotate_rewraps_every_data_key_then_the_old_key_can_go(
    raw_backend: RawBackend,
) -> None:
    ring_a = keyring("key-a")
    writer = EncryptedSessionStore(await raw_backend.make(), ring_a)
    secrets = [Secrets() for _ in range(5)]
    ids = [await fill_session(writer, f"user{i}", s) for i, s in enumerate(secrets)]
    before = await raw_backend.dump()
    access = envelope_access(writer)
    assert await key_usage(access, "key-a") >= 10  # headers, branches, checkpoints

    ring_ba = Keyring((keyring("key-b").newest, ring_a.newest))
    seen: list[RotationReport] = []
    first = await rotate_keys(
        access, ring_ba, batch=3, max_batches=1, progress=lambda r: seen.append(r)
    )
    assert first.cursor is not None and first.batches == 1  # stopped after one batch
    report = await rotate_keys(access, ring_ba, batch=3, resume_from=first.cursor)
    assert report.cursor is None and not report.failed
    assert first.sessions_seen + report.sessions_seen >= 10  # 5 sessions + 5 branches
    assert await key_usage(access, "key-a") == 0
    assert await key_usage(access, "key-b") >= 10
    again = await rotate_keys(access, ring_ba, batch=100)
    assert again.sessions_rewrapped == 0  # nothing left to do

    after = await raw_backend.dump()
    if raw_backend.name != "sqlite":  # (the SQLite file keeps freed pages)
        # Redis keeps each write's reply for 5 minutes (retries): those are not rewrapped.
        kept = [line for line in after.split(b"\n") if b"}:o:" not in line]
        replies = [line for line in after.split(b"\n") if b"}:o:" in line]
        on_redis = raw_backend.name.startswith("redis")
        assert b"v1.key-a." not in b"\n".join(kept if on_redis else [after])
        assert on_redis or not replies
    # The turns were not rewritten: every sealed turn of before is still stored as it was.
    turn = (await writer.inner.get_turns(ids[0]))[0]
    assert turn.content.encode() in before and turn.content.encode() in after

    reader = EncryptedSessionStore(await raw_backend.make(), Keyring((ring_ba.newest,)))
    for session_id, secret in zip(ids, secrets, strict=True):
        state = await reader.load(session_id)
        assert state is not None and state.turns[0].content == secret.value("CONTENT")
        checkpoint = (await reader.list_checkpoints(session_id))[0]
        restored = await reader.restore_checkpoint(checkpoint.checkpoint_id)
        assert restored.variables == {"p": secret.value("PATCHVAR")}
        branch = await reader.load(f"{session_id}-b")
        assert branch is not None and branch.turns[0].content == secret.value("CONTENT")


async def test_without_rotation_the_old_key_is_still_needed(raw_backend: RawBackend) -> None:
    ring_a = keyring("key-a")
    writer = EncryptedSessionStore(await raw_backend.make(), ring_a)
    session_id = await fill_session(writer, "erin", Secrets())
    assert await key_usage(envelope_access(writer), "key-a") > 0
    reader = EncryptedSessionStore(await raw_backend.make(), keyring("key-b"))
    with pytest.raises(EncryptionKeyError, match="key-a"):
        await reader.load(session_id)


async def test_a_writer_holding_the_old_wrapping_picks_up_the_new_one(
    raw_backend: RawBackend,
) -> None:
    from lexigram.ai.session.stores.base import SessionPatch

    ring_a = keyring("key-a")
    ring_ba = Keyring((keyring("key-b").newest, ring_a.newest))
    writer = EncryptedSessionStore(await raw_backend.make(), ring_ba)
    session_id = await fill_session(
        EncryptedSessionStore(await raw_backend.make(), ring_a), "hank", Secrets()
    )
    old = EncryptedSessionStore(await raw_backend.make(), ring_ba)  # B deployed, not rotated
    assert await old.load(session_id) is not None  # caches the A wrapping
    access = envelope_access(writer)
    await rotate_keys(access, ring_ba)
    assert await key_usage(access, "key-a") == 0
    await old.update_session(session_id, SessionPatch(variables={"x": 1}))  # reads the header
    await old.update_session(session_id, SessionPatch(metadata={"m": 2}))  # writes metadata
    assert await key_usage(access, "key-a") == 0  # the old wrapping was not written back
    state = await writer.load(session_id)
    assert state is not None and state.metadata == {"m": 2} and state.variables == {"x": 1}


async def test_a_process_that_cached_the_old_wrapping_never_writes_it_back(
    raw_backend: RawBackend,
) -> None:
    """Process A wrote under key A and keeps the session's envelope; the rotation re-wraps
    it under key B; A's next metadata update is refused by the key guard and made again
    under the new wrapping, so key A can still be retired."""
    ring_a = keyring("key-a")
    ring_ba = Keyring((keyring("key-b").newest, ring_a.newest))
    process_a = EncryptedSessionStore(await raw_backend.make(), ring_ba)
    writer = EncryptedSessionStore(await raw_backend.make(), ring_a)
    session_id = await fill_session(writer, "rita", Secrets())
    await process_a.load(session_id)  # A caches the key-a wrapping
    await rotate_keys(envelope_access(writer), ring_ba, batch=100)
    assert await key_usage(envelope_access(writer), "key-a") == 0

    await process_a.update_session(session_id, SessionPatch(metadata={"after": "rotation"}))
    late = SessionTurn(
        turn_id="after-rotation", role="user", content="still readable", timestamp=datetime.now(UTC)
    )
    await process_a.append_turns(session_id, [late])
    assert await key_usage(envelope_access(writer), "key-a") == 0
    reader = EncryptedSessionStore(await raw_backend.make(), Keyring((ring_ba.newest,)))
    state = await reader.load(session_id)
    assert state is not None and state.metadata == {"after": "rotation"}
    assert state.turns[-1].content == "still readable"


async def test_a_cursor_is_only_one_a_rotation_of_this_store_under_these_keys_printed(
    raw_backend: RawBackend,
) -> None:
    ring_a = keyring("key-a")
    writer = EncryptedSessionStore(await raw_backend.make(), ring_a)
    for i in range(4):
        await fill_session(writer, f"user{i}", Secrets())
    access = envelope_access(writer)
    ring_ba = Keyring((keyring("key-b").newest, ring_a.newest))
    first = await rotate_keys(access, ring_ba, batch=1, max_batches=1)
    assert first.cursor is not None
    body = first.cursor.removeprefix("rc1.").split(".")[0]
    made_up = [
        "rc1." + body,  # the position without its tag
        "rc1.enp6." + first.cursor.rsplit(".", 1)[1],  # another position, the same tag
        "rc1.OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OQ.AAAAAAAAAAAAAAAA",
    ]
    other_keys = Keyring((keyring("key-c").newest, ring_a.newest))
    # The same backend under another prefix or URL is another scope.
    elsewhere = SimpleNamespace(
        scope=access.scope + "x", scan=access.scan, replace=access.replace, count=access.count
    )
    cases = [(access, ring_ba, c) for c in made_up] + [
        (access, other_keys, first.cursor),  # printed before encryption_keys changed
        (elsewhere, ring_ba, first.cursor),
    ]
    usage = await key_usage(access, "key-a")
    for where, ring, cursor in cases:
        with pytest.raises(SessionValidationError, match="resume_from") as info:
            await rotate_keys(where, ring, batch=10, resume_from=cursor)
        assert "earlier rotation" in str(info.value)
    assert await key_usage(access, "key-a") == usage  # nothing was rotated by those
    report = await rotate_keys(access, ring_ba, batch=10, resume_from=first.cursor)
    assert report.cursor is None and await key_usage(access, "key-a") == 0


def test_a_plugin_store_is_told_what_rotation_needs_not_driven_as_redis() -> None:
    """A plugin store with ``client`` and ``keys`` attributes was driven as Redis (a raw
    AttributeError), and a durable plugin was told it kept its keys in memory."""
    from lexigram.ai.session.exceptions import SessionStoreError
    from lexigram.ai.session.stores.in_memory import InMemorySessionStore

    class PluginStore(InMemorySessionStore):
        backend_name = "plugin_like"  # type: ignore[misc]

    class LooksLikeRedis(PluginStore):
        client = object()
        keys = object()

    for store in (PluginStore(), LooksLikeRedis()):
        store.__class__.__module__ = "plugin_package.store"
        with pytest.raises(SessionStoreError, match="plugin_like"):
            envelope_access(store)
    with pytest.raises(SessionStoreError, match="in this process only"):
        envelope_access(InMemorySessionStore())


async def test_a_session_is_rotated_in_one_transaction_on_every_sql_backend(
    raw_backend: RawBackend,
) -> None:
    """A failure between the header's and the checkpoints' swap leaves both under the old
    key (MariaDB committed the header alone: its engine runs in autocommit mode)."""
    if raw_backend.name not in ("sqlite", "postgres", "mariadb"):
        pytest.skip("SQL transactions (Redis swaps a session's envelopes in one script)")
    ring_a = keyring("key-a")
    inner = await raw_backend.make()
    writer = EncryptedSessionStore(inner, ring_a)
    await fill_session(writer, "ann", Secrets())
    prefix = inner.table_prefix  # type: ignore[attr-defined]
    trigger = {
        "sqlite": f"CREATE TRIGGER {prefix}boom BEFORE UPDATE ON {prefix}checkpoints "
        "BEGIN SELECT RAISE(ABORT, 'boom'); END",
        "postgres": f"CREATE TRIGGER {prefix}boom BEFORE UPDATE ON {prefix}checkpoints "
        f"FOR EACH ROW EXECUTE FUNCTION {prefix}boom()",
        "mariadb": f"CREATE TRIGGER {prefix}boom BEFORE UPDATE ON {prefix}checkpoints "
        "FOR EACH ROW SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'boom'",
    }[raw_backend.name]
    engine = inner.engine  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        if raw_backend.name == "postgres":
            await conn.exec_driver_sql(
                f"CREATE FUNCTION {prefix}boom() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'boom'; END $$"
            )
        await conn.exec_driver_sql(trigger)
        await conn.commit()
    try:
        ring_ba = Keyring((keyring("key-b").newest, ring_a.newest))
        with pytest.raises(Exception, match="boom"):
            await rotate_keys(envelope_access(writer), ring_ba, batch=100)
        access = envelope_access(writer)
        assert await key_usage(access, "key-b") == 0  # neither the header nor a checkpoint
    finally:
        async with engine.connect() as conn:
            await conn.exec_driver_sql(f"DROP TRIGGER {prefix}boom" + (
                f" ON {prefix}checkpoints" if raw_backend.name == "postgres" else ""
            ))
            if raw_backend.name == "postgres":
                await conn.exec_driver_sql(f"DROP FUNCTION {prefix}boom()")
            await conn.commit()


@pytest.mark.parametrize("where", ["nested metadata", "variables"])
async def test_a_value_shaped_like_an_envelope_in_user_data_is_not_a_key(
    raw_backend: RawBackend, where: str
) -> None:
    """A plaintext session holding ``__lexigram_key__`` in its own data (nested metadata,
    variables, and so its checkpoints) was taken for a key envelope: ``keys retire``
    refused for ever and ``keys rotate`` blamed the key."""
    from lexigram.ai.session.manager.core import SessionManagerImpl

    fake = {KEY_ENVELOPE_FIELD: "v1.key-a.AAAA.BBBB"}
    plain = SessionManagerImpl(await raw_backend.make())
    if where == "variables":
        state = await plain.create("ann", variables=fake)
    else:
        state = await plain.create("ann", {"form": fake})
    await plain.checkpoint(state.session_id)
    ring_a = keyring("key-a")
    writer = EncryptedSessionStore(await raw_backend.make(), ring_a)
    access = envelope_access(writer)
    assert await key_usage(access, "key-a") == 0
    ring_ba = Keyring((keyring("key-b").newest, ring_a.newest))
    report = await rotate_keys(access, ring_ba, batch=100)
    assert not report.failed and report.sessions_rewrapped == 0
    reread = await plain.get_state(state.session_id)
    assert reread is not None
    assert (reread.variables if where == "variables" else reread.metadata["form"]) == fake


async def test_redis_key_usage_counts_only_its_own_prefix_not_an_extended_one() -> None:
    """A store under ``P`` and another under ``P:s:y`` (its prefix extends the first): the
    first one's SCAN matched the other's headers too, counting and "rotating" them, so
    its old key could never be retired while the other existed (an outside audit)."""
    import uuid

    from lexigram.ai.session.stores.cache import CacheSessionStore
    from lexigram.ai.session.testing.conformance import make_state

    from ..services import REDIS_URL, require_redis

    require_redis()
    ring = keyring("key-a")
    base = f"lxtest:{uuid.uuid4().hex[:10]}"
    prefixes = (base, base + ":s:y", base + ":s:{w}")  # '*' of SCAN matches across '}'
    inners = [CacheSessionStore(REDIS_URL, key_prefix=p) for p in prefixes]
    stores = [EncryptedSessionStore(inner, ring) for inner in inners]
    try:
        for store in stores:
            await store.initialize()
            await store.create_session(make_state("alice"))
        for store in stores:
            assert await key_usage(envelope_access(store), "key-a") == 1
    finally:
        client = inners[0].client
        async for key in client.scan_iter(match=base + "*"):
            await client.delete(key)
        for store in stores:
            await store.close()
