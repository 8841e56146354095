"""Encryption at rest: nothing private in the raw storage, and clear errors on key trouble."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session.encryption.cipher import (
    LEGACY_SEALED_PREFIX,
    SEALED_PREFIX,
    sealed_bytes,
)
from lexigram.ai.session.exceptions import EncryptionKeyError
from lexigram.ai.session.stores.encrypted.store import EncryptedSessionStore
from lexigram.ai.session.stores.in_memory import InMemorySessionStore

from .helpers import Secrets, fill_session, keyring
from .raw import RawBackend


async def test_raw_storage_holds_no_private_value(raw_backend: RawBackend) -> None:
    store = EncryptedSessionStore(await raw_backend.make(), keyring("k1"))
    secrets = Secrets()
    session_id = await fill_session(store, "alice", secrets)
    raw = await raw_backend.dump()
    assert session_id.encode() in raw  # ids stay in clear: the scan sees the store
    assert SEALED_PREFIX.encode() in raw
    for marker in secrets.all():
        assert marker.encode() not in raw, marker
    # ... and every value reads back in plaintext, from another instance too.
    other = EncryptedSessionStore(await raw_backend.make(), store.keyring)
    state = await other.load(session_id)
    assert state is not None
    assert state.system_prompt == secrets.value("PROMPT")
    assert state.metadata == {"address": secrets.value("META")}
    assert state.variables == {"p": secrets.value("PATCHVAR")}
    turn = state.turns[0]
    assert turn.content == secrets.value("CONTENT")
    assert turn.tool_calls[0]["arguments"] == {"ssn": secrets.value("TOOLARG")}
    assert turn.skill_results[0]["output"] == secrets.value("SKILL")
    assert turn.metadata == {"note": secrets.value("TURNMETA")}
    assert (state.total_tokens, state.turn_count) == (5, 1)
    checkpoints = await other.list_checkpoints(session_id)
    assert checkpoints[0].metadata == {"label": secrets.value("CPMETA")}
    assert checkpoints[0].state.turns[0].content == secrets.value("CONTENT")
    branch = await other.load(f"{session_id}-b")
    assert branch is not None and branch.turns[0].content == secrets.value("CONTENT")
    assert branch.variables == {"b": secrets.value("BRANCHVAR")}


async def test_the_same_scan_finds_plaintext_values(raw_backend: RawBackend) -> None:
    """The control: without encryption the scan does find them (so it can fail)."""
    secrets = Secrets()
    await fill_session(await raw_backend.make(), "alice", secrets)
    raw = await raw_backend.dump()
    for marker in (secrets.value("CONTENT"), secrets.value("TOOLARG"), secrets.value("PATCHVAR")):
        assert marker.encode() in raw, marker


async def test_plaintext_and_encrypted_sessions_coexist(raw_backend: RawBackend) -> None:
    plain = await raw_backend.make()
    old = Secrets()
    old_id = await fill_session(plain, "bob", old)
    store = EncryptedSessionStore(await raw_backend.make(), keyring("k1"))
    new = Secrets()
    new_id = await fill_session(store, "bob", new)
    loaded_old = await store.load(old_id)
    assert loaded_old is not None and loaded_old.turns[0].content == old.value("CONTENT")
    late = SessionTurn(
        turn_id="t2",
        role="user",
        content=old.value("LATE"),
        timestamp=loaded_old.turns[0].timestamp,
    )
    await store.append_turns(old_id, [late])  # a plaintext session stays plaintext
    raw = await raw_backend.dump()
    assert old.value("LATE").encode() in raw
    assert new.value("CONTENT").encode() not in raw
    page = await store.list_user_sessions("bob")
    contents = {s.session_id: s.variables for s in page}
    assert contents[new_id] == {"p": new.value("PATCHVAR")}
    assert contents[old_id] == {"p": old.value("PATCHVAR")}


async def test_missing_or_wrong_key_names_the_key_id() -> None:
    inner = InMemorySessionStore()
    store = EncryptedSessionStore(inner, keyring("k-2026"))
    session_id = await fill_session(store, "carol", Secrets())

    missing = EncryptedSessionStore(inner, keyring("k-other"))
    with pytest.raises(EncryptionKeyError, match="k-2026") as caught:
        await missing.load(session_id)
    assert caught.value.code == "LEX_ERR_SES_114" and caught.value.key_id == "k-2026"
    assert "not in encryption_keys" in str(caught.value)

    wrong = EncryptedSessionStore(inner, keyring("k-2026"))  # same id, other bytes
    with pytest.raises(EncryptionKeyError, match="k-2026") as caught:
        await wrong.get_turns(session_id)
    assert "does not open" in str(caught.value)


async def test_a_value_moved_to_another_session_does_not_open() -> None:
    inner = InMemorySessionStore()
    store = EncryptedSessionStore(inner, keyring("k1"))
    first = await fill_session(store, "dave", Secrets())
    second = await fill_session(store, "dave", Secrets())
    sealed = (await inner.get_turns(first))[0]
    moved = type(sealed)(**{**sealed.__dict__, "turn_id": "moved"})
    await inner.append_turns(second, [moved])
    with pytest.raises(EncryptionKeyError, match="k1"):
        await store.get_turns(second)


async def test_a_plaintext_session_may_not_take_the_reserved_metadata_field() -> None:
    from lexigram.ai.session.exceptions import SessionValidationError
    from lexigram.ai.session.stores.base import SessionPatch

    inner = InMemorySessionStore()
    session_id = await fill_session(inner, "fred", Secrets())  # written in plaintext
    store = EncryptedSessionStore(inner, keyring("k1"))
    with pytest.raises(SessionValidationError, match="__lexigram_key__") as caught:
        await store.update_session(session_id, SessionPatch(metadata={"__lexigram_key__": "x"}))
    assert caught.value.field == "metadata.__lexigram_key__"
    state = await store.load(session_id)
    assert state is not None and "__lexigram_key__" not in state.metadata


class _UnguardedMemory(InMemorySessionStore):
    """A backend that does not honour ``key_guard`` (as a plugin may not)."""

    supports_key_guard = False


async def test_a_session_recreated_elsewhere_never_reads_back_as_garbage() -> None:
    """Process A holds the data key of s; B deletes s and creates it again (new key). On a
    backend that cannot guard writes by key, A's next append is sealed under the old key:
    it is reported, and reads raise, naming the key (never garbage, never a silent gap).
    Built-in backends guard the write instead (tests/privacy/test_key_guard.py)."""
    inner = _UnguardedMemory()
    ring = keyring("k1")
    process_a, process_b = EncryptedSessionStore(inner, ring), EncryptedSessionStore(inner, ring)
    session_id = await fill_session(process_a, "gina", Secrets())
    await process_b.delete(session_id)
    from lexigram.contracts.ai.session import SessionState, SessionStatus

    now = datetime.now(UTC)
    await process_b.create_session(
        SessionState(
            session_id=session_id,
            user_id="gina",
            status=SessionStatus.ACTIVE,
            created_at=now,
            updated_at=now,
        )
    )
    late = SessionTurn(turn_id="late", role="user", content="from A", timestamp=now)
    await process_a.append_turns(session_id, [late])
    with pytest.raises(EncryptionKeyError, match="k1"):
        await process_b.get_turns(session_id)
    assert process_a._cache.get(session_id) is not None  # A now holds the fresh key


def _as_legacy(value: Any) -> Any:
    """A value sealed now (base64), re-encoded as the previous version wrote it (``lxe2:`` hex)."""
    if isinstance(value, str) and value.startswith(SEALED_PREFIX):
        return LEGACY_SEALED_PREFIX + sealed_bytes(value).hex()
    if isinstance(value, dict):
        return {k: _as_legacy(v) for k, v in value.items()}
    return value


async def test_values_sealed_by_earlier_versions_still_open() -> None:
    """``lxe2:`` (hex) values written by the previous version open beside new ``lxe1:`` ones."""
    from lexigram.ai.session.stores.base import SessionPatch

    inner = InMemorySessionStore()
    writer = EncryptedSessionStore(inner, keyring("k1"))
    session_id = await fill_session(writer, "hana", Secrets())
    stored = await inner.load(session_id)
    assert stored is not None and stored.turns[0].content.startswith(SEALED_PREFIX)
    first = stored.turns[0]
    old = type(first)(**{**first.__dict__, "content": _as_legacy(first.content)})
    await inner.clear_turns(session_id)
    await inner.append_turns(
        session_id,
        [old],
        patch=SessionPatch(
            metadata=_as_legacy(stored.metadata),
            variables=_as_legacy(stored.variables),
        ),
    )
    late = SessionTurn(turn_id="new", role="user", content="hex", timestamp=old.timestamp)
    await writer.append_turns(session_id, [late])
    expected = await EncryptedSessionStore(inner, writer.keyring, turn_cache_bytes=0).load(
        session_id
    )
    assert expected is not None and expected.turns[1].content == "hex"
    for budget in (0, 1 << 20):  # through the fast path and through the cache
        reader = EncryptedSessionStore(inner, writer.keyring, turn_cache_bytes=budget)
        for _ in range(2):
            state = await reader.load(session_id)
            assert state is not None
            assert [t.turn_id for t in state.turns] == [first.turn_id, "new"]
            assert state.turns == expected.turns
            assert (state.metadata, state.variables) == (expected.metadata, expected.variables)
            assert state.turns[0].tool_calls and state.variables
    raw_meta = (await inner.load_record(session_id)).state.metadata  # type: ignore[union-attr]
    assert raw_meta["__lexigram_sealed__"].startswith(LEGACY_SEALED_PREFIX)


@pytest.mark.parametrize("legacy", [False, True], ids=["base64", "hex"])
async def test_a_damaged_sealed_value_is_named(legacy: bool) -> None:
    from lexigram.ai.session.exceptions import CorruptRecordError

    inner = InMemorySessionStore()
    store = EncryptedSessionStore(inner, keyring("k1"))
    session_id = await fill_session(store, "ivan", Secrets())
    stored = (await inner.get_turns(session_id))[0]
    content = _as_legacy(stored.content) if legacy else stored.content
    broken = type(stored)(
        **{**stored.__dict__, "turn_id": "broken", "content": content[:-1] + "!"}
    )  # neither base64 nor hex any more
    await inner.append_turns(session_id, [broken])
    reader = EncryptedSessionStore(inner, store.keyring)
    with pytest.raises(CorruptRecordError, match="broken"):
        await reader.get_turns(session_id)


async def test_whitespace_inside_a_sealed_value_is_named() -> None:
    """Sealed values are decoded strictly: none is ever written with whitespace inside."""
    from lexigram.ai.session.exceptions import CorruptRecordError

    inner = InMemorySessionStore()
    store = EncryptedSessionStore(inner, keyring("k1"))
    session_id = await fill_session(store, "judy", Secrets())
    stored = (await inner.get_turns(session_id))[0]
    spaced = SEALED_PREFIX + " " + stored.content[len(SEALED_PREFIX) :]
    broken = type(stored)(**{**stored.__dict__, "turn_id": "spaced", "content": spaced})
    await inner.append_turns(session_id, [broken])
    reader = EncryptedSessionStore(inner, store.keyring, turn_cache_bytes=0)
    with pytest.raises(CorruptRecordError, match="spaced"):
        await reader.get_turns(session_id)


async def test_the_inner_store_gets_the_sealed_batch_already_checked() -> None:
    """Sealing keeps a checked batch checked, so the inner store does not walk it again."""
    from lexigram.ai.session.validation import CheckedTurns, check_turns

    batches: list[Any] = []

    class Spy(InMemorySessionStore):
        async def append_turns(self, session_id: str, turns: Any, **kwargs: Any) -> Any:
            batches.append(turns)
            return await super().append_turns(session_id, turns, **kwargs)

    store = EncryptedSessionStore(Spy(), keyring("k1"))
    session_id = await fill_session(store, "kim", Secrets())
    batches.clear()
    turn = SessionTurn(
        turn_id="t-checked",
        role="user",
        content="hello",
        timestamp=datetime.now(UTC),
        metadata={"k": "v"},
    )
    await store.append_turns(session_id, [turn])
    (sent,) = batches
    assert type(sent) is CheckedTurns
    assert check_turns(sent) is sent  # the inner store's check hands it back as it is
    assert sent[0].content.startswith(SEALED_PREFIX) and sent[0].metadata == {}
    (back,) = await store.get_turns(session_id, last=1)
    assert (back.content, back.metadata) == ("hello", {"k": "v"})
