"""Calls cut short by tiny timeouts log nothing at ERROR (no leak either way).

An outside soak audit saw asyncio's "Future exception was never retrieved" (asyncpg's
``connect`` cancelled half way: 181 times for 232 timed-out reads) and SQLAlchemy's
"Exception during reset or similar" (a connection's ROLLBACK cancelled while it was
returned: MariaDB), each with a traceback at ERROR: a service alerting on ERROR
alerted on every client timeout. Connections are now opened and closed to the end in
tasks of their own (``stores/sql/runner.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import uuid

import pytest

from lexigram.ai.session.stores.database import drop_schema
from tests.faults.test_sql_cancellation import ErrorLines, server_url, sql_manager


@pytest.mark.parametrize("backend", ["postgres", "mariadb"])
async def test_timed_out_calls_log_no_error(backend: str) -> None:
    url = server_url(backend)
    prefix = f"cl{uuid.uuid4().hex[:10]}_"
    errors = ErrorLines()
    loggers = [logging.getLogger(n) for n in ("asyncio", "sqlalchemy")]
    for logger in loggers:
        logger.addHandler(errors)
    rng = random.Random(7)
    try:
        async with sql_manager(url, prefix, pool=3) as manager:
            session_id = (await manager.create("timeouts")).session_id

            async def one(n: int) -> None:
                call = (
                    manager.get_state(session_id)
                    if n % 2
                    else manager.add_message(session_id, "user", f"m{n}")
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(call, rng.choice([0.0003, 0.001, 0.003, 0.006]))

            # Four at once over a pool keeping three: calls also wait for new connections.
            for n in range(0, 400, 4):
                await asyncio.gather(*(one(n + k) for k in range(4)))
            state = await manager.get_state(session_id)
            assert state is not None and state.turn_count == len(state.turns)
        gc.collect()
        await asyncio.sleep(0.1)
        gc.collect()
        assert errors.seen == []
    finally:
        for logger in loggers:
            logger.removeHandler(errors)
        await drop_schema(url, table_prefix=prefix)
