"""A branch forked from a session still under an old key is put under the newest key.

A fork copies its source's key envelope. During a rotation a process already holding
the new key forked sessions the rotation had not reached yet; a branch whose id sorted
before the rotation's position was never visited, so a finished ``keys rotate`` left
records under the old key and ``keys retire`` refused (an outside audit: 7-15 records
on SQLite, 379 on Redis).
"""

from __future__ import annotations

from lexigram.ai.session.branching.branch_manager import BranchManager
from lexigram.ai.session.encryption.keyring import Keyring, new_key_text, parse_keys
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.stores.encrypted.envelopes import envelope_access
from lexigram.ai.session.stores.encrypted.rotation import key_usage
from lexigram.ai.session.stores.encrypted.store import EncryptedSessionStore

from .raw import RawBackend


async def test_a_branch_of_an_old_key_session_is_under_the_newest_key(
    raw_backend: RawBackend,
) -> None:
    old, new = new_key_text("k-old"), new_key_text("k-new")
    before = SessionManagerImpl(
        EncryptedSessionStore(await raw_backend.make(), Keyring(parse_keys(old)))
    )
    source = await before.create("ivy", {"m": "secret"})
    await before.add_message(source.session_id, "user", "hello")
    store = EncryptedSessionStore(await raw_backend.make(), Keyring(parse_keys(f"{new},{old}")))
    after = SessionManagerImpl(store)
    branch = await BranchManager(store).fork(source.session_id, "b1")
    access = envelope_access(store)
    assert await key_usage(access, "k-old") == 1  # the source alone, left to the rotation
    assert await key_usage(access, "k-new") == 1
    state = await after.get_state(branch.session_id)
    assert state is not None and [t.content for t in state.turns] == ["hello"]
    assert state.metadata == {"m": "secret"}
    await after.add_message(branch.session_id, "assistant", "hi")  # the new envelope's guard
    only_new = SessionManagerImpl(
        EncryptedSessionStore(await raw_backend.make(), Keyring(parse_keys(new)))
    )
    state = await only_new.get_state(branch.session_id)
    assert state is not None and [t.content for t in state.turns] == ["hello", "hi"]
