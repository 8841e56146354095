"""``SessionManager.open()``: a manager over its own store, without an Application."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram.ai.session import InMemorySessionStore, SessionConfig, SessionManager
from lexigram.ai.session.exceptions import StoreUnavailableError
from lexigram.ai.session.stores.registry import register_backend, unregister_backend
from tests.services import POSTGRES_URL, REDIS_URL, require_postgres, require_redis

SWEEPER = "ai_session.sweeper"


def sweepers() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == SWEEPER and not t.done()]


@pytest.fixture(params=["sqlite", "postgres", "redis"])
async def persistent(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[dict[str, Any]]:
    """Settings of a store that keeps its data between two opens (cleaned up afterwards)."""
    prefix = f"lxopen{uuid.uuid4().hex[:10]}_"
    if request.param == "sqlite":
        yield {"database_url": f"sqlite+aiosqlite:///{tmp_path / 'open.db'}"}
    elif request.param == "postgres":
        from lexigram.ai.session.stores.database import drop_schema

        require_postgres()
        try:
            yield {"database_url": POSTGRES_URL, "table_prefix": prefix}
        finally:
            await drop_schema(POSTGRES_URL, table_prefix=prefix)
    else:
        from tests.stores.backends.redis import drop_prefix

        require_redis()
        settings = {"redis_url": REDIS_URL, "key_prefix": f"lxtest:{prefix}"}
        try:
            yield settings
        finally:
            async with SessionManager.open(settings) as manager:
                store: Any = manager.store
                await drop_prefix(store.client, store.keys.pattern)


async def test_in_memory_by_default() -> None:
    async with SessionManager.open() as manager:
        assert isinstance(manager, SessionManager)
        assert isinstance(manager.store, InMemorySessionStore)
        state = await manager.create("u1")
        await manager.add_message(state.session_id, "user", "hello")
        turns = await manager.get_turns(state.session_id)
        assert [t.content for t in turns] == ["hello"]


async def test_data_survives_a_second_open(persistent: dict[str, Any]) -> None:
    async with SessionManager.open(persistent) as manager:
        expected = "sql" if "database_url" in persistent else "redis"
        assert manager.config.backend == expected  # the URL selected the backend
        state = await manager.create("u-open", {"k": "v"})
        await manager.add_message(state.session_id, "user", "kept")
    async with SessionManager.open(**persistent) as again:
        stored = await again.get_state(state.session_id)
        assert stored is not None and stored.metadata == {"k": "v"}
        assert [t.content for t in stored.turns] == ["kept"]


class RecordingStore(InMemorySessionStore):
    """An in-memory store that records its lifecycle calls."""

    instances: ClassVar[list[RecordingStore]] = []
    fail_initialize: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        RecordingStore.instances.append(self)

    async def initialize(self) -> None:
        self.calls.append("initialize")
        if RecordingStore.fail_initialize:
            try:
                raise ConnectionRefusedError("refused")
            except ConnectionRefusedError as exc:
                raise StoreUnavailableError("backend down: refused") from exc

    async def close(self) -> None:
        self.calls.append("close")
        await super().close()


@pytest.fixture
def recording() -> Iterator[type[RecordingStore]]:
    RecordingStore.instances = []
    RecordingStore.fail_initialize = False
    register_backend("open_test_recording", lambda config: RecordingStore())
    try:
        yield RecordingStore
    finally:
        unregister_backend("open_test_recording")


async def test_initialized_on_entry_closed_on_exit(recording: type[RecordingStore]) -> None:
    async with SessionManager.open(backend="open_test_recording") as manager:
        store = recording.instances[0]
        assert manager.store is store and store.calls == ["initialize"]
        assert sweepers() == []  # no sweeper unless asked
    assert store.calls == ["initialize", "close"]


async def test_closed_when_the_block_raises(recording: type[RecordingStore]) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with SessionManager.open(backend="open_test_recording", cleanup=True):
            assert len(sweepers()) == 1
            raise RuntimeError("boom")
    assert recording.instances[0].calls == ["initialize", "close"]
    assert sweepers() == []


async def test_sweeper_runs_inside_the_block_only(recording: type[RecordingStore]) -> None:
    async with SessionManager.open({"backend": "open_test_recording"}, cleanup=True):
        assert len(sweepers()) == 1
    assert sweepers() == []


async def test_failed_initialize_closes_and_raises_one_clear_error(
    recording: type[RecordingStore],
) -> None:
    recording.fail_initialize = True
    with pytest.raises(StoreUnavailableError, match="backend down") as info:
        async with SessionManager.open(backend="open_test_recording"):
            pytest.fail("the block must not run")
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert recording.instances[0].calls == ["initialize", "close"]


async def test_config_forms_and_overrides() -> None:
    async with SessionManager.open(SessionConfig(session_ttl=50), max_turns_per_session=3) as m:
        assert (m.config.session_ttl, m.config.max_turns_per_session) == (50, 3)
    async with SessionManager.open({"session_ttl": 60}, max_turns_per_session=4) as m:
        assert (m.config.session_ttl, m.config.max_turns_per_session) == (60, 4)
        assert m.store.session_ttl == 60


@pytest.mark.parametrize(
    ("config", "overrides", "fragment"),
    [
        (None, {"sesion_ttl": 5}, "did you mean 'session_ttl'"),
        (None, {"env": "production"}, "ai_session.backend"),  # in-memory refused as at boot
        (None, {"enabled": False}, "ai_session.enabled"),
        ({"backend": "cache"}, {"database_url": "sqlite:///x.db"}, "ai_session.database_url"),
        (SessionConfig(), {"redis_url": "redis://h/abc"}, "ai_session.redis_url"),
        ("backend=database", {}, "expected a SessionConfig or a dict"),
    ],
)
async def test_same_validation_as_boot(
    config: Any, overrides: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        async with SessionManager.open(config, **overrides):
            pytest.fail("the block must not run")


def test_a_failed_open_logs_no_traceback_and_no_password(tmp_path: Path) -> None:
    """Without logging configured, the framework prints DEBUG lines with rich tracebacks,
    whose local variables would show the URL's password: the failure is logged as one
    line per cause, secrets masked."""
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = (
        "import asyncio\n"
        "from lexigram.ai.session import SessionManager\n"
        "secret = 'hun' + 'ter2-pw'\n"
        f"url = f'postgresql+asyncpg://app:{{secret}}@127.0.0.1:{port}/app'\n"
        "async def main():\n"
        "    async with SessionManager.open(database_url=url):\n"
        "        pass\n"
        "try:\n"
        "    asyncio.run(main())\n"
        "except Exception as exc:\n"
        "    print('raised', type(exc).__name__)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEX_")}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=120, check=False,
    )
    output = result.stdout + result.stderr
    assert "raised StoreUnavailableError" in output
    assert "hunter2-pw" not in output
    assert len(output.splitlines()) < 40, output[-3000:]


class _Recorder:
    """Stands in for a module's logger: keeps the warnings."""

    def __init__(self) -> None:
        self.warned: list[dict[str, object]] = []

    def warning(self, event: str, **fields: object) -> None:
        self.warned.append({"event": event, **fields})

    def debug(self, event: str, **fields: object) -> None:
        pass


LAYERED = "ai_session.config_in_code_ignores_layered"


async def test_open_names_the_layered_storage_settings_it_does_not_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``LEX_AI_SESSION__DATABASE_URL`` beside ``open()`` gave an in-memory store without
    a word (an outside audit), while ``SessionModule.configure()`` warned. open() does not
    read the environment (docs/configuration.md); it now names what it leaves unused,
    by field, never by value."""
    from lexigram.ai.session.manager import standalone

    recorder = _Recorder()
    monkeypatch.setattr(standalone, "logger", recorder)
    monkeypatch.chdir(tmp_path)
    secret_url = f"sqlite+aiosqlite:///{tmp_path}/env.db"
    monkeypatch.setenv("LEX_AI_SESSION__DATABASE_URL", secret_url)
    async with SessionManager.open() as sessions:
        assert isinstance(sessions.store, InMemorySessionStore)
    unused = [w for w in recorder.warned if w["event"] == LAYERED]
    assert len(unused) == 1 and unused[0]["fields"] == ["backend", "database_url"]
    assert secret_url not in repr(unused)
    recorder.warned.clear()
    async with SessionManager.open(session_ttl=60):
        pass
    assert [w["fields"] for w in recorder.warned if w["event"] == LAYERED] == [
        ["backend", "database_url"]
    ]
    recorder.warned.clear()
    # The layered config itself, or a config that uses the same storage: nothing unused.
    async with SessionManager.open(SessionConfig.from_env_profile()):
        pass
    async with SessionManager.open({"backend": "database", "database_url": secret_url}):
        pass
    assert not [w for w in recorder.warned if w["event"] == LAYERED]


async def test_open_without_layered_settings_warns_of_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lexigram.ai.session.manager import standalone

    recorder = _Recorder()
    monkeypatch.setattr(standalone, "logger", recorder)
    monkeypatch.chdir(tmp_path)
    for name in [k for k in os.environ if k.startswith("LEX_AI_SESSION__")]:
        monkeypatch.delenv(name)
    async with SessionManager.open():
        pass
    assert not recorder.warned
