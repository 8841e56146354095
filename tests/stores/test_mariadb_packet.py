"""MariaDB: a write longer than the server's ``max_allowed_packet`` is refused by name.

The server would drop the connection mid-statement (an "unreachable database" error,
with nothing stored); the store measures the values first and raises
``SessionValidationError`` naming the field, before anything is sent. The same data
fits on every other backend (none has such a limit), so only MariaDB refuses it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.stores.base import SessionPatch
from lexigram.ai.session.stores.database import DatabaseSessionStore
from lexigram.ai.session.stores.sql.packet import PACKET_MARGIN, check_packet
from lexigram.ai.session.testing.support import make_state, make_turn
from tests.services import MARIADB_URL


@pytest.fixture
async def store(mariadb_prefix: str) -> AsyncIterator[DatabaseSessionStore]:
    made = DatabaseSessionStore(MARIADB_URL, table_prefix=mariadb_prefix)
    await made.initialize()
    try:
        yield made
    finally:
        await made.close()


@pytest.mark.mariadb
async def test_too_large_writes_are_refused_naming_the_field(
    store: DatabaseSessionStore,
) -> None:
    limit = store._max_packet
    assert limit is not None and limit >= 1024 * 1024
    state = make_state()
    await store.create_session(state)
    sid = state.session_id
    small = make_turn(1, content="fits")
    # NUL is sent escaped: 1/6 of the limit in characters is 7/6 of it in bytes (JSON
    # writes \u0000, the driver doubles the backslash).
    huge = make_turn(2, content="\x00" * (limit // 6))
    with pytest.raises(SessionValidationError) as caught:
        await store.append_turns(sid, [small, huge])
    assert caught.value.field == "turns[1]"
    assert "max_allowed_packet" in str(caught.value)
    with pytest.raises(SessionValidationError) as caught:
        await store.update_session(sid, SessionPatch(variables={"v": "x" * limit}))
    assert caught.value.field == "variables"
    record = await store.load_record(sid)
    assert record is not None and record.state.turn_count == 0 and record.state.variables == {}
    # Just under the limit still goes through, and the connection stays usable.
    fitting = make_turn(3, content="y" * (limit - 2 * PACKET_MARGIN))
    await store.append_turns(sid, [fitting])
    assert [t.content for t in await store.get_turns(sid)] == [fitting.content]


def test_the_measure_counts_escapes_and_utf8() -> None:
    check_packet(None, [{"data": "x" * 10**8}])  # no limit: never refused
    room = 10 * PACKET_MARGIN
    check_packet(room + PACKET_MARGIN, [{"data": "é" * (room // 2)}])  # 2 bytes each
    with pytest.raises(SessionValidationError) as caught:
        check_packet(room + PACKET_MARGIN, [{"data": "é" * (room // 2 + 1)}])
    assert caught.value.field == "turns[0]"
    with pytest.raises(SessionValidationError) as caught:
        check_packet(room + PACKET_MARGIN, [{"data": "\\" * (room // 2 + 1)}])
    assert caught.value.field == "turns[0]"
    with pytest.raises(SessionValidationError) as caught:
        check_packet(room + PACKET_MARGIN, [{"data": "a" * (room // 2 + 1)}] * 2)
    assert caught.value.field == "turns"
