"""Writes guarded by the session's data key, on every backend.

Two encrypting stores over one backend namespace stand for two processes. Process A
keeps the data key of a session; process B deletes the session and creates it again
under the same id (a new data key). A's next write must land sealed under the new key,
so that both read it back: the backend refuses A's write sealed under the old key
(``key_guard``, nothing written) and A seals it again. The store-level contract of
``key_guard`` is checked on the plain backends.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session.exceptions import DataKeyChangedError, SessionNotFoundError
from lexigram.ai.session.stores.base import KEY_ENVELOPE_FIELD, SessionPatch, SessionStore
from lexigram.ai.session.stores.encrypted.store import EncryptedSessionStore

from ..stores.backends import BackendSpec, StoreFactory
from .helpers import PLAIN, header, keyring


def _turn(turn_id: str, content: str) -> SessionTurn:
    return SessionTurn(turn_id=turn_id, role="user", content=content, timestamp=datetime.now(UTC))


async def _two_processes(factory: StoreFactory) -> tuple[SessionStore, SessionStore]:
    """Two encrypting stores, each over its own store of the same namespace."""
    ring = keyring("k1")
    return EncryptedSessionStore(await factory(), ring), EncryptedSessionStore(
        await factory(), ring
    )


async def _created_again_elsewhere(
    a: SessionStore, b: SessionStore, session_id: str, **first: object
) -> None:
    """A writes a session (and keeps its key); B deletes it and creates it again."""
    await a.create_session(header(session_id, **first))
    await a.append_turns(session_id, [_turn("t1", "first life")])
    await b.delete(session_id)
    await b.create_session(header(session_id, variables={"v": "new"}))
    await b.append_turns(session_id, [_turn("t2", "second life")])


@pytest.mark.parametrize("spec", PLAIN)
async def test_a_write_after_the_session_was_created_again_elsewhere_reads_back(
    spec: BackendSpec,
) -> None:
    async with spec.open() as factory:
        a, b = await _two_processes(factory)
        await _created_again_elsewhere(a, b, "s1", variables={"v": "old"})

        await a.append_turns("s1", [_turn("t3", "late from A")])
        await a.update_session("s1", SessionPatch(variables={"v": "set by A"}))

        for reader in (a, b):
            state = await reader.load("s1")
            assert state is not None
            assert [(t.turn_id, t.content) for t in state.turns] == [
                ("t2", "second life"),
                ("t3", "late from A"),
            ]
            assert state.variables == {"v": "set by A"}
            assert state.turn_count == 2


@pytest.mark.parametrize("spec", PLAIN)
async def test_a_plaintext_session_created_again_encrypted_gets_no_plaintext(
    spec: BackendSpec,
) -> None:
    """A read the session as plaintext (written before encryption was on); B replaced it
    with an encrypted one: A's writes are sealed, never stored in clear beside sealed ones."""
    async with spec.open() as factory:
        raw = await factory()
        a, b = await _two_processes(factory)
        await raw.create_session(header("s2"))
        await a.append_turns("s2", [_turn("t1", "plain")])
        await b.delete("s2")
        await b.create_session(header("s2", variables={"v": "sealed"}))

        await a.update_session("s2", SessionPatch(variables={"v": "from A"}))
        await a.append_turns("s2", [_turn("t2", "from A")])

        stored = await raw.load("s2")
        assert stored is not None and KEY_ENVELOPE_FIELD in stored.metadata
        assert "from A" not in repr(stored)  # sealed, not in clear
        state = await b.load("s2")
        assert state is not None
        assert state.variables == {"v": "from A"}
        assert [t.content for t in state.turns] == ["from A"]


@pytest.mark.parametrize("spec", PLAIN)
async def test_a_write_to_a_missing_session_is_refused_without_writing(
    spec: BackendSpec,
) -> None:
    async with spec.open() as factory:
        a, _ = await _two_processes(factory)
        with pytest.raises(SessionNotFoundError):
            await a.append_turns("nobody", [_turn("t1", "x")])
        with pytest.raises(SessionNotFoundError):
            await a.update_session("nobody", SessionPatch(variables={"v": 1}))
        assert await a.load_record("nobody") is None


@pytest.mark.parametrize("spec", PLAIN)
async def test_key_guard_refuses_a_write_under_another_key_and_writes_nothing(
    spec: BackendSpec,
) -> None:
    async with spec.open() as factory:
        store = await factory()
        if not store.supports_key_guard:
            pytest.skip(f"{spec.name} does not guard writes by key")
        envelope = "v1.k1.b3duZXI.c2VhbGVk"
        await store.create_session(header("g1", metadata={KEY_ENVELOPE_FIELD: envelope}))
        for wrong in ("v1.k1.b3duZXI.b3RoZXI", "v1.k1.b3duZXI", envelope + "x"):
            with pytest.raises(DataKeyChangedError) as caught:
                await store.append_turns("g1", [_turn("t1", "x")], key_guard=wrong)
            assert caught.value.session_id == "g1"
            with pytest.raises(DataKeyChangedError):
                await store.update_session("g1", SessionPatch(variables={"v": 1}), key_guard=wrong)
            with pytest.raises(DataKeyChangedError):  # the locked path, two turns and a patch
                await store.append_turns(
                    "g1",
                    [_turn("t1", "x"), _turn("t2", "y")],
                    patch=SessionPatch(variables={"v": 2}),
                    key_guard=wrong,
                )
            with pytest.raises(DataKeyChangedError):
                await store.create_checkpoint(
                    "g1", checkpoint_id="cp-wrong", metadata={"m": 1}, key_guard=wrong
                )
        record = await store.load_record("g1")
        assert record is not None
        assert record.state.turn_count == 0 and record.state.variables == {}
        assert await store.get_turns("g1") == []
        assert await store.list_checkpoint_headers("g1") == []
        made, _ = await store.create_checkpoint(
            "g1", checkpoint_id="cp-right", metadata={"m": 1}, key_guard=envelope
        )
        assert made.checkpoint_id == "cp-right"

        done = await store.append_turns("g1", [_turn("t1", "x")], key_guard=envelope)
        assert done.record.state.turn_count == 1
        updated = await store.update_session(
            "g1", SessionPatch(variables={"v": 3}), key_guard=envelope
        )
        assert updated.state.variables == {"v": 3}
        # A plaintext session holds no envelope: any guard refuses; none applies.
        await store.create_session(header("g2"))
        with pytest.raises(DataKeyChangedError):
            await store.append_turns("g2", [_turn("t1", "x")], key_guard=envelope)
        assert (await store.append_turns("g2", [_turn("t1", "x")])).record.state.turn_count == 1
        # The guard is judged after existence: a missing session is not found.
        with pytest.raises(SessionNotFoundError):
            await store.append_turns("g3", [_turn("t1", "x")], key_guard=envelope)


@pytest.mark.parametrize("spec", PLAIN)
async def test_checkpoints_and_forks_after_the_session_was_created_again_elsewhere(
    spec: BackendSpec,
) -> None:
    async with spec.open() as factory:
        a, b = await _two_processes(factory)
        await _created_again_elsewhere(a, b, "s4")

        made, _ = await a.create_checkpoint("s4", checkpoint_id="cp-a", metadata={"by": "A"})
        assert made.metadata == {"by": "A"}
        branch = header("s4-branch", parent_session_id="s4", branch_name="idea")
        await a.fork_session("s4", branch)

        for reader in (a, b):
            (checkpoint,) = await reader.list_checkpoints("s4")
            assert checkpoint.checkpoint_id == "cp-a" and checkpoint.metadata == {"by": "A"}
            forked = await reader.load("s4-branch")
            assert forked is not None
            assert [t.content for t in forked.turns] == ["second life"]


async def test_without_the_guard_a_checkpoint_is_checked_and_made_again() -> None:
    """On a backend that does not guard writes, a checkpoint whose metadata was sealed
    under a key the session no longer has is deleted and made again under its key."""
    from lexigram.ai.session.stores.in_memory import InMemorySessionStore

    class Unguarded(InMemorySessionStore):
        supports_key_guard = False

    inner = Unguarded()
    ring = keyring("k1")
    a, b = EncryptedSessionStore(inner, ring), EncryptedSessionStore(inner, ring)
    await a.create_session(header("s5"))
    await a.append_turns("s5", [_turn("t1", "first life")])  # A keeps the key
    await b.delete("s5")
    await b.create_session(header("s5"))
    made, _ = await a.create_checkpoint("s5", checkpoint_id="cp-a", metadata={"by": "A"})
    assert made.metadata == {"by": "A"}
    (stored,) = await b.list_checkpoints("s5")
    assert stored.checkpoint_id == "cp-a" and stored.metadata == {"by": "A"}
