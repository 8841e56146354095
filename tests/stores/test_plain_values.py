"""Every backend hands back a turn's values as plain ``str``, ``int`` and a fixed-offset
``datetime``, whatever subclass or zone the caller gave (the in-memory store handed back
the caller's own str Enum, IntEnum and ZoneInfo, the durable ones their plain values)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session.manager.core import SessionManagerImpl
from tests.stores.backends import BackendSpec, all_specs


class Role(str, enum.Enum):  # noqa: UP042 - what user code often has
    USER = "user"


class Tokens(enum.IntEnum):
    FIVE = 5


class Stamp(datetime):
    """A datetime subclass (as some libraries hand out)."""


_SPECS = [
    s for s in all_specs() if s.name in {"in_memory", "sqlite", "postgres", "mariadb", "redis"}
]


@pytest.mark.parametrize("spec", [pytest.param(s, id=s.name, marks=s.marks) for s in _SPECS])
async def test_turn_values_come_back_plain_on_every_backend(spec: BackendSpec) -> None:
    async with spec.open() as make_store:
        manager = SessionManagerImpl(await make_store(), {})
        sid = (await manager.create("ann")).session_id
        paris = datetime(2026, 7, 1, 12, 0, tzinfo=ZoneInfo("Europe/Paris"))
        sub = Stamp(2026, 7, 1, 10, 0, tzinfo=UTC)
        await manager.add_turns(
            sid,
            [
                SessionTurn(
                    turn_id="t1",
                    role=Role.USER,
                    content="hi",
                    timestamp=paris,
                    tokens_used=Tokens.FIVE,
                ),
                SessionTurn(turn_id="t2", role="assistant", content="yo", timestamp=sub),
            ],
        )
        state = await manager.get_state(sid)
        assert state is not None
        first, second = state.turns
        assert type(first.role) is str and str(first.role) == "user"
        assert type(first.tokens_used) is int and first.tokens_used == 5
        assert type(first.timestamp.tzinfo) is timezone
        assert first.timestamp.utcoffset() == timedelta(hours=2)
        assert first.timestamp == paris
        assert (first.timestamp + timedelta(days=180)).utcoffset() == timedelta(hours=2)
        assert type(second.timestamp) is datetime and second.timestamp == sub


@pytest.mark.parametrize("spec", [pytest.param(s, id=s.name, marks=s.marks) for s in _SPECS])
async def test_the_second_of_two_equal_wall_times_comes_back_alike(spec: BackendSpec) -> None:
    """A ZoneInfo time with ``fold=1`` (the repeated hour) kept ``fold=1`` on the
    in-memory store only (equal, but another repr)."""
    stamp = datetime(2026, 11, 1, 1, 30, tzinfo=ZoneInfo("America/New_York"), fold=1)
    async with spec.open() as make_store:
        manager = SessionManagerImpl(await make_store(), {})
        sid = (await manager.create("ann")).session_id
        await manager.add_turns(
            sid, [SessionTurn(turn_id="t", role="user", content="x", timestamp=stamp)]
        )
        state = await manager.get_state(sid)
        assert state is not None
        (turn,) = state.turns
        # (PEP 495: a fold=1 time is never == across zones: compare the instants)
        assert turn.timestamp.timestamp() == stamp.timestamp() and turn.timestamp.fold == 0
        assert turn.timestamp.utcoffset() == timedelta(hours=-5)


class User(str, enum.Enum):  # noqa: UP042 - what user code often has
    ALICE = "enum-alice"


class Ticket(str, enum.Enum):  # noqa: UP042
    T1 = "enum-ticket-1"


@pytest.mark.parametrize("spec", [pytest.param(s, id=s.name, marks=s.marks) for s in _SPECS])
async def test_str_enum_ids_are_one_id_with_their_values_on_every_backend(
    spec: BackendSpec,
) -> None:
    """Redis keyed a str Enum id by its name (``{User.ALICE}``) while storing its value:
    listings by the value found nothing and ``erase_user`` erased nothing (an audit)."""
    async with spec.open() as make_store:
        manager = SessionManagerImpl(await make_store(), {})
        state = await manager.create(User.ALICE, session_id=Ticket.T1)
        assert type(state.user_id) is str and type(state.session_id) is str
        assert [s.session_id for s in (await manager.list_sessions("enum-alice")).items] == [
            "enum-ticket-1"
        ]
        assert await manager.get_header("enum-ticket-1") is not None
        report = await manager.erase_user(User.ALICE)
        assert report.sessions == ["enum-ticket-1"]
        assert await manager.get_header(Ticket.T1) is None
