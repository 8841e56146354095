"""Lost replies between the SQL store and a real PostgreSQL / MariaDB (loopback fault proxy).

For every write operation the proxy lets the server apply the operation and drops
its reply (the reply to ``COMMIT``, or to the one statement of a one-turn append),
closing the connection. The store must then either retry safely (appends, delete,
save, save_checkpoint, quarantine, create_session: a retry finds the work done (a create
reads its id back) and reports the first
outcome) or tell the caller the outcome is unknown (``WriteOutcomeUnknownError``,
a ``StoreUnavailableError``). Each test checks, through a second store that does
not go through the proxy, that the operation was applied exactly once.

A connection cut while the transaction's statements run (before ``COMMIT``) rolls
the transaction back on the server; the store retries it and it is applied once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from lexigram.contracts.ai.session import (
    SessionCheckpoint,
    SessionState,
    SessionStatus,
    SessionTurn,
)

from lexigram.ai.session.exceptions import StoreUnavailableError, WriteOutcomeUnknownError
from lexigram.ai.session.stores.base import SessionPatch
from lexigram.ai.session.stores.database import DatabaseSessionStore
from lexigram.ai.session.stores.sql.ops_turns import ONE_STATEMENT_DIALECTS
from tests.faults.proxy import Matcher
from tests.faults.sql_pair import (
    COMMIT,
    SERVER_PARAMS,
    T0,
    Pair,
    header,
    open_pair,
    turn,
)

TTL = 60
LIVE = frozenset({SessionStatus.ACTIVE, SessionStatus.SUSPENDED})


@pytest.fixture(params=SERVER_PARAMS)
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    """Two stores on one random table prefix; the proxied one goes through a FaultProxy."""
    async with open_pair(request.param, TTL) as made:
        yield made


async def _session(
    store: DatabaseSessionStore, turns: int = 2
) -> tuple[SessionState, list[SessionTurn]]:
    now = store.now()
    state = replace(header(), created_at=now, updated_at=now)
    await store.create_session(state)
    made = [turn(i) for i in range(1, turns + 1)]
    for item in made:
        await store.append_turns(state.session_id, [item])
    return state, made


async def _ids(store: DatabaseSessionStore, session_id: str) -> list[str]:
    return [t.turn_id for t in await store.get_turns(session_id)]


Check = Callable[[Pair, dict[str, Any], Any], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    """One write: set-up, the call, what its reply looks like, and what must be stored."""

    setup: Callable[[Pair], Awaitable[dict[str, Any]]]
    call: Callable[[DatabaseSessionStore, dict[str, Any]], Awaitable[Any]]
    check: Check
    match: Callable[[dict[str, Any]], Matcher] = lambda _ctx: COMMIT
    retried: bool = False


# ------------------------------------------------------------------ the cases
async def _base(p: Pair) -> dict[str, Any]:
    state, made = await _session(p.direct)
    return {
        "sid": state.session_id,
        "ids": [t.turn_id for t in made],
        "turns": made,
        "state": state,
    }


async def _with_checkpoint(p: Pair) -> dict[str, Any]:
    ctx = await _base(p)
    cp, _ = await p.direct.create_checkpoint(ctx["sid"], checkpoint_id=f"cp-{uuid.uuid4().hex}")
    await p.direct.append_turns(ctx["sid"], [turn(3)])
    ctx["cp"] = cp.checkpoint_id
    return ctx


async def _new_turn(p: Pair) -> dict[str, Any]:
    ctx = await _base(p)
    ctx["new"] = turn(7)
    return ctx


async def _new_batch(p: Pair) -> dict[str, Any]:
    ctx = await _base(p)
    ctx["batch"] = [turn(7), turn(8)]
    # PostgreSQL and MariaDB append a batch as one statement: its reply is the one lost.
    ctx["one_statement"] = p.direct.dialect in ONE_STATEMENT_DIALECTS
    return ctx


def _batch_commit(ctx: dict[str, Any]) -> Matcher:
    """The request that commits the batch: its one statement, or ``COMMIT``."""
    return ctx["batch"][-1].turn_id.encode() if ctx["one_statement"] else COMMIT


async def _new_session(p: Pair) -> dict[str, Any]:
    state = replace(header(), turns=[turn(1)], turn_count=1, total_tokens=2, total_cost=0.25)
    return {"sid": state.session_id, "state": state}


async def _due(p: Pair) -> dict[str, Any]:
    ctx = await _base(p)
    p.clock.now = T0 + timedelta(seconds=TTL + 1)
    return ctx


async def _closed(p: Pair) -> dict[str, Any]:
    ctx = await _base(p)
    await p.direct.transition(ctx["sid"], SessionStatus.CLOSED, allowed_from=LIVE)
    return ctx


async def _record(p: Pair, sid: str) -> Any:
    record = await p.direct.load_record(sid)
    assert record is not None
    return record.state


async def check_appended(p: Pair, ctx: dict[str, Any], result: Any) -> None:
    new = [ctx["new"]] if "new" in ctx else ctx["batch"]
    assert result.first_seq == 3
    assert result.record.state.turn_count == 2 + len(new)
    assert await _ids(p.direct, ctx["sid"]) == ctx["ids"] + [t.turn_id for t in new]
    state = await _record(p, ctx["sid"])
    assert (state.turn_count, state.total_tokens) == (2 + len(new), 2 * (2 + len(new)))


async def check_closed_by_cap(p: Pair, ctx: dict[str, Any], result: Any) -> None:
    assert result.closed_by_cap and result.first_seq == 3
    state = await _record(p, ctx["sid"])
    assert state.status == SessionStatus.CLOSED and state.turn_count == 3
    assert await _ids(p.direct, ctx["sid"]) == ctx["ids"] + [ctx["new"].turn_id]


async def check_deleted(p: Pair, ctx: dict[str, Any], result: Any) -> None:
    assert result is None
    assert await p.direct.load_record(ctx["sid"]) is None


async def check_saved(p: Pair, ctx: dict[str, Any], result: Any) -> None:
    loaded = await p.direct.load(ctx["sid"])
    assert loaded is not None and [t.turn_id for t in loaded.turns] == ctx["ids"][:1]
    assert loaded.variables == {"saved": True}


async def check_created(p: Pair, ctx: dict[str, Any], result: Any) -> None:
    state = await _record(p, ctx["sid"])
    assert state.turn_count == 1
    assert await p.direct.count_live_sessions(ctx["state"].user_id) == 1
    assert await _ids(p.direct, ctx["sid"]) == [ctx["state"].turns[0].turn_id]


async def check_popped_once(p: Pair, ctx: dict[str, Any], result: Any) -> None:
    assert await _ids(p.direct, ctx["sid"]) == ctx["ids"][:1]
    state = await _record(p, ctx["sid"])
    assert (state.turn_count, state.total_tokens, state.total_cost) == (1, 2, 0.25)


async def check_cleared(p: Pair, ctx: dict[str, Any], result: Any) -> None:
    assert await _ids(p.direct, ctx["sid"]) == []
    state = await _record(p, ctx["sid"])
    assert (state.turn_count, state.total_tokens) == (0, 0)


async def check_updated(p: Pair, ctx: dict[str, Any], result: Any) -> None:
    state = await _record(p, ctx["sid"])
    assert state.variables == {"k": 1} and state.turn_count == 2


async def check_status_closed(p: Pair, ctx: dict[str, Any], result: Any) -> None:
    assert (await _record(p, ctx["sid"])).status == SessionStatus.CLOSED


async def check_checkpointed(p: Pair, ctx: dict[str, Any], result: Any) -> None:
    headers = await p.direct.list_checkpoint_headers(ctx["sid"])
    assert [c.checkpoint_id for c in headers] == ["cp-fault"]
    assert (await _record(p, ctx["sid"])).checkpoint_id == "cp-fault"


async def check_restored(p: Pair, ctx: dict[str, Any], result: Any) -> None:
    assert await _ids(p.direct, ctx["sid"]) == ctx["ids"]
    state = await _record(p, ctx["sid"])
    assert state.checkpoint_id == ctx["cp"] and state.turn_count == 2


async def check_checkpoint_deleted(p: Pair, ctx: dict[str, Any], result: Any) -> None:
    assert await p.direct.load_checkpoint(ctx["cp"]) is None
    assert await p.direct.list_checkpoint_headers(ctx["sid"]) == []


async def check_forked(p: Pair, ctx: dict[str, Any], result: Any) -> None:
    branches = await p.direct.list_branches(ctx["sid"])
    assert [b.state.session_id for b in branches] == [ctx["sid"] + "-b"]
    assert await _ids(p.direct, ctx["sid"] + "-b") == ctx["ids"]


async def check_expired(p: Pair, ctx: dict[str, Any], result: Any) -> None:
    assert await p.direct.find_expired() == []
    assert (await _record(p, ctx["sid"])).status == SessionStatus.EXPIRED


async def check_purged(p: Pair, ctx: dict[str, Any], result: Any) -> None:
    assert await p.direct.load_record(ctx["sid"]) is None
    with pytest.raises(Exception, match="already exists"):
        await p.direct.create_session(replace(ctx["state"], turns=[]))


async def check_quarantined(p: Pair, ctx: dict[str, Any], result: Any) -> None:
    assert result is None
    assert await p.direct.count_live_sessions(ctx["state"].user_id) == 0


def _branch(ctx: dict[str, Any]) -> SessionState:
    return replace(
        header(),
        session_id=ctx["sid"] + "-b",
        user_id=ctx["state"].user_id,
        parent_session_id=ctx["sid"],
        branch_name="b",
    )


def _saved(ctx: dict[str, Any]) -> SessionState:
    return replace(ctx["state"], variables={"saved": True}, turns=ctx["turns"][:1])


CASES: dict[str, Case] = {
    "append_one_turn": Case(
        _new_turn,
        lambda s, c: s.append_turns(c["sid"], [c["new"]]),
        check_appended,
        match=lambda c: c["new"].turn_id.encode(),
        retried=True,
    ),
    "append_batch": Case(
        _new_batch,
        lambda s, c: s.append_turns(c["sid"], c["batch"]),
        check_appended,
        match=_batch_commit,
        retried=True,
    ),
    "append_closing_by_cap": Case(
        _new_turn,
        lambda s, c: s.append_turns(c["sid"], [c["new"]], max_turns=3),
        check_closed_by_cap,
        match=lambda c: c["new"].turn_id.encode(),
        retried=True,
    ),
    "delete": Case(_base, lambda s, c: s.delete(c["sid"]), check_deleted, retried=True),
    "save": Case(_base, lambda s, c: s.save(_saved(c)), check_saved, retried=True),
    "quarantine": Case(_base, lambda s, c: s.quarantine(c["sid"]), check_quarantined, retried=True),
    "create_session": Case(
        _new_session,
        lambda s, c: s.create_session(c["state"], max_live_per_user=5),
        check_created,
        retried=True,  # settled by reading the id back (it names the session otherwise)
    ),
    "pop_turn": Case(_base, lambda s, c: s.pop_turn(c["sid"]), check_popped_once),
    "clear_turns": Case(_base, lambda s, c: s.clear_turns(c["sid"]), check_cleared),
    "update_session": Case(
        _base,
        lambda s, c: s.update_session(c["sid"], SessionPatch(variables={"k": 1})),
        check_updated,
    ),
    "close": Case(
        _base,
        lambda s, c: s.transition(c["sid"], SessionStatus.CLOSED, allowed_from=LIVE),
        check_status_closed,
    ),
    "create_checkpoint": Case(
        _base,
        lambda s, c: s.create_checkpoint(c["sid"], checkpoint_id="cp-fault"),
        check_checkpointed,
    ),
    "restore_checkpoint": Case(
        _with_checkpoint, lambda s, c: s.restore_checkpoint(c["cp"]), check_restored
    ),
    "delete_checkpoint": Case(
        _with_checkpoint, lambda s, c: s.delete_checkpoint(c["cp"]), check_checkpoint_deleted
    ),
    "fork_session": Case(_base, lambda s, c: s.fork_session(c["sid"], _branch(c)), check_forked),
    "mark_expired": Case(_due, lambda s, c: s.mark_expired(c["sid"]), check_expired),
    "purge": Case(
        _closed,
        lambda s, c: s.purge(c["sid"], tombstone_until=T0 + timedelta(days=1)),
        check_purged,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
async def test_a_lost_reply_is_applied_once_and_the_caller_told_the_truth(
    pair: Pair, name: str
) -> None:
    case = CASES[name]
    ctx = await case.setup(pair)
    await pair.proxied.ping()  # a pooled connection through the proxy, before arming
    pair.proxy.drop_next_reply(match=case.match(ctx))
    if case.retried:
        result = await case.call(pair.proxied, ctx)
    else:
        with pytest.raises(WriteOutcomeUnknownError) as info:
            await case.call(pair.proxied, ctx)
        assert isinstance(info.value, StoreUnavailableError)
        assert info.value.code == "LEX_ERR_SES_113"
        assert "may or may not have been applied" in str(info.value)
        result = None
    assert pair.proxy.replies_dropped == 1 and pair.proxy.armed == 0
    await case.check(pair, ctx, result)
    # The store goes on working through the proxy afterwards.
    state, made = await _session(pair.proxied, turns=1)
    assert await _ids(pair.direct, state.session_id) == [made[0].turn_id]


@pytest.mark.parametrize("batch", [1, 2], ids=["one_turn", "batch"])
async def test_a_lost_reply_with_another_writer_in_between_is_still_applied_once(
    pair: Pair, batch: int
) -> None:
    """Another writer appends while the reply is lost: the re-send finds its own commit
    below that writer's turn and reports success, not a DuplicateTurnError."""
    ctx = await _base(pair)
    mine = [turn(7), turn(8)][:batch]
    other = turn(9)

    async def other_writer() -> None:
        await pair.direct.append_turns(ctx["sid"], [other])

    await pair.proxied.ping()
    one_statement = pair.direct.dialect in ONE_STATEMENT_DIALECTS
    match = _batch_commit({"batch": mine, "one_statement": one_statement})
    pair.proxy.drop_next_reply(match=match, before_close=other_writer)
    result = await pair.proxied.append_turns(ctx["sid"], mine)
    assert pair.proxy.replies_dropped == 1
    assert result.first_seq == 3
    assert await _ids(pair.direct, ctx["sid"]) == (
        ctx["ids"] + [t.turn_id for t in mine] + [other.turn_id]
    )
    state = await _record(pair, ctx["sid"])
    assert state.turn_count == 2 + batch + 1


async def test_a_cut_inside_the_transaction_is_rolled_back_and_retried(pair: Pair) -> None:
    ctx = await _base(pair)
    # A fresh connection parses the statement that ends the turn's liveness: cut there.
    pair.proxy.cut_before_request(match=b"SET live = 0")
    popped = await pair.proxied.pop_turn(ctx["sid"])
    assert popped is not None and popped.turn_id == ctx["ids"][1]
    assert pair.proxy.cuts == 1
    await check_popped_once(pair, ctx, popped)


async def test_a_commit_that_never_reached_the_server_is_reported_unknown(
    pair: Pair,
) -> None:
    ctx = await _base(pair)
    await pair.proxied.ping()
    pair.proxy.cut_before_request(match=COMMIT)
    with pytest.raises(WriteOutcomeUnknownError):
        await pair.proxied.pop_turn(ctx["sid"])
    assert pair.proxy.cuts == 1
    # Not applied: the caller was told it might not have been, and it was not.
    assert await _ids(pair.direct, ctx["sid"]) == ctx["ids"]
    assert (await _record(pair, ctx["sid"])).turn_count == 2


async def test_a_checkpoint_saved_whole_is_retried(pair: Pair) -> None:
    ctx = await _base(pair)
    checkpoint = SessionCheckpoint(
        checkpoint_id="cp-whole", session_id=ctx["sid"], state=ctx["state"], created_at=T0
    )
    pair.proxy.drop_next_reply(match=COMMIT)
    await pair.proxied.save_checkpoint(checkpoint)
    assert pair.proxy.replies_dropped == 1
    headers = await pair.direct.list_checkpoint_headers(ctx["sid"])
    assert [c.checkpoint_id for c in headers] == ["cp-whole"]


async def _kill_server_side(pair: Pair) -> int:
    """Have the server end the proxied store's connections (KILL / pg_terminate_backend)."""
    from sqlalchemy import text

    ports = pair.proxy.upstream_ports()
    if not ports:
        return 0
    async with pair.direct.engine.connect() as conn:
        if pair.direct.dialect == "postgresql":
            found = await conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                f"WHERE client_port IN ({','.join(map(str, ports))})"
            ))
            return int(found.scalar_one())
        hosts = {f"127.0.0.1:{port}" for port in ports} | {f"localhost:{port}" for port in ports}
        rows = (await conn.execute(text("SELECT ID, HOST FROM information_schema.PROCESSLIST")))
        ids = [row[0] for row in rows if row[1] in hosts]
        for killed in ids:
            await conn.execute(text(f"KILL {int(killed)}"))
        return len(ids)


async def test_connections_the_server_kills_mid_read_leave_no_broken_connection_behind(
    pair: Pair,
) -> None:
    """A read whose connection the server kills recovers; the writes after it run on
    live connections (MariaDB handed out one its driver knew was closed: the write
    failed with a raw "(0, 'Not connected')" although nothing had been sent)."""
    ctx = await _base(pair)
    added: list[SessionTurn] = []
    killed = 0
    for n in range(4):
        pair.proxy.delay(0.2)
        reading = asyncio.ensure_future(pair.proxied.load(ctx["sid"]))
        await asyncio.sleep(0.3)
        killed += await _kill_server_side(pair)
        pair.proxy.reset()
        with contextlib.suppress(StoreUnavailableError):
            await reading
        added.append(turn(10 + n))
        await pair.proxied.append_turns(ctx["sid"], [added[-1]])
    assert killed >= 4
    assert await _ids(pair.direct, ctx["sid"]) == ctx["ids"] + [t.turn_id for t in added]
