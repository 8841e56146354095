"""The same refusal with and without encryption, before any other check trips on the input.

Found by an outside bad-input audit: an encrypted store raised a raw ``TypeError``
(``unhashable type``) for a list given as a session id to ``delete``, ``purge``,
``purge_batch`` or ``erase_session`` (the plain stores name ``session_id``); and
``create(user, metadata=5)`` raised a raw ``TypeError`` on plaintext stores while the
encrypted ones named ``metadata``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.stores.base import SessionStore
from lexigram.ai.session.stores.encrypted.store import EncryptedSessionStore
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from tests.privacy.helpers import keyring

UNTIL = datetime(2030, 1, 1, tzinfo=UTC)


def _stores() -> list[SessionStore]:
    return [InMemorySessionStore(), EncryptedSessionStore(InMemorySessionStore(), keyring("k"))]


@pytest.mark.parametrize("bad", [["x"], {}, {"a": 1}, 5])
@pytest.mark.parametrize(
    "call",
    ["delete", "purge", "purge_batch", "erase_session", "load_record", "mark_expired"],
)
async def test_an_id_that_is_no_string_is_refused_naming_session_id(call: str, bad: Any) -> None:
    calls = {
        "delete": lambda s: s.delete(bad),
        "purge": lambda s: s.purge(bad, tombstone_until=UNTIL),
        "purge_batch": lambda s: s.purge_batch([bad], tombstone_until=UNTIL),
        "erase_session": lambda s: s.erase_session(bad),
        "load_record": lambda s: s.load_record(bad),
        "mark_expired": lambda s: s.mark_expired(bad),
    }
    for store in _stores():
        with pytest.raises(SessionValidationError) as caught:
            await calls[call](store)
        assert caught.value.field.startswith("session_id"), (type(store).__name__, caught.value)


@pytest.mark.parametrize("metadata", [5, 1.5, True, "x__lexigram_key__", ["__lexigram_key__"]])
async def test_metadata_that_is_no_mapping_is_refused_naming_metadata(metadata: Any) -> None:
    for store in _stores():
        manager = SessionManagerImpl(store)
        with pytest.raises(SessionValidationError) as caught:
            await manager.create("alice", metadata)
        assert caught.value.field == "metadata", (type(store).__name__, caught.value)


@pytest.mark.parametrize("ttl", [10**12, -1, True, 1.5, "60"])
def test_a_store_built_directly_refuses_a_ttl_past_the_bound(ttl: Any) -> None:
    """``SessionConfig`` bounds ``session_ttl`` at a thousand years; a store built directly
    took 10**12 and failed every create with a raw ``OverflowError`` (outside audit)."""
    from lexigram.ai.session.stores.cache import CacheSessionStore
    from lexigram.ai.session.stores.database import DatabaseSessionStore

    makers = [
        lambda: InMemorySessionStore(session_ttl=ttl),
        lambda: DatabaseSessionStore("sqlite+aiosqlite:///:memory:", session_ttl=ttl),
        lambda: CacheSessionStore("redis://127.0.0.1:6379/0", session_ttl=ttl),
    ]
    for make in makers:
        with pytest.raises(SessionValidationError) as caught:
            make()
        assert caught.value.field == "session_ttl"
    store = InMemorySessionStore()
    with pytest.raises(SessionValidationError):
        store.session_ttl = ttl
    store.session_ttl = 3600
    assert store.session_ttl == 3600
