"""MariaDB: appends answered without the header when the store already holds it.

``stores/sql/mysql_replies.py``: the store tells the append procedure which header it
holds (a fingerprint of the columns an append leaves alone, and the counters); the
procedure answers with no result set when that is the header it locked, and the
store computes the new one. Every header an append returns here is compared with
the header read back from the database, across the changes another store (another
process) makes in between: appends, patches, pops, restores, a session deleted and
created again under the same id, the cap, the deadline, encryption.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionStatus

from lexigram.ai.session.encryption.keyring import Keyring, new_key_text, parse_keys
from lexigram.ai.session.exceptions import SessionClosedError
from lexigram.ai.session.stores.base import AppendResult, SessionPatch, SessionStore
from lexigram.ai.session.stores.database import DatabaseSessionStore
from lexigram.ai.session.stores.encrypted.store import EncryptedSessionStore
from lexigram.ai.session.stores.sql import ops_turns
from lexigram.ai.session.stores.sql.mysql_replies import HeaderReplies, expectation, moved
from lexigram.ai.session.stores.sql.mysql_routines import append_procedure
from lexigram.ai.session.stores.sql.rows import HEADER_COLUMNS
from lexigram.ai.session.testing.support import FakeClock, make_state
from tests.stores.test_mariadb_appends import T0, TTL, _sql, opened, turn

pytestmark = pytest.mark.mariadb

AT = {name: i for i, name in enumerate(HEADER_COLUMNS)}


async def new_session(store: SessionStore, **fields: Any) -> str:
    """The id of a new session created at T0 with ``fields``."""
    state = make_state(created_at=T0, updated_at=T0, **fields)
    await store.create_session(state)
    return state.session_id


@pytest.fixture
def derived(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the appends whose header the store computed (no header came back)."""
    calls: list[int] = []

    def counting(row: Any, params: dict[str, Any]) -> list[Any]:
        calls.append(1)
        return moved(row, params)

    monkeypatch.setattr(ops_turns, "moved", counting)
    return calls


async def _check(store: DatabaseSessionStore, result: AppendResult, sid: str) -> None:
    """The header an append returned is the one stored (and so is the record's rest)."""
    stored = await store.load_record(sid)
    assert stored is not None
    assert result.record.state == stored.state
    assert (result.record.expires_at, result.record.last_seq, result.record.fork_seq) == (
        stored.expires_at,
        stored.last_seq,
        stored.fork_seq,
    )


# ------------------------------------------------------------------- the rules
def _row(**values: Any) -> list[Any]:
    row: list[Any] = [None] * len(HEADER_COLUMNS)
    defaults = {
        "status": "active", "turn_count": 4, "last_seq": 9, "total_tokens": 10,
        "total_cost": 0.1, "updated_at": 1_000, "expires_at": None,
    }
    for name, value in {**defaults, **values}.items():
        row[AT[name]] = value
    return row


def _params(**values: Any) -> dict[str, Any]:
    params = {
        "n": 2, "tokens": 5, "c1": 0.2, "c2": 0.3, "now": 2_000, "max": 100, "expires": None,
    }
    params.update(values)
    return params


def test_moved_adds_the_costs_one_turn_at_a_time() -> None:
    new = moved(_row(total_cost=1e16), _params(c1=1.0, c2=1.0))
    assert new[AT["total_cost"]] == 1e16  # (1e16 + 1) + 1, not 1e16 + 2
    assert moved(_row(), _params())[AT["total_cost"]] == (0.1 + 0.2) + 0.3
    assert moved(_row(), _params(n=1, c2=None))[AT["total_cost"]] == 0.1 + 0.2


def test_moved_counts_and_numbers_the_turns() -> None:
    new = moved(_row(), _params())
    assert (new[AT["turn_count"]], new[AT["last_seq"]], new[AT["total_tokens"]]) == (6, 11, 15)
    assert new[AT["status"]] == "active"


def test_moved_closes_at_the_cap_and_drops_the_deadline() -> None:
    new = moved(_row(expires_at=5_000), _params(max=6, expires=3_000))
    assert new[AT["status"]] == "closed" and new[AT["expires_at"]] is None
    assert moved(_row(), _params(max=7))[AT["status"]] == "active"


def test_moved_keeps_the_later_time_and_deadline() -> None:
    assert moved(_row(updated_at=5_000), _params(now=2_000))[AT["updated_at"]] == 5_000
    assert moved(_row(updated_at=1_000), _params(now=2_000))[AT["updated_at"]] == 2_000
    assert moved(_row(expires_at=9_000), _params(expires=8_000))[AT["expires_at"]] == 9_000
    assert moved(_row(expires_at=7_000), _params(expires=8_000))[AT["expires_at"]] == 8_000
    assert moved(_row(expires_at=None), _params(expires=8_000))[AT["expires_at"]] == 8_000
    assert moved(_row(expires_at=7_000), _params(expires=None))[AT["expires_at"]] is None


def test_moved_leaves_the_held_row_as_it_was() -> None:
    row = _row()
    before = list(row)
    moved(row, _params())
    assert row == before


def test_the_copies_are_bounded_oldest_first() -> None:
    replies = HeaderReplies(size=3)
    for i in range(5):
        replies.keep(f"s{i}", _row(), "f")
    assert len(replies) == 3
    assert replies.get("s0") is None and replies.get("s1") is None
    replies.keep("s2", _row(turn_count=7), "g")  # replacing one evicts nothing
    assert len(replies) == 3 and replies.get("s4") is not None
    held = replies.get("s2")
    assert held is not None and held[1] == "g"
    params = expectation(*held)
    assert (params["e_fp"], params["e_count"], params["e_expires"]) == ("g", 7, None)
    replies.forget("s2")
    replies.forget("absent")
    assert replies.get("s2") is None and len(replies) == 2


def test_the_copies_hold_a_bounded_amount_of_text() -> None:
    replies = HeaderReplies(size=100, budget=64 * 100)
    big = _row(metadata="m" * 60, variables="v" * 30)  # 96 characters with "active"
    for i in range(100):
        replies.keep(f"s{i}", big, "f")
    assert replies.chars == 66 * 96 and len(replies) == 66
    assert replies.get("s99") is not None and replies.get("s0") is None
    # Over a 64th of the budget: not kept, and what was held for it is dropped.
    replies.keep("s99", _row(metadata="m" * 101), "g")
    assert replies.get("s99") is None and replies.chars == 65 * 96
    for i in range(100):
        replies.forget(f"s{i}")
    assert replies.chars == 0 and len(replies) == 0


# ---------------------------------------------------------- against MariaDB
async def test_a_store_computes_the_header_of_its_own_appends(
    mariadb_prefix: str, derived: list[int]
) -> None:
    clock = FakeClock(T0)
    async with opened(mariadb_prefix, clock) as store:
        sid = await new_session(store, metadata={"plan": "pro"})
        first = await store.append_turns(sid, [turn(1)])
        assert derived == []  # nothing held yet: the header came back
        await _check(store, first, sid)
        for n in range(2, 12, 2):
            clock.advance(1)
            result = await store.append_turns(sid, [turn(n), turn(n + 1, cost=0.7)])
            await _check(store, result, sid)
        assert len(derived) == 5
        assert result.record.state.metadata == {"plan": "pro"}
        assert result.record.expires_at == T0 + timedelta(seconds=5 + TTL)


async def test_the_cap_closes_the_session_on_the_computed_path(
    mariadb_prefix: str, derived: list[int]
) -> None:
    async with opened(mariadb_prefix) as store:
        sid = await new_session(store)
        await store.append_turns(sid, [turn(1)], max_turns=3)
        result = await store.append_turns(sid, [turn(2), turn(3)], max_turns=3)
        assert derived == [1]
        assert result.closed_by_cap and result.record.state.status == SessionStatus.CLOSED
        assert result.record.expires_at is None
        await _check(store, result, sid)
        with pytest.raises(SessionClosedError):
            await store.append_turns(sid, [turn(4)], max_turns=3)
        assert derived == [1]


async def test_an_encrypted_session_reads_its_computed_header(
    mariadb_prefix: str, derived: list[int]
) -> None:
    async with opened(mariadb_prefix) as inner:
        store = EncryptedSessionStore(inner, Keyring(parse_keys(new_key_text("k1"))))
        sid = await new_session(store, metadata={"ssn": "078-05-1120"})
        for n in range(1, 5):
            result = await store.append_turns(sid, [turn(n)])
        assert len(derived) == 3
        assert result.record.state.metadata == {"ssn": "078-05-1120"}
        stored = await store.load_record(sid)
        assert stored is not None and result.record.state == stored.state


Change = Callable[[DatabaseSessionStore, str, int], Any]


async def _append_other(other: DatabaseSessionStore, sid: str, n: int) -> None:
    await other.append_turns(sid, [turn(1000 + n)])


async def _patch(other: DatabaseSessionStore, sid: str, n: int) -> None:
    await other.update_session(sid, SessionPatch(metadata={"v": n}, variables={"x": [n]}))


async def _pop(other: DatabaseSessionStore, sid: str, n: int) -> None:
    await other.pop_turn(sid)


async def _restore(other: DatabaseSessionStore, sid: str, n: int) -> None:
    checkpoint, _ = await other.create_checkpoint(sid, checkpoint_id=f"cp{n}")
    await other.append_turns(sid, [turn(2000 + n, cost=3.0)])
    await other.restore_checkpoint(checkpoint.checkpoint_id)


@pytest.mark.parametrize(
    "change", [_append_other, _patch, _pop, _restore], ids=lambda f: f.__name__
)
async def test_a_change_made_elsewhere_sends_the_header_back(
    mariadb_prefix: str, derived: list[int], change: Change
) -> None:
    clock = FakeClock(T0)
    async with opened(mariadb_prefix, clock) as mine, opened(mariadb_prefix, clock) as other:
        sid = await new_session(mine, metadata={"v": 0})
        await mine.append_turns(sid, [turn(1)])
        await mine.append_turns(sid, [turn(2)])
        assert len(derived) == 1
        await change(other, sid, 3)
        result = await mine.append_turns(sid, [turn(4), turn(5)])
        assert len(derived) == 1  # the header came back
        await _check(mine, result, sid)
        again = await mine.append_turns(sid, [turn(6)])
        assert len(derived) == 2  # and is held again
        await _check(mine, again, sid)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("total_cost", "total_cost + 1e-9"),
        ("turn_count", "turn_count + 1"),
        ("last_seq", "last_seq + 5"),
        ("total_tokens", "total_tokens + 1"),
        ("updated_at", "updated_at + 1"),
        ("expires_at", "expires_at + 1"),
        ("user_id", "'mallory'"),
        ("metadata", "'{\"z\": 1}'"),
        ("variables", "'{\"x\": 2}'"),
        ("active_tools", "'[\"search\"]'"),
        ("active_skills", "'[\"sum\"]'"),
        ("system_prompt", "'\"be brief\"'"),
        ("checkpoint_id", "'cp-elsewhere'"),
        ("branch_name", "'b'"),
        ("created_at", "created_at - 1"),
    ],
)
async def test_any_column_changed_behind_the_stores_back_sends_the_header_back(
    mariadb_prefix: str, derived: list[int], column: str, value: str
) -> None:
    """Every column the header holds is compared, directly or by its fingerprint."""
    async with opened(mariadb_prefix) as store:
        sid = await new_session(store)
        await store.append_turns(sid, [turn(1)])
        await _sql(
            f"UPDATE {mariadb_prefix}sessions SET {column} = {value} WHERE session_id = %s", sid
        )
        result = await store.append_turns(sid, [turn(2)])
        assert derived == []
        await _check(store, result, sid)


async def test_a_session_created_again_under_the_same_id_is_not_taken_for_the_old(
    mariadb_prefix: str, derived: list[int]
) -> None:
    clock = FakeClock(T0)
    async with opened(mariadb_prefix, clock) as mine, opened(mariadb_prefix, clock) as other:
        sid = await new_session(mine, user_id="alice", metadata={"a": 1})
        await mine.append_turns(sid, [turn(1)])
        # Deleted and created again elsewhere, with the same counters once appended to.
        await other.delete(sid)
        await new_session(other, session_id=sid, user_id="bob", metadata={"b": 2})
        await other.append_turns(sid, [turn(1)])
        result = await mine.append_turns(sid, [turn(2)])
        assert derived == []
        assert result.record.state.user_id == "bob"
        assert result.record.state.metadata == {"b": 2}
        await _check(mine, result, sid)


async def test_without_the_procedure_appends_return_the_header(
    mariadb_prefix: str, derived: list[int]
) -> None:
    async with opened(mariadb_prefix) as store:
        await _sql(f"DROP PROCEDURE IF EXISTS {append_procedure(mariadb_prefix)}")
        sid = await new_session(store)
        for n in range(1, 4):
            result = await store.append_turns(sid, [turn(n)], max_turns=3)
            await _check(store, result, sid)
        assert derived == [] and result.closed_by_cap
        with pytest.raises(SessionClosedError):  # the statement's refusal, named
            await store.append_turns(sid, [turn(4)], max_turns=3)


async def test_deleting_a_session_drops_its_copy(mariadb_prefix: str) -> None:
    async with opened(mariadb_prefix) as store:
        sids = [await new_session(store) for _ in range(3)]
        for sid in sids:
            await store.append_turns(sid, [turn(1)])
        replies = store._replies
        assert replies is not None and len(replies) == 3
        await store.delete(sids[0])
        await store.purge(sids[1], tombstone_until=T0)
        await store.forget_user("alice", [sids[2]])
        assert len(replies) == 0


async def test_interleaved_changes_never_return_a_stale_header(
    mariadb_prefix: str, derived: list[int]
) -> None:
    """Random appends by two stores, with patches, pops and clock moves between."""
    rng = random.Random(1234)
    clock_a = FakeClock(T0)
    clock_b = FakeClock(T0 + timedelta(seconds=3))
    async with (
        opened(mariadb_prefix, clock_a, ttl=3600) as a,
        opened(mariadb_prefix, clock_b, ttl=3600) as b,
    ):
        sid = await new_session(a)
        n = 0
        for _ in range(120):
            step = rng.random()
            n += 2
            if step < 0.45:
                batch = [turn(n, cost=rng.random())]
                if step < 0.2:
                    batch.append(turn(n + 1, cost=rng.random() * 1e-3))
                result = await a.append_turns(sid, batch, max_turns=400)
                await _check(a, result, sid)
            elif step < 0.65:
                result = await b.append_turns(sid, [turn(n, cost=rng.random())])
                await _check(b, result, sid)
            elif step < 0.75:
                await b.update_session(sid, SessionPatch(metadata={"step": n}))
            elif step < 0.8:
                await b.pop_turn(sid)
            else:
                (clock_a if step < 0.9 else clock_b).advance(rng.choice([1, 7, 61]))
        assert derived, "no append computed its header"
