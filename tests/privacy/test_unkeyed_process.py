"""A process configured without keys, sharing a store with encrypted sessions.

It must refuse them by key id, on every read and write, and never write into them:
a metadata update without the key would drop the wrapped data key (every turn lost),
a variables or prompt update would leave the session unreadable, an append would
store plaintext inside an encrypted session.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionStatus

from lexigram.ai.session.encryption.keyring import Keyring, new_key_text, parse_keys
from lexigram.ai.session.exceptions import EncryptionKeyError, SessionValidationError
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.stores.base import KEY_ENVELOPE_FIELD
from lexigram.ai.session.stores.encrypted.store import EncryptedSessionStore
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from lexigram.ai.session.testing import make_turn

from .helpers import keyring
from .raw import RawBackend

Call = Callable[[SessionManagerImpl, str], Awaitable[Any]]

CALLS: dict[str, Call] = {
    "add_turn": lambda m, sid: m.add_turn(sid, make_turn(turn_id="late", content="plain text")),
    "update_metadata": lambda m, sid: m.update(sid, metadata={"m": "CLEAR"}),
    "update_variables": lambda m, sid: m.update(sid, variables={"x": 1}),
    "update_prompt": lambda m, sid: m.update(sid, system_prompt="CLEAR"),
    "get_state": lambda m, sid: m.get_state(sid),
    "get_header": lambda m, sid: m.get_header(sid),
    "get_turns": lambda m, sid: m.get_turns(sid, last=5),
    "list_checkpoints": lambda m, sid: m.list_checkpoints(sid),
    "export_user": lambda m, sid: m.export_user("ivy"),
    "pop_turn": lambda m, sid: m.pop_turn(sid),
    "checkpoint": lambda m, sid: m.checkpoint(sid),
    "checkpoint_metadata": lambda m, sid: m.checkpoint(sid, {"note": "CLEAR"}),
    # manager.checkpoints is the CheckpointManager the container hands out: the same
    # refusals (it stored checkpoint metadata in clear and restored, found by an audit).
    "checkpoints.create": lambda m, sid: m.checkpoints.create(sid),
    "checkpoints.create_metadata": lambda m, sid: m.checkpoints.create(sid, {"note": "CLEAR"}),
    "checkpoints.list": lambda m, sid: m.checkpoints.list(sid),
    "checkpoints.list_turns": lambda m, sid: m.checkpoints.list(sid, include_turns=True),
}


async def _encrypted_session(keyed: SessionManagerImpl) -> str:
    state = await keyed.create("ivy", {"m": "secret meta"}, variables={"v": "secret var"})
    await keyed.add_turn(state.session_id, make_turn(turn_id="t1", content="secret turn"))
    await keyed.checkpoint(state.session_id)
    return state.session_id


async def _unchanged(keyed: SessionManagerImpl, session_id: str) -> None:
    state = await keyed.get_state(session_id)
    assert state is not None
    assert [t.content for t in state.turns] == ["secret turn"]
    assert state.metadata == {"m": "secret meta"} and state.variables == {"v": "secret var"}


@pytest.mark.parametrize("call", sorted(CALLS))
async def test_every_read_and_write_is_refused_naming_the_key(call: str) -> None:
    inner = InMemorySessionStore()
    keyed = SessionManagerImpl(EncryptedSessionStore(inner, keyring("k-2026")))
    session_id = await _encrypted_session(keyed)
    unkeyed = SessionManagerImpl(inner)  # the same storage, no encryption_keys
    with pytest.raises(EncryptionKeyError) as caught:
        await CALLS[call](unkeyed, session_id)
    assert caught.value.key_id == "k-2026" and session_id in str(caught.value)
    assert "encryption_keys is empty" in str(caught.value)
    await _unchanged(keyed, session_id)
    assert len(await keyed.list_checkpoints(session_id)) == 1  # no checkpoint was added


async def test_durable_backends_refuse_the_unkeyed_process(raw_backend: RawBackend) -> None:
    keyed = SessionManagerImpl(EncryptedSessionStore(await raw_backend.make(), keyring("kx")))
    session_id = await _encrypted_session(keyed)
    unkeyed = SessionManagerImpl(await raw_backend.make())
    for name in ("update_metadata", "add_turn", "get_turns", "get_state"):
        with pytest.raises(EncryptionKeyError, match="'kx'"):
            await CALLS[name](unkeyed, session_id)
    await _unchanged(keyed, session_id)


async def test_import_replace_without_keys_refuses_an_encrypted_session(
    raw_backend: RawBackend,
) -> None:
    """``import --replace`` in a process without keys stored an encrypted session's
    values in clear (and dropped its data key); it is refused by key id, before any
    write."""
    from lexigram.ai.session.cli.importing import import_document
    from lexigram.ai.session.cli.transfer import dump_document, session_to_dict

    keyed = SessionManagerImpl(EncryptedSessionStore(await raw_backend.make(), keyring("kx")))
    session_id = await _encrypted_session(keyed)
    state = await keyed.get_state(session_id)
    assert state is not None
    document = dump_document(
        [session_to_dict(state, await keyed.store.list_checkpoints(session_id))]
    )
    before = await raw_backend.dump()
    with pytest.raises(EncryptionKeyError, match="'kx'"):
        await import_document(await raw_backend.make(), document, replace_existing=True)
    assert await raw_backend.dump() == before
    assert b"secret turn" not in before
    await _unchanged(keyed, session_id)


async def test_plaintext_sessions_work_and_are_read_once_per_process() -> None:
    inner = InMemorySessionStore()
    plain = await SessionManagerImpl(inner).create("ivy")  # created by another process
    reads = 0
    load_record = inner.load_record

    async def counting(session_id: str) -> Any:
        nonlocal reads
        reads += 1
        return await load_record(session_id)

    inner.load_record = counting  # type: ignore[method-assign]
    manager = SessionManagerImpl(inner)
    for n in range(5):
        await manager.add_turn(plain.session_id, make_turn(turn_id=f"t{n}", content="hello"))
    await manager.update(plain.session_id, variables={"x": 1})
    assert reads == 1  # the first write checked the header; the rest trusted it
    turns = await manager.get_turns(plain.session_id)
    assert [t.turn_id for t in turns] == [f"t{n}" for n in range(5)]


async def test_plaintext_content_that_looks_sealed_is_still_read() -> None:
    manager = SessionManagerImpl(InMemorySessionStore())
    state = await manager.create("ivy")
    await manager.add_turn(
        state.session_id, make_turn(turn_id="t1", content="lxe1:not really sealed")
    )
    assert [t.content for t in await manager.get_turns(state.session_id)] == [
        "lxe1:not really sealed"
    ]


@pytest.mark.parametrize("where", ["create", "update"])
async def test_the_reserved_metadata_field_is_refused_without_keys(where: str) -> None:
    manager = SessionManagerImpl(InMemorySessionStore())
    reserved = {KEY_ENVELOPE_FIELD: "v1.k.x.y"}
    with pytest.raises(SessionValidationError) as caught:
        if where == "create":
            await manager.create("ivy", reserved)
        else:
            state = await manager.create("ivy")
            await manager.update(state.session_id, metadata=reserved)
    assert caught.value.field == f"metadata.{KEY_ENVELOPE_FIELD}"


async def test_rotation_resumes_only_from_a_cursor_it_printed(raw_backend: RawBackend) -> None:
    from lexigram.ai.session.stores.encrypted.envelopes import envelope_access
    from lexigram.ai.session.stores.encrypted.rotation import rotate_keys

    old = keyring("old")
    store = EncryptedSessionStore(await raw_backend.make(), old)
    manager = SessionManagerImpl(store)
    for _ in range(5):
        await manager.create("ivy")
    both = keyring("new")
    both = type(both)((*both.keys, *old.keys))
    access = envelope_access(store)
    first = await rotate_keys(access, both, batch=2, max_batches=1)
    assert first.cursor is not None and first.cursor.startswith("rc1.")
    rest = await rotate_keys(access, both, batch=2, resume_from=first.cursor)
    assert rest.cursor is None
    assert first.sessions_rewrapped + rest.sessions_rewrapped >= 5
    for bad in ("zzzz", "-5", "rc1.", "rc1.!"):
        with pytest.raises(SessionValidationError) as caught:
            await rotate_keys(access, both, resume_from=bad)
        assert caught.value.field == "resume_from"


async def test_lists_name_sessions_this_process_cannot_open_in_damaged() -> None:
    inner = InMemorySessionStore()
    keyed = SessionManagerImpl(EncryptedSessionStore(inner, keyring("k1")))
    sealed = await _encrypted_session(keyed)
    plain = await SessionManagerImpl(inner).create("ivy")
    for manager in (
        SessionManagerImpl(inner),  # no keys at all
        SessionManagerImpl(EncryptedSessionStore(inner, keyring("k2"))),  # not its key
    ):
        page = await manager.list_sessions("ivy")
        assert [s.session_id for s in page.items] == [plain.session_id]
        assert page.damaged == [sealed]
    page = await keyed.list_sessions("ivy")
    assert {s.session_id for s in page.items} == {plain.session_id, sealed} and not page.damaged


async def test_the_explorer_without_keys_refuses_encrypted_sessions() -> None:
    import httpx

    from lexigram.ai.session.explorer import ExplorerSettings, create_app

    inner = InMemorySessionStore()
    sealed = await _encrypted_session(
        SessionManagerImpl(EncryptedSessionStore(inner, keyring("k1")))
    )
    app = create_app(SessionManagerImpl(inner), ExplorerSettings())
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8765") as http:
        for path in ("/api/session", "/api/session/turns", "/api/session/checkpoints",
                     "/api/session/tree", "/session"):
            answer = await http.get(path, params={"id": sealed})
            assert answer.status_code == 500 and "LEX_ERR_SES_114" in answer.text, path
            assert "lxe1:" not in answer.text and "secret" not in answer.text
        listed = (await http.get("/api/sessions", params={"user": "ivy"})).json()
        assert listed["sessions"] == [] and listed["damaged"] == [sealed]
        # Named as locked under its key, not as a damaged record to delete (an audit).
        assert listed["locked"] == {sealed: "k1"}
        page = (await http.get("/", params={"user": "ivy"})).text
        assert 'id="locked"' in page and "needs key &#x27;k1&#x27;" in page
        assert 'id="damaged"' not in page


async def test_fork_and_merge_without_keys_are_refused_and_change_nothing() -> None:
    from lexigram.ai.session.branching import BranchManager

    inner = InMemorySessionStore()
    keyed = SessionManagerImpl(EncryptedSessionStore(inner, keyring("k1")))
    sealed = await _encrypted_session(keyed)
    branch = await BranchManager(keyed.store).fork(sealed, "b1")
    await keyed.add_turn(branch.session_id, make_turn(turn_id="t2", content="branch turn"))
    unkeyed = BranchManager(inner)
    with pytest.raises(EncryptionKeyError, match="'k1'"):
        await unkeyed.fork(sealed, "b2")
    with pytest.raises(EncryptionKeyError, match="'k1'"):
        await unkeyed.merge(sealed, branch.session_id)
    # Listing the branches handed out their sealed fields as values (an outside audit).
    with pytest.raises(EncryptionKeyError, match="'k1'"):
        await unkeyed.list_branches(sealed)
    await _unchanged(keyed, sealed)
    assert len(await BranchManager(keyed.store).list_branches(sealed)) == 1


@pytest.mark.parametrize(("value", "place"), [(",", 0), (" , ", 0), (",,", 0), ("k1:{k},", 1)])
def test_an_empty_entry_of_the_key_string_is_refused(value: str, place: int) -> None:
    """``"$NEW,$OLD"`` with both unset gave ``","``: accepted as no keys, so encryption
    was silently off; with one unset a key was dropped silently."""
    from lexigram.contracts.exceptions.config import ConfigurationError

    text = value.replace("{k}", new_key_text("k1").split(":", 1)[1])
    with pytest.raises(ConfigurationError, match=rf"encryption_keys\[{place}\]: is empty"):
        parse_keys(text)
    assert parse_keys("") == ()


@pytest.mark.parametrize("value", [" ", "  \t", "\n"])
def test_a_key_string_of_only_whitespace_is_refused(value: str) -> None:
    """Only ``""`` means no keys: ``" "`` (a variable expanding to spaces) turned
    encryption off silently (an outside audit)."""
    from lexigram.contracts.exceptions.config import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"encryption_keys: is only whitespace"):
        parse_keys(value)


def test_key_text_is_strict_base64_in_either_alphabet() -> None:
    import base64

    from lexigram.contracts.exceptions.config import ConfigurationError

    from lexigram.ai.session.encryption.keyring import parse_keys

    raw = bytes(range(200, 232))  # encodes with '+' and '/' in the standard alphabet
    standard = base64.b64encode(raw).decode()
    urlsafe = base64.urlsafe_b64encode(raw).decode()
    assert "+" in standard or "/" in standard
    assert parse_keys(f"a:{standard}")[0].key == parse_keys(f"a:{urlsafe}")[0].key
    assert parse_keys(f"a:{urlsafe.rstrip('=')}")[0].key == raw  # padding optional
    for bad in (
        urlsafe[:10] + " " + urlsafe[10:],
        urlsafe[:10] + "\n" + urlsafe[10:],
        urlsafe[:-2] + "!=",
    ):
        with pytest.raises(ConfigurationError, match=r"encryption_keys\[0\]\.key"):
            parse_keys(f"a:{bad}")


async def _restorable(keyed: SessionManagerImpl) -> tuple[str, str]:
    """An encrypted session with two turns and a checkpoint taken after the first."""
    state = await keyed.create("ivy", {"m": "secret meta"})
    await keyed.add_turn(state.session_id, make_turn(turn_id="t1", content="first"))
    checkpoint = await keyed.checkpoint(state.session_id)
    await keyed.add_turn(state.session_id, make_turn(turn_id="t2", content="second"))
    return state.session_id, checkpoint.checkpoint_id


async def _two_turns(keyed: SessionManagerImpl, session_id: str) -> None:
    state = await keyed.get_state(session_id)
    assert state is not None and [t.content for t in state.turns] == ["first", "second"]


async def test_pop_and_restore_are_refused_before_anything_changes(
    raw_backend: RawBackend,
) -> None:
    """Without keys, with a wrong key under the right id, and with another key alone."""
    inner = await raw_backend.make()
    keys = keyring("k-a")
    keyed = SessionManagerImpl(EncryptedSessionStore(inner, keys))
    session_id, checkpoint_id = await _restorable(keyed)
    others = [
        SessionManagerImpl(await raw_backend.make()),
        SessionManagerImpl(EncryptedSessionStore(await raw_backend.make(), keyring("k-a"))),
        SessionManagerImpl(EncryptedSessionStore(await raw_backend.make(), keyring("k-b"))),
    ]
    for other in others:
        with pytest.raises(EncryptionKeyError, match="'k-a'"):
            await other.pop_turn(session_id)
        with pytest.raises(EncryptionKeyError, match="'k-a'"):
            await other.restore(checkpoint_id)
        with pytest.raises(EncryptionKeyError, match="'k-a'"):
            await other.checkpoints.restore(checkpoint_id)
        with pytest.raises(EncryptionKeyError, match="'k-a'"):
            await other.checkpoints.get(checkpoint_id)
        await _two_turns(keyed, session_id)
    assert (await keyed.pop_turn(session_id)) is not None  # the keyed process still can
    restored = await keyed.restore(checkpoint_id)
    assert [t.content for t in restored.turns] == ["first"]


class _Consolidator:
    """Records what it is given to consolidate."""

    def __init__(self) -> None:
        self.contents: list[str] = []

    async def consolidate(self, entries: list[Any]) -> None:
        self.contents.extend(str(e.content) for e in entries)


async def test_close_suspend_resume_are_refused_before_anything_changes(
    raw_backend: RawBackend,
) -> None:
    """They hand out (suspend, resume) or consolidate (close) the session's content: a
    process that cannot open it is refused with nothing changed (suspend returned the
    sealed text as content, close handed it to the memory consolidator, and behind an
    encrypting store without the session's key the status moved and then the call
    failed). delete works without the key, as clear_turns and erase_user do."""
    keyed = SessionManagerImpl(EncryptedSessionStore(await raw_backend.make(), keyring("k-a")))
    session_id, _ = await _restorable(keyed)
    suspended = (await keyed.create("ivy")).session_id
    await keyed.suspend(suspended)
    memory = _Consolidator()
    others = [
        SessionManagerImpl(await raw_backend.make(), consolidator=memory),
        SessionManagerImpl(
            EncryptedSessionStore(await raw_backend.make(), keyring("k-b")),
            consolidator=memory,
        ),
    ]
    for other in others:
        for call in (other.close, other.suspend):
            with pytest.raises(EncryptionKeyError, match="'k-a'"):
                await call(session_id)
        with pytest.raises(EncryptionKeyError, match="'k-a'"):
            await other.resume(suspended)
        header = await keyed.get_header(session_id)
        assert header is not None and header.status == SessionStatus.ACTIVE
        header = await keyed.get_header(suspended)
        assert header is not None and header.status == SessionStatus.SUSPENDED
        await _two_turns(keyed, session_id)
    assert memory.contents == []
    gone = (await keyed.create("ivy")).session_id
    assert await others[1].delete(gone) is True  # without the session's key
    assert await keyed.get_header(gone) is None


async def test_a_sweeper_without_the_key_expires_and_announces_without_consolidating() -> None:
    """It stored EXPIRED, then failed opening the record: no event or hook, the report
    said expired=0 and the session, EXPIRED now, was never tried again."""
    import asyncio

    from lexigram.hooks import HookRegistry

    from lexigram.ai.session.config import SessionConfig
    from lexigram.ai.session.hooks import HOOK_SESSION_EXPIRED
    from lexigram.ai.session.manager.cleanup import SessionCleanupScheduler

    inner = InMemorySessionStore()
    config = SessionConfig(session_ttl=1, auto_checkpoint_interval=None)
    keyed = SessionManagerImpl(EncryptedSessionStore(inner, keyring("k-a")), config)
    session_id, _ = await _restorable(keyed)
    hooks = HookRegistry("test-sweeper-wrong-key")
    expired: list[str] = []

    async def on_expired(*, payload: Any, **_: Any) -> None:
        expired.append(payload.session_id)

    hooks.register_action(HOOK_SESSION_EXPIRED, on_expired)
    memory = _Consolidator()
    other = SessionManagerImpl(
        EncryptedSessionStore(inner, keyring("k-b")), config, hooks=hooks, consolidator=memory
    )
    await asyncio.sleep(1.1)
    report = await SessionCleanupScheduler(other, purge_after_s=3600).sweep()
    assert report.expired == 1 and expired == [session_id]
    assert memory.contents == []
    header = await keyed.get_header(session_id)
    assert header is not None and header.status == SessionStatus.EXPIRED
    await _two_turns(keyed, session_id)


async def test_plaintext_that_starts_like_a_sealed_value_is_still_consolidated() -> None:
    memory = _Consolidator()
    manager = SessionManagerImpl(InMemorySessionStore(), consolidator=memory)
    session_id = (await manager.create("ivy")).session_id
    await manager.add_message(session_id, "user", "lxe1:abc is my licence token")
    await manager.close(session_id)
    assert memory.contents == ["lxe1:abc is my licence token"]


async def test_export_user_with_keys_that_do_not_open_a_session_names_the_key() -> None:
    # Before: a process with keys, but not the session's, got a normal return with the
    # session only in ``damaged`` (a process without keys got EncryptionKeyError).
    old_key, new_key = new_key_text("k-old"), new_key_text("k-new")
    inner = InMemorySessionStore()
    keyed = SessionManagerImpl(EncryptedSessionStore(inner, Keyring(parse_keys(old_key))))
    sealed = await _encrypted_session(keyed)
    other = SessionManagerImpl(EncryptedSessionStore(inner, Keyring(parse_keys(new_key))))
    readable = await other.create("ivy")
    with pytest.raises(EncryptionKeyError) as caught:
        await other.export_user("ivy")
    assert caught.value.key_id == "k-old" and sealed in str(caught.value)
    both = Keyring(parse_keys(f"{new_key},{old_key}"))
    export = await SessionManagerImpl(EncryptedSessionStore(inner, both)).export_user("ivy")
    assert sorted(s.state.session_id for s in export.sessions) == sorted(
        [sealed, readable.session_id]
    )


async def test_export_user_names_a_damaged_session_when_the_key_is_here() -> None:
    # Before (a regression of the fix above): a tampered sealed field of a session whose
    # key the process holds raised EncryptionKeyError naming that key: no export at all.
    inner = InMemorySessionStore()
    manager = SessionManagerImpl(EncryptedSessionStore(inner, keyring("k-a")))
    good = (await manager.create("ivy")).session_id
    bad = (await manager.create("ivy", variables={"v": "var"})).session_id
    raw = await inner.load(bad)
    assert raw is not None
    sealed = next(iter(raw.variables.values()))
    flipped = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    key = next(iter(raw.variables))
    await inner.save(dataclasses.replace(raw, variables={key: flipped}))
    export = await manager.export_user("ivy")
    assert [s.state.session_id for s in export.sessions] == [good]
    assert export.damaged == [bad]


async def test_export_user_with_other_bytes_under_the_key_id_names_the_key() -> None:
    # Before (a regression of the damaged-session fix): every session was put in
    # ``damaged`` and an empty export returned, with no error.
    inner = InMemorySessionStore()
    keyed = SessionManagerImpl(EncryptedSessionStore(inner, keyring("k-a")))
    sealed = await _encrypted_session(keyed)
    impostor = SessionManagerImpl(EncryptedSessionStore(inner, keyring("k-a")))  # new bytes
    with pytest.raises(EncryptionKeyError) as caught:
        await impostor.export_user("ivy")
    assert caught.value.key_id == "k-a" and sealed in str(caught.value)
    assert not caught.value.value_altered


@pytest.mark.parametrize("call", ["checkpoint", "checkpoint_empty", "checkpoints.create_no_turns"])
async def test_a_wrong_key_checkpoint_is_refused_before_anything_is_written(
    raw_backend: RawBackend, call: str
) -> None:
    """``checkpoint(sid)`` without metadata in a process whose keys do not open the
    session raised EncryptionKeyError after the inner store had stored the checkpoint,
    moved the session's pointer and pruned its oldest checkpoint (an outside audit)."""
    from lexigram.ai.session.config import SessionConfig

    config = SessionConfig(max_checkpoints_per_session=2, auto_checkpoint_interval=None)
    keyed = SessionManagerImpl(
        EncryptedSessionStore(await raw_backend.make(), keyring("k1")), config
    )
    session_id = await _encrypted_session(keyed)  # one checkpoint
    await keyed.checkpoint(session_id, {"label": "B"})
    before = [c.checkpoint_id for c in await keyed.list_checkpoints(session_id)]
    header = await keyed.get_header(session_id)
    wrong = SessionManagerImpl(
        EncryptedSessionStore(await raw_backend.make(), keyring("k2")), config
    )
    attempts: dict[str, Call] = {
        "checkpoint": lambda m, sid: m.checkpoint(sid),
        "checkpoint_empty": lambda m, sid: m.checkpoint(sid, {}),
        "checkpoints.create_no_turns": lambda m, sid: m.checkpoints.create(
            sid, include_turns=False
        ),
    }
    with pytest.raises(EncryptionKeyError, match="'k1'"):
        await attempts[call](wrong, session_id)
    assert [c.checkpoint_id for c in await keyed.list_checkpoints(session_id)] == before
    again = await keyed.get_header(session_id)
    assert header is not None and again is not None
    assert again.checkpoint_id == header.checkpoint_id
    await _unchanged(keyed, session_id)
