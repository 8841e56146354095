"""MariaDB: updates may not grow a session's header past one statement.

Found while fixing the checkpoint refusals of an outside audit: ``update(variables=9 MB)``
and then ``update(metadata=9 MB)`` each fitted ``max_allowed_packet`` alone (16 MiB) and
were stored, and every later append to the session failed with ``SessionStoreError``
("Result of concat_ws() was larger than max_allowed_packet": the append procedure
hashes the header's fields together), as did its checkpoints. The second update is now
refused with ``SessionValidationError`` naming the field it sets, nothing written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.stores.base import SessionPatch
from lexigram.ai.session.stores.database import DatabaseSessionStore
from lexigram.ai.session.testing.support import make_state, make_turn
from tests.services import MARIADB_URL

pytestmark = pytest.mark.mariadb


@pytest.fixture
async def store(mariadb_prefix: str) -> AsyncIterator[DatabaseSessionStore]:
    made = DatabaseSessionStore(MARIADB_URL, table_prefix=mariadb_prefix)
    await made.initialize()
    try:
        yield made
    finally:
        await made.close()


async def test_an_update_that_would_outgrow_the_packet_is_refused(
    store: DatabaseSessionStore,
) -> None:
    limit = store._max_packet
    assert limit is not None
    state = make_state()
    await store.create_session(state)
    sid = state.session_id
    big = limit * 11 // 20  # fits alone, two of them do not
    await store.update_session(sid, SessionPatch(variables={"v": "x" * big}))
    with pytest.raises(SessionValidationError) as caught:
        await store.update_session(sid, SessionPatch(metadata={"m": "y" * big}))
    assert caught.value.field == "metadata"
    assert "max_allowed_packet" in str(caught.value)
    record = await store.load_record(sid)
    assert record is not None and record.state.metadata == {}
    # The session still takes turns and checkpoints, and a header that fits is stored.
    await store.append_turns(sid, [make_turn(1), make_turn(2)])
    await store.update_session(sid, SessionPatch(metadata={"m": "y" * (limit * 2 // 5)}))
    await store.append_turns(sid, [make_turn(3)])
    checkpoint, _ = await store.create_checkpoint(sid, checkpoint_id="cp")
    assert checkpoint.state.turn_count == 3
    loaded = await store.load(sid)
    assert loaded is not None and loaded.turn_count == 3
    assert len(loaded.metadata["m"]) == limit * 2 // 5
