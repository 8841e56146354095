"""SQL-specific behaviour of ``DatabaseSessionStore`` (the shared contract is in
``test_conformance.py``): schema and version, URLs, the row layout, what an append
touches, several processes at once, a writer killed mid-stream, PostgreSQL down at
boot and restarted under a running application.

PostgreSQL tests use the shared server on 127.0.0.1:5432 under a random table prefix
and drop their tables; the server itself is never stopped (a restart is simulated
with ``pg_terminate_backend`` and with a TCP proxy that the test closes and reopens).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest
from lexigram.contracts.ai.session import (
    SessionManagerProtocol,
    SessionState,
    SessionStatus,
    SessionTurn,
)
from lexigram.contracts.core.health import HealthStatus
from lexigram.di.container.container import Container
from sqlalchemy import text

from lexigram import Application
from lexigram.ai.session import SessionModule
from lexigram.ai.session.exceptions import (
    CorruptRecordError,
    SessionCapacityError,
    SessionStoreError,
    SessionValidationError,
    StoreUnavailableError,
)
from lexigram.ai.session.stores.database import (
    SCHEMA_VERSION,
    DatabaseSessionStore,
    drop_schema,
    setup_schema,
)
from lexigram.ai.session.stores.sql.urls import normalise_url
from tests.services import MARIADB_URL, POSTGRES_URL, require_mariadb, require_postgres

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SPAWN = multiprocessing.get_context("spawn")


def turn(n: int, *, prefix: str = "t", **extra: Any) -> SessionTurn:
    """A turn numbered ``n``."""
    fields: dict[str, Any] = {
        "turn_id": f"{prefix}{n}",
        "role": "user",
        "content": f"message {n}",
        "timestamp": T0 + timedelta(seconds=n),
        "tokens_used": 2,
        "cost": 0.25,
    }
    fields.update(extra)
    return SessionTurn(**fields)


def header(user: str = "alice", session_id: str | None = None) -> SessionState:
    """A new ACTIVE session header."""
    return SessionState(
        session_id=session_id or f"s-{uuid.uuid4().hex}",
        user_id=user,
        status=SessionStatus.ACTIVE,
        created_at=T0,
        updated_at=T0,
    )


def _prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}_"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def pg_prefix() -> AsyncIterator[str]:
    """A table prefix of this test alone on the shared PostgreSQL (dropped afterwards)."""
    require_postgres()
    prefix = _prefix()
    try:
        yield prefix
    finally:
        await drop_schema(POSTGRES_URL, table_prefix=prefix)


@pytest.fixture(params=["sqlite", "postgres", "mariadb"])
async def target(request: pytest.FixtureRequest, sqlite_url: str) -> AsyncIterator[tuple[str, str]]:
    """(url, table prefix) on SQLite, then on PostgreSQL, then on MariaDB."""
    if request.param == "sqlite":
        yield sqlite_url, "ai_session_"
        return
    if request.param == "postgres":
        require_postgres()
        url = POSTGRES_URL
    else:
        require_mariadb()
        url = MARIADB_URL
    prefix = _prefix()
    try:
        yield url, prefix
    finally:
        await drop_schema(url, table_prefix=prefix)


@contextlib.asynccontextmanager
async def opened(url: str, prefix: str, **kwargs: Any) -> AsyncIterator[DatabaseSessionStore]:
    """An initialised store, closed afterwards."""
    store = DatabaseSessionStore(url, table_prefix=prefix, **kwargs)
    await store.initialize()
    try:
        yield store
    finally:
        await store.close()


def _q(store: DatabaseSessionStore, name: str) -> str:
    """``name`` quoted for the store's SQL dialect (``release`` is reserved on MariaDB)."""
    return f"`{name}`" if store.dialect == "mysql" else name


async def _scalar(store: DatabaseSessionStore, sql: str, **params: Any) -> Any:
    async with store.engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


async def _rows(store: DatabaseSessionStore, sql: str, **params: Any) -> list[Any]:
    async with store.engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def _exec(store: DatabaseSessionStore, sql: str, **params: Any) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(text(sql), params)


# ------------------------------------------------------------------ URLs
@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("sqlite:///./x.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///tmp/x.db", "sqlite+aiosqlite"),
        ("sqlite://", "sqlite+aiosqlite"),
        ("postgresql://u:pw@db.example/app", "postgresql+asyncpg"),
        ("postgres://u@db.example:5433/app", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u@db.example/app", "postgresql+asyncpg"),
        ("mysql://u:pw@db.example/app", "mysql+asyncmy"),
        ("mariadb+aiomysql://u@db.example:3307/app", "mysql+asyncmy"),
        ("mysql+asyncmy://u@db.example/app", "mysql+asyncmy"),
    ],
)
def test_urls_are_normalised_to_the_async_drivers(given: str, driver: str) -> None:
    url = normalise_url(given)
    assert url.url.drivername == driver
    assert url.url.database == make_db(given)


def make_db(given: str) -> str | None:
    """The database part the URL names (unchanged by normalisation)."""
    from sqlalchemy.engine import make_url

    return make_url(given).database


@pytest.mark.parametrize(
    "bad",
    ["oracle://u@h/db", "", "not a url", "postgresql:///nohost", "mysql:///db", "mysql://u@h"],
)
def test_bad_urls_are_refused_naming_the_field(bad: str) -> None:
    with pytest.raises(SessionValidationError) as info:
        DatabaseSessionStore(bad)
    assert info.value.field == "database_url"


def test_password_is_masked_and_from_config_reads_the_fields() -> None:
    from lexigram.ai.session.config import SessionConfig

    config = SessionConfig(
        backend="database",
        database_url="postgres://app:s3cret@127.0.0.1:5432/app",
        table_prefix="custom_",
        db_pool_size=3,
        session_ttl=120,
    )
    store = DatabaseSessionStore.from_config(config)
    assert store.url == "postgresql+asyncpg://app:***@127.0.0.1:5432/app"
    assert "s3cret" not in repr(store)
    assert store.table_prefix == "custom_" and store.session_ttl == 120
    assert store.engine.pool.size() == 3  # type: ignore[attr-defined]


def test_table_prefix_is_checked() -> None:
    with pytest.raises(SessionValidationError) as info:
        DatabaseSessionStore("sqlite://", table_prefix="x; DROP TABLE y")
    assert info.value.field == "table_prefix"


# ---------------------------------------------------------------- schema
async def test_schema_version_recorded_and_initialize_is_idempotent(
    target: tuple[str, str],
) -> None:
    url, prefix = target
    await setup_schema(url, table_prefix=prefix)
    async with opened(url, prefix) as store:
        await store.initialize()  # again: nothing to do
        rows = await _rows(store, f"SELECT version FROM {prefix}schema_version")
        assert [r[0] for r in rows] == [SCHEMA_VERSION]
        names = set(store.schema.table_names)
        assert names == {
            f"{prefix}{n}"
            for n in ("sessions", "turns", "checkpoints", "tombstones", "schema_version")
        }


async def test_a_newer_schema_version_is_refused(target: tuple[str, str]) -> None:
    url, prefix = target
    async with opened(url, prefix) as store:
        await _exec(
            store,
            f"INSERT INTO {prefix}schema_version (version, applied_at, {_q(store, 'release')}) "
            "VALUES (:v, 0, 'future')",
            v=SCHEMA_VERSION + 1,
        )
    store = DatabaseSessionStore(url, table_prefix=prefix)
    with pytest.raises(SessionStoreError) as info:
        await store.initialize()
    await store.close()
    assert f"schema version {SCHEMA_VERSION + 1}" in str(info.value)
    assert "newer" in str(info.value)


async def test_concurrent_initialize_from_many_stores(target: tuple[str, str]) -> None:
    url, prefix = target
    stores = [DatabaseSessionStore(url, table_prefix=prefix, pool_size=1) for _ in range(4)]
    try:
        await asyncio.gather(*(s.initialize() for s in stores))
        rows = await _rows(stores[0], f"SELECT version FROM {prefix}schema_version")
        assert [r[0] for r in rows] == [SCHEMA_VERSION]
    finally:
        for s in stores:
            await s.close()


async def test_listing_and_expiry_queries_use_their_indexes(sqlite_url: str) -> None:
    async with opened(sqlite_url, "ai_session_") as store:
        q = store._statements

        async def plan(sql: str, **params: Any) -> str:
            rows = await _rows(store, "EXPLAIN QUERY PLAN " + sql, **params)
            return " | ".join(str(r[-1]) for r in rows)

        page = await plan(q.sessions.page, uid="u", below=10, lim=5, now=0)
        assert "sessions_user_ix" in page and "TEMP B-TREE" not in page, page
        live = await plan(q.sessions.count_live, uid="u", now=0)
        assert "sessions_user_live_ix" in live, live
        expired = await plan(q.sessions.find_expired, now=0, lim=5)
        assert "sessions_expiry_ix" in expired and "TEMP B-TREE" not in expired, expired
        ended = await plan(q.sessions.find_purgeable, older=0, lim=5)
        assert "sessions_ended_ix" in ended and "TEMP B-TREE" not in ended, ended
        # the live turns of one session, in seq order: as rows and as one joined text
        assert q.turns.live_array is not None
        for sql in (q.turns.live_turns, q.turns.live_array):
            turns = await plan(sql, sid="s")
            assert "SEARCH" in turns and "TEMP B-TREE" not in turns, turns
        last = await plan(q.turns.last_turns, sid="s", lim=5)
        assert "SCAN" not in last and "TEMP B-TREE" not in last, last


# ------------------------------------------------------------- row layout
async def test_one_row_per_turn_holding_the_turn_as_json(target: tuple[str, str]) -> None:
    url, prefix = target
    async with opened(url, prefix) as store:
        state = header()
        await store.create_session(state)
        turns = [turn(i, metadata={"i": i}) for i in range(5)]
        await store.append_turns(state.session_id, turns[:2])
        for t in turns[2:]:
            await store.append_turns(state.session_id, [t])
        rows = await _rows(
            store,
            f"SELECT seq, turn_id, live, data FROM {prefix}turns "
            "WHERE session_id = :sid ORDER BY seq",
            sid=state.session_id,
        )
        assert [(r[0], r[1], r[2]) for r in rows] == [(i + 1, f"t{i}", 1) for i in range(5)]
        stored = orjson.loads(rows[3][3])
        assert stored["content"] == "message 3" and stored["metadata"] == {"i": 3}
        count = await _scalar(
            store,
            f"SELECT turn_count FROM {prefix}sessions WHERE session_id = :s",
            s=state.session_id,
        )
        assert count == 5


async def test_appends_never_touch_earlier_rows(target: tuple[str, str]) -> None:
    url, prefix = target
    async with opened(url, prefix) as store:
        state = header()
        await store.create_session(state)
        for i in range(20):
            await store.append_turns(state.session_id, [turn(i)])
        if store.dialect == "sqlite":
            await _exec(store, "CREATE TABLE audit (op TEXT)")
            await _exec(
                store,
                f"CREATE TRIGGER audit_upd AFTER UPDATE ON {prefix}turns "
                "BEGIN INSERT INTO audit VALUES ('update'); END",
            )
            await _exec(
                store,
                f"CREATE TRIGGER audit_del AFTER DELETE ON {prefix}turns "
                "BEGIN INSERT INTO audit VALUES ('delete'); END",
            )
            for i in range(20, 40):
                await store.append_turns(state.session_id, [turn(i)])
            assert await _scalar(store, "SELECT COUNT(*) FROM audit") == 0
        elif store.dialect == "mysql":
            audit = f"{prefix}audit"
            await _exec(store, f"CREATE TABLE {audit} (op TEXT)")
            for op in ("UPDATE", "DELETE"):
                await _exec(
                    store,
                    f"CREATE TRIGGER {prefix}audit_{op.lower()} AFTER {op} ON {prefix}turns "
                    f"FOR EACH ROW INSERT INTO {audit} VALUES ('{op.lower()}')",
                )
            for i in range(20, 40):
                await store.append_turns(state.session_id, [turn(i)])
            assert await _scalar(store, f"SELECT COUNT(*) FROM {audit}") == 0
            await _exec(store, f"DROP TABLE {audit}")
        else:
            sql = f"SELECT seq, xmin::text FROM {prefix}turns WHERE session_id = :sid ORDER BY seq"
            before = await _rows(store, sql, sid=state.session_id)
            for i in range(20, 40):
                await store.append_turns(state.session_id, [turn(i)])
            after = await _rows(store, sql, sid=state.session_id)
            assert [tuple(r) for r in after[:20]] == [tuple(r) for r in before]
        assert len(await store.get_turns(state.session_id)) == 40


async def test_a_value_json_cannot_hold_is_refused_naming_the_field(
    target: tuple[str, str],
) -> None:
    url, prefix = target
    async with opened(url, prefix) as store:
        state = header()
        await store.create_session(state)
        with pytest.raises(SessionValidationError) as info:
            await store.append_turns(state.session_id, [turn(1, metadata={"x": {1, 2}})])
        assert info.value.field == "turns[0].metadata.x"
        with pytest.raises(SessionValidationError) as info:
            await store.append_turns(
                state.session_id, [turn(2), turn(3, tool_calls=[{"f": object()}])]
            )
        assert info.value.field.startswith("turns[1].tool_calls[0]")
        record = await store.load_record(state.session_id)
        assert record is not None and record.state.turn_count == 0
        assert await store.get_turns(state.session_id) == []


async def test_nul_characters_round_trip_or_are_refused_clearly(
    target: tuple[str, str],
) -> None:
    url, prefix = target
    async with opened(url, prefix) as store:
        state = replace(header(), system_prompt="before\x00after")
        await store.create_session(state)
        await store.append_turns(state.session_id, [turn(1, content="a\x00b")])
        loaded = await store.load(state.session_id)
        assert loaded is not None
        assert loaded.system_prompt == "before\x00after"
        assert loaded.turns[0].content == "a\x00b"
        with pytest.raises(SessionValidationError) as info:
            await store.append_turns(state.session_id, [turn(2, prefix="bad\x00id")])
        assert info.value.field == "turns[0].turn_id"
        assert len(await store.get_turns(state.session_id)) == 1


@pytest.mark.parametrize(
    ("damage", "field"),
    [
        (lambda d: d.pop("role"), "role"),
        (lambda d: d.update(timestamp="yesterday"), "timestamp"),
        (lambda d: d.update(timestamp=None), "timestamp"),
        (lambda d: d.update(extra=1), "extra"),
    ],
)
async def test_a_corrupt_turn_row_names_the_session_and_field(
    sqlite_url: str, damage: Any, field: str
) -> None:
    async with opened(sqlite_url, "ai_session_") as store:
        state = header()
        await store.create_session(state)
        await store.append_turns(state.session_id, [turn(1), turn(2)])
        table = "ai_session_turns"
        data = orjson.loads(
            await _scalar(
                store,
                f"SELECT data FROM {table} WHERE session_id = :s AND seq = 2",
                s=state.session_id,
            )
        )
        damage(data)
        await _exec(
            store,
            f"UPDATE {table} SET data = :d WHERE session_id = :s AND seq = 2",
            d=orjson.dumps(data).decode(),
            s=state.session_id,
        )
        with pytest.raises(CorruptRecordError) as info:
            await store.load(state.session_id)
        assert state.session_id in str(info.value) and field in str(info.value)


async def test_invalid_json_in_a_turn_row_names_the_session(target: tuple[str, str]) -> None:
    url, prefix = target
    async with opened(url, prefix) as store:
        state = header()
        await store.create_session(state)
        await store.append_turns(state.session_id, [turn(1), turn(2)])
        await _exec(
            store,
            f"UPDATE {prefix}turns SET data = '{{oops' WHERE session_id = :s AND seq = 1",
            s=state.session_id,
        )
        for read in (
            store.load(state.session_id),
            store.get_turns(state.session_id, last=2),
            store.get_turn_seqs(state.session_id),
        ):
            with pytest.raises(CorruptRecordError) as info:
                await read
            assert state.session_id in str(info.value) and "data" in str(info.value)


async def test_data_survives_closing_the_store(sqlite_url: str) -> None:
    async with opened(sqlite_url, "ai_session_") as store:
        state = header()
        await store.create_session(state)
        await store.append_turns(state.session_id, [turn(1)])
    async with opened(sqlite_url, "ai_session_") as again:
        loaded = await again.load(state.session_id)
        assert loaded is not None and [t.turn_id for t in loaded.turns] == ["t1"]
    with pytest.raises(StoreUnavailableError):
        await store.load(state.session_id)  # closed


# ------------------------------------------------------------ processes
def _append_worker(url: str, prefix: str, session_id: str, worker: int, count: int) -> None:
    async def run() -> None:
        async with opened(url, prefix, pool_size=2) as store:
            for i in range(count):
                await store.append_turns(session_id, [turn(i, prefix=f"w{worker}-")])

    asyncio.run(run())


def _create_worker(url: str, prefix: str, user: str, attempts: int, cap: int) -> None:
    async def run() -> None:
        async with opened(url, prefix, pool_size=2) as store:
            for _ in range(attempts):
                with contextlib.suppress(SessionCapacityError):
                    await store.create_session(header(user), max_live_per_user=cap)

    asyncio.run(run())


def _run_processes(target: Any, args: list[tuple[Any, ...]], timeout: float = 120) -> None:
    procs = [SPAWN.Process(target=target, args=a) for a in args]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    for p in procs:
        if p.is_alive():
            p.kill()
    assert [p.exitcode for p in procs] == [0] * len(procs)


async def test_four_processes_append_to_one_session_and_lose_nothing(
    target: tuple[str, str],
) -> None:
    url, prefix = target
    async with opened(url, prefix) as store:
        state = header()
        await store.create_session(state)
        await asyncio.to_thread(
            _run_processes,
            _append_worker,
            [(url, prefix, state.session_id, w, 250) for w in range(4)],
        )
        loaded = await store.load(state.session_id)
        assert loaded is not None
        ids = [t.turn_id for t in loaded.turns]
        assert len(ids) == 1000 and len(set(ids)) == 1000
        assert loaded.turn_count == 1000 and loaded.total_tokens == 2000
        seqs = [s for s, _ in await store.get_turn_seqs(state.session_id)]
        assert seqs == list(range(1, 1001))
        for w in range(4):  # each process's turns in its own order
            mine = [int(i.split("-")[1]) for i in ids if i.startswith(f"w{w}-")]
            assert mine == list(range(250))


async def test_user_cap_holds_under_creates_from_several_processes(
    target: tuple[str, str],
) -> None:
    url, prefix = target
    async with opened(url, prefix) as store:
        await asyncio.to_thread(
            _run_processes, _create_worker, [(url, prefix, "erin", 8, 10) for _ in range(4)]
        )
        assert await store.count_live_sessions("erin") == 10
        page = await store.list_user_sessions("erin", limit=100)
        assert len(page.items) == 10


def _wait_for(condition: Any, timeout: float) -> None:
    """Poll ``condition`` (blocking; run it in a thread) until true or ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def _endless_writer(url: str, prefix: str, session_id: str, progress: Any) -> None:
    async def run() -> None:
        async with opened(url, prefix, pool_size=1) as store:
            n = 0
            while True:  # killed by the test
                batch = [turn(n + k) for k in range(3)]
                await store.append_turns(session_id, batch)
                n += 3
                progress.value = n

    asyncio.run(run())


async def test_a_writer_killed_mid_stream_leaves_a_whole_session(
    target: tuple[str, str],
) -> None:
    url, prefix = target
    async with opened(url, prefix) as store:
        state = header()
        await store.create_session(state)
        progress = SPAWN.Value("i", 0)
        proc = SPAWN.Process(target=_endless_writer, args=(url, prefix, state.session_id, progress))
        proc.start()
        await asyncio.to_thread(_wait_for, lambda: progress.value >= 60, 60)
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        await asyncio.to_thread(proc.join, 30)
        assert proc.exitcode == -signal.SIGKILL
        record = await store.load_record(state.session_id)
        assert record is not None
        rows = await _scalar(
            store,
            f"SELECT COUNT(*) FROM {prefix}turns WHERE session_id = :s AND live = 1",
            s=state.session_id,
        )
        assert record.state.turn_count == rows >= 60
        assert rows % 3 == 0  # batches of three: all or nothing
        loaded = await store.load(state.session_id)
        assert loaded is not None and len(loaded.turns) == rows
        assert [t.turn_id for t in loaded.turns] == [f"t{i}" for i in range(rows)]
        await store.append_turns(state.session_id, [turn(rows)])  # still writable


# ---------------------------------------------------- PostgreSQL outages
def _down_url(port: int) -> str:
    return f"postgresql://postgres:s3cret-pw@127.0.0.1:{port}/test"


async def test_store_reports_postgres_down() -> None:
    store = DatabaseSessionStore(_down_url(_free_port()), table_prefix="down_")
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        await store.initialize()
    assert time.monotonic() - started < 10
    message = str(info.value)
    assert "s3cret-pw" not in message and "***" in message and "127.0.0.1" in message
    with pytest.raises(StoreUnavailableError):
        await store.ping()
    await store.close()
    await store.close()


async def test_app_boot_fails_clearly_when_postgres_is_down() -> None:
    module = SessionModule.configure(
        {"backend": "database", "database_url": _down_url(_free_port())},
        enable_cleanup_scheduler=False,
    )
    with pytest.raises(StoreUnavailableError) as info:
        async with Application.boot(modules=[module]):
            pytest.fail("the application booted without its database")
    assert "s3cret-pw" not in str(info.value)
    app = Application()
    app.add_module(module)
    with pytest.raises(StoreUnavailableError):
        await app.start()
    assert (await app.health_check()).status == HealthStatus.UNHEALTHY
    # The provider itself (what the app asks once running) names the problem.
    [provider_cls] = module.providers
    provider = provider_cls()
    container = Container()
    await provider.register(container)
    with pytest.raises(StoreUnavailableError):
        await provider.boot(container)
    report = await provider.health_check(timeout=5)
    await provider.shutdown()
    assert report.status == HealthStatus.UNHEALTHY
    assert "unreachable" in (report.message or "") and "***" in (report.message or "")
    assert "s3cret-pw" not in (report.message or "")


async def _terminate(application_name: str) -> int:
    url = normalise_url(POSTGRES_URL).url.set(drivername="postgresql")
    conn = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        killed: int = await conn.fetchval(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = $1 AND pid <> pg_backend_pid()",
            application_name,
        )
        return killed
    finally:
        await conn.close()


async def test_reconnects_after_its_connections_are_terminated(pg_prefix: str) -> None:
    async with opened(POSTGRES_URL, pg_prefix, pool_size=3) as store:
        state = header()
        await store.create_session(state)
        await asyncio.gather(*(store.append_turns(state.session_id, [turn(i)]) for i in range(6)))
        assert await _terminate(f"lexigram-ai-session:{pg_prefix}") >= 1
        await store.append_turns(state.session_id, [turn(6)])  # a write straight after
        assert await _terminate(f"lexigram-ai-session:{pg_prefix}") >= 1
        await asyncio.sleep(0.1)  # the driver has seen the connections close
        await store.ping()
        assert await _terminate(f"lexigram-ai-session:{pg_prefix}") >= 1
        loaded = await store.load(state.session_id)  # a read straight after the "restart"
        assert loaded is not None
        assert sorted(t.turn_id for t in loaded.turns) == sorted(f"t{i}" for i in range(7))
        assert loaded.turn_count == 7


class TcpProxy:
    """A TCP forwarder to PostgreSQL that a test can take down and bring back."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = _free_port()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Listen on ``self.port``."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Close the listener and every forwarded connection (a server going down)."""
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            dst.transport.abort()


async def test_running_app_survives_a_postgres_restart(pg_prefix: str) -> None:
    proxy = TcpProxy(("127.0.0.1", 5432))
    await proxy.start()
    module = SessionModule.configure(
        {
            "backend": "database",
            "database_url": f"postgresql://postgres:s3cret-pw@127.0.0.1:{proxy.port}/test",
            "table_prefix": pg_prefix,
            "auto_checkpoint_interval": 0,
        },
        enable_cleanup_scheduler=False,
    )
    try:
        async with Application.boot(modules=[module]) as app:
            manager = await app.container.resolve(SessionManagerProtocol)
            state = await manager.create("alice")
            for i in range(5):
                await manager.add_turn(state.session_id, turn(i))
            health = await app.health_check()
            assert health.status == HealthStatus.HEALTHY

            await proxy.stop()  # the server goes away
            down = await app.health_check()
            [session] = [c for c in down.components if c.component == "session"]
            assert session.status == HealthStatus.UNHEALTHY
            assert "s3cret-pw" not in (session.message or "")
            with pytest.raises(StoreUnavailableError):
                await manager.add_turn(state.session_id, turn(99))

            await proxy.start()  # and comes back
            assert (await app.health_check()).status == HealthStatus.HEALTHY
            await manager.add_turn(state.session_id, turn(5))
            loaded = await manager.get_state(state.session_id)
            assert loaded is not None
            assert [t.turn_id for t in loaded.turns] == [f"t{i}" for i in range(6)]
    finally:
        with contextlib.suppress(AssertionError):
            await proxy.stop()


async def test_a_shared_engine_is_used_and_left_open(sqlite_url: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(sqlite_url)
    try:
        first = DatabaseSessionStore(engine=engine, table_prefix="a_")
        second = DatabaseSessionStore(engine=engine, table_prefix="b_")
        for store in (first, second):
            await store.initialize()
        state = header()
        await first.create_session(state)
        await first.append_turns(state.session_id, [turn(1)])
        assert await second.load(state.session_id) is None  # another prefix, other tables
        await first.close()
        async with engine.connect() as conn:  # the engine still works
            count = await conn.execute(text("SELECT COUNT(*) FROM a_turns"))
            assert count.scalar() == 1
        await second.close()
    finally:
        await engine.dispose()


async def test_a_sqlite_directory_that_cannot_be_made_is_a_store_error(tmp_path: Any) -> None:
    """A file where the directory should be (as a read-only or full file system would):
    StoreUnavailableError naming the URL, not a raw OSError."""
    (tmp_path / "taken").write_text("a file, not a directory")
    store = DatabaseSessionStore(f"sqlite+aiosqlite:///{tmp_path / 'taken' / 'sub' / 's.db'}")
    with pytest.raises(StoreUnavailableError) as info:
        await store.initialize()
    assert "create the directory of" in str(info.value) and "s.db" in str(info.value)
    await store.close()
