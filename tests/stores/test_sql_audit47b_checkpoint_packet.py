"""MariaDB: a checkpoint too large for one statement is refused by name, before it is sent.

An outside audit: ``manager.checkpoint(sid, metadata=<17 MB>)`` and
``checkpoints.create(edited_state)`` copying 9 turns of 2 MB each raised
``StoreUnavailableError`` ("cannot use the session database …: Got a packet bigger than
'max_allowed_packet' bytes"), where appends and updates of the same size are refused
with ``SessionValidationError`` naming the field (docs/backend-sql.md, "Size on
MariaDB"). ``create_checkpoint`` now names ``metadata``; ``save_checkpoint`` names the
part of the checkpoint as its validation does (``checkpoint.metadata``,
``checkpoint.state.variables``, ``checkpoint.state.turns[i]``, and
``checkpoint.state.turns`` for turns that fit one by one but not together).

An update may not grow the header past one statement either (found while fixing the
above): ``update(variables=9 MB)`` and then ``update(metadata=9 MB)`` each fitted alone
and were stored, and every later append failed with ``SessionStoreError`` ("Result of
concat_ws() was larger than max_allowed_packet"), as did its checkpoints; the second
update is refused naming the field it sets, nothing written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionCheckpoint, SessionState

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


def _refused(caught: pytest.ExceptionInfo[SessionValidationError], field: str) -> None:
    assert caught.value.field == field
    assert "max_allowed_packet" in str(caught.value)


async def test_create_checkpoint_with_too_large_metadata_names_metadata(
    store: DatabaseSessionStore,
) -> None:
    limit = store._max_packet
    assert limit is not None
    state = make_state()
    await store.create_session(state)
    sid = state.session_id
    await store.append_turns(sid, [make_turn(1)])
    with pytest.raises(SessionValidationError) as caught:
        await store.create_checkpoint(sid, checkpoint_id="cp-big", metadata={"blob": "x" * limit})
    _refused(caught, "metadata")
    assert await store.list_checkpoints(sid) == []
    # The connection and the session are as they were: a fitting checkpoint is taken.
    checkpoint, _ = await store.create_checkpoint(sid, checkpoint_id="cp-ok", metadata={"a": 1})
    assert checkpoint.state.turn_count == 1
    assert [c.checkpoint_id for c in await store.list_checkpoints(sid)] == ["cp-ok"]


async def test_save_checkpoint_too_large_names_the_part(store: DatabaseSessionStore) -> None:
    limit = store._max_packet
    assert limit is not None
    state = make_state()
    await store.create_session(state)
    sid = state.session_id
    piece = limit // 8  # each turn fits, nine of them do not
    for n in range(9):
        await store.append_turns(sid, [make_turn(n, content=str(n) * piece)])
    stored = await store.load(sid)
    assert stored is not None and stored.turn_count == 9

    def given(
        state_: SessionState | None = None, metadata: dict[str, Any] | None = None
    ) -> SessionCheckpoint:
        return SessionCheckpoint(
            checkpoint_id="cp-given",
            session_id=sid,
            state=state_ or replace(stored, variables={"edited": True}),
            created_at=datetime.now(UTC),
            parent_checkpoint_id=None,
            metadata=metadata or {},
        )

    three = replace(stored, turns=stored.turns[:3], turn_count=3)
    cases = [
        (given(), "checkpoint.state.turns"),
        (given(three, metadata={"blob": "x" * limit}), "checkpoint.metadata"),
        (given(replace(three, variables={"v": "y" * limit})), "checkpoint.state.variables"),
        (
            given(replace(three, turns=[make_turn(0, content="z" * limit)], turn_count=1)),
            "checkpoint.state.turns[0]",
        ),
    ]
    for checkpoint, field in cases:
        with pytest.raises(SessionValidationError) as caught:
            await store.save_checkpoint(checkpoint)
        _refused(caught, field)
        assert await store.load_checkpoint("cp-given") is None
    # What fits is saved, on the same connections.
    await store.save_checkpoint(given(three))
    saved = await store.load_checkpoint("cp-given")
    assert saved is not None and [t.turn_id for t in saved.state.turns] == [
        t.turn_id for t in stored.turns[:3]
    ]


async def test_create_checkpoint_of_a_large_header_names_metadata(
    store: DatabaseSessionStore,
) -> None:
    """The checkpoint's row carries the stored header beside the metadata: both fit alone,
    not together (before: ``StoreUnavailableError``, "Got a packet bigger than ...")."""
    limit = store._max_packet
    assert limit is not None
    state = make_state()
    await store.create_session(state)
    sid = state.session_id
    big = limit * 2 // 5
    await store.update_session(sid, SessionPatch(variables={"v": "x" * big}))
    await store.update_session(sid, SessionPatch(metadata={"m": "y" * big}))
    with pytest.raises(SessionValidationError) as caught:
        await store.create_checkpoint(sid, checkpoint_id="cp-big", metadata={"b": "z" * big})
    _refused(caught, "metadata")
    assert await store.list_checkpoints(sid) == []
    checkpoint, _ = await store.create_checkpoint(sid, checkpoint_id="cp-ok")
    assert checkpoint.state.variables == {"v": "x" * big}


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
