"""A stored end whose follow-up read fails is still reported done and announced (an
outside audit: with a consolidator, the store unreachable right after a close or the
turn cap's append made the call raise StoreUnavailableError and fire no close event,
while the session was stored closed; the retry was refused as closed -> closed)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from lexigram.contracts.ai.session import SessionStatus, SessionTurn

from lexigram.ai.session import InMemorySessionStore, SessionConfig
from lexigram.ai.session.events import SessionClosedEvent
from lexigram.ai.session.exceptions import StoreUnavailableError
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.testing import make_turn

from .test_events_support import RecordingBus, RecordingConsolidator


class _GoneAfterTheEnd(InMemorySessionStore):
    """The real in-memory store; once a session is stored closed, reading its turns
    fails as a server that went away after the write's reply does."""

    async def get_turns(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after_seq: int | None = None,
        limit: int | None = None,
    ) -> list[SessionTurn]:
        record = await self.load_record(session_id)
        if record is not None and record.state.status == SessionStatus.CLOSED:
            raise StoreUnavailableError("cannot connect to the session database (test)")
        return await super().get_turns(session_id, last=last, after_seq=after_seq, limit=limit)


def _manager(**config: object) -> tuple[SessionManagerImpl, RecordingBus, RecordingConsolidator]:
    bus, consolidator = RecordingBus(), RecordingConsolidator()
    manager = SessionManagerImpl(
        _GoneAfterTheEnd(),
        SessionConfig(auto_checkpoint_interval=None, session_ttl=0, **config),  # type: ignore[arg-type]
        event_bus=bus,
        consolidator=consolidator,
    )
    return manager, bus, consolidator


async def test_close_is_done_and_announced_when_the_consolidation_read_fails() -> None:
    manager, bus, _ = _manager()
    sid = (await manager.create("fay")).session_id
    await manager.add_turn(sid, make_turn(1))
    await manager.close(sid)  # no StoreUnavailableError: the close is stored
    assert [e.reason for e in bus.of(SessionClosedEvent)] == ["closed"]
    state = await manager.get_state(sid)
    assert state is not None and state.status == SessionStatus.CLOSED


@pytest.mark.parametrize("batch", [False, True])
async def test_the_turn_cap_is_done_and_announced_when_the_consolidation_read_fails(
    batch: bool,
) -> None:
    manager, bus, _ = _manager(max_turns_per_session=2)
    sid = (await manager.create("fay")).session_id
    await manager.add_turn(sid, make_turn(1))
    turns: Sequence[SessionTurn] = [make_turn(2)]
    if batch:
        await manager.add_turns(sid, list(turns))
    else:
        await manager.add_turn(sid, turns[0])
    assert [e.reason for e in bus.of(SessionClosedEvent)] == ["max_turns"]
    record = await manager.store.load_record(sid)
    assert record is not None and record.state.turn_count == 2
    assert record.state.status == SessionStatus.CLOSED
