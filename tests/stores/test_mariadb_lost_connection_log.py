"""MariaDB: a connection the server side dropped is discarded, and nothing logs at ERROR.

An outside audit (a TCP proxy cutting connections mid-append) saw SQLAlchemy's pool
log "Exception during reset or similar" at ERROR with a ~25-line asyncmy traceback
``(2013, 'Lost connection…')`` / ``(2006, 'MySQL server has gone away')`` each time a
connection was lost; PostgreSQL logged none. A connection given back to the pool was
reset with a ROLLBACK: on a socket already lost (the store gave it back as if sound)
or lost while that ROLLBACK was on its way, the reset failed and was logged. A lost
socket is now discarded (invalidated), and a connection the runner left with no
transaction open goes back without the ROLLBACK (``stores/sql/runner.py``,
``stores/sql/mysql.py``).

The proxy is the fault proxy of the fault tests (an ephemeral port on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session import SessionConfig, SessionManagerImpl
from lexigram.ai.session.exceptions import (
    SessionError,
    StoreUnavailableError,
    WriteOutcomeUnknownError,
)
from lexigram.ai.session.stores.database import DatabaseSessionStore
from lexigram.ai.session.stores.sql.runner import socket_lost
from tests.faults.proxy import FaultProxy
from tests.faults.test_sql_cancellation import ErrorLines
from tests.services import MARIADB_URL


@contextmanager
def _sqlalchemy_errors() -> Iterator[ErrorLines]:
    errors = ErrorLines()
    logger = logging.getLogger("sqlalchemy")  # the pool's loggers are its children
    logger.addHandler(errors)
    try:
        yield errors
    finally:
        logger.removeHandler(errors)


def _via(port: int) -> str:
    """``MARIADB_URL`` with its host and port replaced by the proxy's."""
    parts = urlsplit(MARIADB_URL)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}"))


@asynccontextmanager
async def _store_behind_proxy(
    prefix: str, *, pool_size: int
) -> AsyncIterator[tuple[FaultProxy, DatabaseSessionStore, SessionManagerImpl]]:
    upstream = urlsplit(MARIADB_URL)
    async with FaultProxy(upstream.hostname or "127.0.0.1", upstream.port or 3306) as proxy:
        store = DatabaseSessionStore(_via(proxy.port), table_prefix=prefix, pool_size=pool_size)
        try:
            await store.initialize()
            config = SessionConfig(max_turns_per_session=100_000, auto_checkpoint_interval=None)
            yield proxy, store, SessionManagerImpl(store, config)
        finally:
            await store.close()


def _turn(turn_id: str, size: int = 10) -> SessionTurn:
    return SessionTurn(
        turn_id=turn_id,
        role="user",
        content="c" * size,
        timestamp=datetime.now(UTC),
        tokens_used=1,
    )


async def test_connections_given_back_send_no_rollback(mariadb_prefix: str) -> None:
    """Appends that overflow the kept connections give some back to the pool: no ROLLBACK
    goes with them (the runner committed), so a cut there cannot fail a reset."""
    with _sqlalchemy_errors() as errors:
        async with _store_behind_proxy(mariadb_prefix, pool_size=1) as (proxy, _, manager):
            session_id = (await manager.create("giver")).session_id
            # The pool's reset was a ROLLBACK: cutting it failed the reset (2013, at ERROR).
            proxy.cut_before_request(match=b"ROLLBACK")
            for rnd in range(5):
                await asyncio.gather(
                    *(manager.add_turn(session_id, _turn(f"r{rnd}-{i}")) for i in range(4))
                )
            assert proxy.armed == 1, "a ROLLBACK went out with a connection given back"
            state = await manager.get_state(session_id)
            assert state is not None and state.turn_count == len(state.turns) == 20
    assert errors.seen == []


async def test_a_lost_socket_given_back_is_discarded(mariadb_prefix: str) -> None:
    """A connection whose socket the peer reset while the store held it is invalidated
    when given back, not reset with a ROLLBACK that fails (2006, at ERROR)."""
    with _sqlalchemy_errors() as errors:
        async with _store_behind_proxy(mariadb_prefix, pool_size=1) as (proxy, store, manager):
            session_id = (await manager.create("loser")).session_id
            leases = store._runner.leases
            kept, given_back = await leases.acquire(), await leases.acquire()
            await leases.release(kept)  # kept for reuse: the next one goes to the pool
            assert proxy.drop_connections() >= 2
            for _ in range(200):  # the reset reaches the client socket
                if socket_lost(given_back[1]) and socket_lost(kept[1]):
                    break
                await asyncio.sleep(0.005)
            assert socket_lost(given_back[1])
            await leases.release(given_back)
            # The dead kept one is found out before use; the store goes on.
            await manager.add_turn(session_id, _turn("after"))
            state = await manager.get_state(session_id)
            assert state is not None and [t.turn_id for t in state.turns] == ["after"]
    assert errors.seen == []


async def test_connections_cut_during_appends_log_no_error(mariadb_prefix: str) -> None:
    """The audit's case: every connection cut at random moments during concurrent
    appends. Nothing at ERROR from SQLAlchemy; every acknowledged append is stored;
    the callers get the store's errors only."""
    rng = random.Random(5)
    acknowledged: list[str] = []
    refused: list[BaseException] = []
    with _sqlalchemy_errors() as errors:
        async with _store_behind_proxy(mariadb_prefix, pool_size=4) as (proxy, _, manager):
            session_id = (await manager.create("cut")).session_id

            async def one(turn_id: str) -> None:
                try:
                    await manager.add_turn(session_id, _turn(turn_id, rng.choice([10, 20_000])))
                except WriteOutcomeUnknownError:
                    pass  # either way; a retry would say which
                except Exception as exc:
                    refused.append(exc)
                else:
                    acknowledged.append(turn_id)

            for rnd in range(40):
                tasks = [asyncio.ensure_future(one(f"r{rnd}-{i}")) for i in range(6)]
                await asyncio.sleep(rng.uniform(0.002, 0.008))
                proxy.drop_connections()
                await asyncio.gather(*tasks)
            assert proxy.cuts > 0 and acknowledged

            state = None
            for _ in range(20):  # a read may meet the last cut; the next one gets through
                try:
                    state = await manager.get_state(session_id)
                    break
                except StoreUnavailableError:
                    await asyncio.sleep(0.1)
            assert state is not None
    stored = [t.turn_id for t in state.turns]
    assert state.turn_count == len(stored) == state.total_tokens
    assert len(set(stored)) == len(stored)
    assert [t for t in acknowledged if t not in stored] == []
    # The callers get the store's errors, never a driver's.
    assert all(isinstance(e, SessionError) for e in refused), refused[:3]
    assert errors.seen == []
