"""An encrypted session under the longest id allowed takes turns on every backend.

The id is written into the session's key envelope, which MariaDB's append procedure
received as ``VARCHAR(1024)``: JSON escapes an emoji to 12 characters, so a session of
180 or more emoji was created and then refused every append with a raw ``(1406, "Data
too long for column 'kg'")`` (found by an outside audit).
"""

from __future__ import annotations

from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.stores.encrypted.store import EncryptedSessionStore

from .helpers import keyring
from .raw import RawBackend


async def test_the_longest_id_takes_turns_with_encryption_on(raw_backend: RawBackend) -> None:
    manager = SessionManagerImpl(
        EncryptedSessionStore(await raw_backend.make(), keyring("k-long")),
        {"auto_checkpoint_interval": None},
    )
    for session_id in ("\U0001F600" * 255, "\u00e9" * 255, "x" * 255):
        await manager.create("long-ids", session_id=session_id)
        await manager.add_message(session_id, "user", "hello")
        await manager.add_message(session_id, "assistant", "hi")
        state = await manager.get_state(session_id)
        assert state is not None and [t.content for t in state.turns] == ["hello", "hi"]
        await manager.delete(session_id)
