"""Lost replies on PostgreSQL and MariaDB (audit 47): what the caller is told, what is stored.

* A read-only snapshot's ``COMMIT`` whose reply is lost is a read: retried, never
  ``WriteOutcomeUnknownError``.
* A write whose commit reply was lost and whose re-send then cannot reach the server
  is ``WriteOutcomeUnknownError``: it may have been applied (a plain
  ``StoreUnavailableError`` says nothing was).
* ``delete`` re-sent after a lost reply removes the session it found, never one
  created again under the same id meanwhile; ``save`` re-sent never overwrites what
  another writer stored after it.
* ``create_session`` whose reply is lost is settled by reading the id back.

Each test checks what is stored through a second store that does not go through the
loopback proxy (``tests/faults/proxy.py``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest
from lexigram.contracts.ai.session import SessionState, SessionStatus
from sqlalchemy import text

from lexigram.ai.session.exceptions import StoreUnavailableError, WriteOutcomeUnknownError
from lexigram.ai.session.stores.database import DatabaseSessionStore
from tests.faults.sql_pair import (
    COMMIT,
    SERVER_PARAMS,
    T0,
    Pair,
    header,
    open_pair,
    turn,
)

TTL = 3600


@pytest.fixture(params=SERVER_PARAMS)
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    """Two stores on one random table prefix; the proxied one goes through a FaultProxy."""
    async with open_pair(request.param, TTL) as made:
        yield made


async def _session(store: DatabaseSessionStore, turns: int = 1) -> tuple[SessionState, list[str]]:
    state = header()
    await store.create_session(state)
    made = [turn(i) for i in range(1, turns + 1)]
    for item in made:
        await store.append_turns(state.session_id, [item])
    return state, [t.turn_id for t in made]


async def _ids(store: DatabaseSessionStore, session_id: str) -> list[str]:
    return [t.turn_id for t in await store.get_turns(session_id)]


# ------------------------------------------------------------------ S2: reads
async def test_a_lost_reply_to_a_snapshot_reads_commit_is_retried(pair: Pair) -> None:
    state, ids = await _session(pair.direct)
    await pair.direct.create_checkpoint(state.session_id, checkpoint_id=f"cp-{uuid.uuid4().hex}")
    [cp] = await pair.direct.list_checkpoint_headers(state.session_id)
    await pair.proxied.ping()
    reads = [
        lambda: pair.proxied.load_checkpoint(cp.checkpoint_id),
        lambda: pair.proxied.list_checkpoints(state.session_id),
        lambda: pair.proxied.list_sessions(state.user_id),
    ]
    for read in reads:
        dropped = pair.proxy.replies_dropped
        pair.proxy.drop_next_reply(match=COMMIT)
        assert await read()  # found, not WriteOutcomeUnknownError
        assert pair.proxy.replies_dropped == dropped + 1
    # A restore whose snapshot read loses its reply is applied once.
    await pair.direct.append_turns(state.session_id, [turn(5)])
    pair.proxy.drop_next_reply(match=COMMIT)
    loaded = await pair.proxied.load_checkpoint(cp.checkpoint_id)
    assert loaded is not None and [t.turn_id for t in loaded.state.turns] == ids
    restored = await pair.proxied.restore_checkpoint(cp.checkpoint_id)
    assert [t.turn_id for t in restored.turns] == ids
    assert await _ids(pair.direct, state.session_id) == ids
    record = await pair.direct.load_record(state.session_id)
    assert record is not None and record.state.turn_count == 1


# ------------------------------------------- S3: lost reply, then cannot connect
@pytest.mark.parametrize("turns", [1, 2], ids=["one_turn", "batch"])
async def test_a_lost_append_reply_then_no_connection_is_outcome_unknown(
    pair: Pair, turns: int
) -> None:
    state, ids = await _session(pair.direct)
    mine = [turn(10 + i) for i in range(turns)]

    async def server_goes_away() -> None:
        pair.proxy.max_connections = 0  # every new connection is closed on accept
        pair.proxy.drop_connections()

    await pair.proxied.ping()
    pair.proxy.drop_next_reply(match=mine[-1].turn_id.encode(), before_close=server_goes_away)
    with pytest.raises(WriteOutcomeUnknownError) as info:
        await pair.proxied.append_turns(state.session_id, mine)
    assert isinstance(info.value, StoreUnavailableError)
    assert info.value.code == "LEX_ERR_SES_113"
    assert "may or may not have been applied" in str(info.value)
    assert pair.proxy.replies_dropped == 1
    # It was applied: the caller was not told "nothing was sent".
    assert await _ids(pair.direct, state.session_id) == ids + [t.turn_id for t in mine]


async def test_a_lost_append_reply_whose_replay_read_fails_is_outcome_unknown(
    pair: Pair,
) -> None:
    """The re-send ran into its own stored turn, then reading the outcome failed."""
    state, ids = await _session(pair.direct)
    mine = turn(30)
    header_read = f"ordinal FROM {pair.direct.table_prefix}sessions WHERE session_id".encode()
    await pair.proxied.ping()
    pair.proxy.drop_next_reply(match=mine.turn_id.encode())
    for _ in range(30):  # every attempt of the replay read is cut before it is sent
        pair.proxy.cut_before_request(match=header_read)
    with pytest.raises(WriteOutcomeUnknownError) as info:
        await pair.proxied.append_turns(state.session_id, [mine])
    assert "may or may not have been applied" in str(info.value)
    assert pair.proxy.replies_dropped == 1 and pair.proxy.cuts >= 1
    pair.proxy.reset()
    assert await _ids(pair.direct, state.session_id) == [*ids, mine.turn_id]


async def test_a_connect_failure_alone_is_still_plain_unavailable(pair: Pair) -> None:
    """Nothing was sent (no connection could be opened): plain ``StoreUnavailableError``."""
    state, ids = await _session(pair.direct)
    pair.proxy.max_connections = 0
    fresh = DatabaseSessionStore(
        pair.url, table_prefix=pair.direct.table_prefix, pool_size=2
    )
    try:
        with pytest.raises(StoreUnavailableError) as info:
            await fresh.append_turns(state.session_id, [turn(9)])
    finally:
        await fresh.close()
    assert not isinstance(info.value, WriteOutcomeUnknownError)
    assert await _ids(pair.direct, state.session_id) == ids


# ------------------------------------------- S1: re-sends after a lost reply
async def test_a_delete_re_sent_after_a_lost_reply_spares_the_session_created_again(
    pair: Pair,
) -> None:
    state, _ = await _session(pair.direct, turns=2)
    again = turn(20)

    async def created_again() -> None:  # another process, before the re-send
        await pair.direct.create_session(replace_id(state))
        await pair.direct.append_turns(state.session_id, [again])

    await pair.proxied.ping()
    pair.proxy.drop_next_reply(match=COMMIT, before_close=created_again)
    await pair.proxied.delete(state.session_id)
    assert pair.proxy.replies_dropped == 1
    # The first attempt deleted the old session; the re-send left the new one alone.
    assert await _ids(pair.direct, state.session_id) == [again.turn_id]
    record = await pair.direct.load_record(state.session_id)
    assert record is not None and record.state.turn_count == 1


async def test_a_delete_re_sent_after_a_rollback_still_deletes(pair: Pair) -> None:
    state, _ = await _session(pair.direct, turns=2)
    await pair.proxied.ping()
    pair.proxy.cut_before_request(match=COMMIT)  # never committed: the re-send deletes
    await pair.proxied.delete(state.session_id)
    assert pair.proxy.cuts == 1
    assert await pair.direct.load_record(state.session_id) is None


async def test_a_quarantine_re_sent_after_a_lost_reply_spares_the_session_created_again(
    pair: Pair,
) -> None:
    state, _ = await _session(pair.direct, turns=1)

    async def created_again() -> None:  # deleted by an operator, the id used again
        await pair.direct.delete(state.session_id)
        await pair.direct.create_session(replace_id(state))

    await pair.proxied.ping()
    pair.proxy.drop_next_reply(match=COMMIT, before_close=created_again)
    await pair.proxied.quarantine(state.session_id)
    assert pair.proxy.replies_dropped == 1
    record = await pair.direct.load_record(state.session_id)  # healthy, not quarantined
    assert record is not None and record.state.status == SessionStatus.ACTIVE
    assert record.state.created_at == T0 + timedelta(seconds=30)


async def test_a_quarantine_whose_reply_is_lost_is_applied(pair: Pair) -> None:
    state, _ = await _session(pair.direct, turns=1)
    await pair.proxied.ping()
    pair.proxy.drop_next_reply(match=COMMIT)
    await pair.proxied.quarantine(state.session_id)
    assert pair.proxy.replies_dropped == 1
    async with pair.direct.engine.connect() as conn:
        status = (
            await conn.execute(
                text(
                    f"SELECT status FROM {pair.direct.table_prefix}sessions "
                    "WHERE session_id = :s"
                ),
                {"s": state.session_id},
            )
        ).scalar()
    assert status == "quarantined:active"


def replace_id(state: SessionState) -> SessionState:
    """A new session under ``state``'s id (same user), created now."""
    return SessionState(
        session_id=state.session_id,
        user_id=state.user_id,
        status=SessionStatus.ACTIVE,
        created_at=T0 + timedelta(seconds=30),
        updated_at=T0 + timedelta(seconds=30),
    )


async def test_a_save_re_sent_after_a_rollback_changing_only_the_status_is_applied(
    pair: Pair,
) -> None:
    """A re-send that judged "my first attempt committed" from the saved columns found a
    session without turns "as written" when its COMMIT never arrived, and returned
    success with nothing stored (a regression audit). A re-send saves again."""
    state = header()
    await pair.direct.create_session(state)
    await pair.proxied.ping()
    pair.proxy.cut_before_request(match=COMMIT)
    await pair.proxied.save(replace(state, status=SessionStatus.SUSPENDED))
    assert pair.proxy.cuts == 1
    loaded = await pair.direct.load(state.session_id)
    assert loaded is not None and loaded.status is SessionStatus.SUSPENDED


async def test_a_save_re_sent_after_a_rollback_is_applied(pair: Pair) -> None:
    state, _ = await _session(pair.direct, turns=2)
    doc = replace(state, turns=[turn(7)], turn_count=1, total_tokens=2, total_cost=0.25)
    await pair.proxied.ping()
    pair.proxy.cut_before_request(match=COMMIT)
    await pair.proxied.save(doc)
    assert pair.proxy.cuts == 1
    assert await _ids(pair.direct, state.session_id) == [doc.turns[0].turn_id]


# ------------------------------------------------- S4: create, reply lost
async def test_a_create_whose_reply_is_lost_is_settled_by_reading_it_back(pair: Pair) -> None:
    state = replace(header(), turns=[turn(1)], turn_count=1, total_tokens=2, total_cost=0.25)
    await pair.proxied.ping()
    pair.proxy.drop_next_reply(match=COMMIT)
    record = await pair.proxied.create_session(state, max_live_per_user=1)
    assert pair.proxy.replies_dropped == 1
    assert record.state.session_id == state.session_id and record.state.turn_count == 1
    # Stored once, counted once.
    assert await pair.direct.count_live_sessions(state.user_id) == 1
    assert await _ids(pair.direct, state.session_id) == [state.turns[0].turn_id]


async def test_a_create_whose_commit_never_arrived_is_run_again(pair: Pair) -> None:
    state = header()
    await pair.proxied.ping()
    pair.proxy.cut_before_request(match=COMMIT)  # unsure to the store, not applied
    record = await pair.proxied.create_session(state, max_live_per_user=1)
    assert pair.proxy.cuts == 1
    assert record.state.session_id == state.session_id
    assert await pair.direct.count_live_sessions(state.user_id) == 1


async def test_a_create_left_unknown_names_its_session(pair: Pair) -> None:
    state = header()

    async def server_goes_away() -> None:
        pair.proxy.max_connections = 0
        pair.proxy.drop_connections()

    await pair.proxied.ping()
    pair.proxy.drop_next_reply(match=COMMIT, before_close=server_goes_away)
    with pytest.raises(WriteOutcomeUnknownError) as info:
        await pair.proxied.create_session(state)
    assert info.value.code == "LEX_ERR_SES_113"
    assert info.value.details["session_id"] == state.session_id
    assert getattr(info.value, "session_id", None) == state.session_id
    assert state.session_id in str(info.value)
    assert await pair.direct.load_record(state.session_id) is not None  # it was applied
