"""End to end: examples/web_chat.py served by a real uvicorn on a loopback port."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from starlette.testclient import TestClient

from tests.services import REDIS_URL, require_redis

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}


@contextmanager
def _serve(env: dict[str, str]) -> Iterator[str]:
    """Run uvicorn on a socket bound here (no port race) and yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    command = [
        sys.executable, "-m", "uvicorn", "web_chat:app",
        "--app-dir", str(EXAMPLES), "--fd", str(sock.fileno()),
        "--log-level", "warning", "--lifespan", "on",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        env={**os.environ, **env},
        pass_fds=(sock.fileno(),),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=str(env.get("WEB_CHAT_CWD", ROOT)),
    )
    sock.close()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                output = process.stdout.read().decode() if process.stdout else ""
                raise AssertionError(f"uvicorn exited with {process.returncode}:\n{output}")
            try:
                if httpx.get(f"{base}/health", timeout=1).json() == {"ok": True}:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("uvicorn did not become ready in 30 s")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()


def _env(directory: Path) -> dict[str, str]:
    # the example's own backend (SQL on SQLite), on a file of this test
    return {
        "WEB_CHAT_COOKIE_SECRET": secrets.token_urlsafe(32),
        "WEB_CHAT_DATABASE_URL": f"sqlite+aiosqlite:///{directory / 'chat.db'}",
        "WEB_CHAT_CWD": str(directory),
    }


@pytest.fixture
def server_env(tmp_path: Path) -> dict[str, str]:
    return _env(tmp_path)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One uvicorn for the tests that do not restart it."""
    with _serve(_env(tmp_path_factory.mktemp("web_chat"))) as base:
        yield base


@asynccontextmanager
async def _client(base: str, **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base, timeout=10, **kwargs) as http:
        yield http


def _chat(http: httpx.AsyncClient, message: str, **kwargs: Any) -> Any:
    return http.post("/chat", json={"message": message}, **kwargs)


async def test_web_chat_end_to_end(server: str) -> None:
    base = server
    # an authenticated API client: the id comes back in X-Session-ID, and goes back in it
    async with _client(base) as api:
        first = await _chat(api, "hello there", headers=ALICE)
        assert first.status_code == 200
        session_id = first.headers["x-session-id"]
        second = await _chat(api, "and again", headers={**ALICE, "X-Session-ID": session_id})
        assert second.json()["turn_count"] == 4 and "x-session-id" not in second.headers
        history = await api.get("/history", headers={**ALICE, "X-Session-ID": session_id})
        assert [t["content"] for t in history.json()["turns"] if t["role"] == "user"] == [
            "hello there",
            "and again",
        ]
        # bob sending alice's id sees nothing of hers, and chatting gives him his own
        bob_view = await api.get("/history", headers={**BOB, "X-Session-ID": session_id})
        assert bob_view.json() == {"turns": []}
        bob_chat = await _chat(api, "hi", headers={**BOB, "X-Session-ID": session_id})
        assert bob_chat.headers["x-session-id"] != session_id
        # requests that never ask for a session create none
        for _ in range(20):
            assert (await api.get("/history")).json() == {"turns": []}
        unknown = await api.get("/history", headers={**ALICE, "X-Session-ID": "x" * 22})
        assert unknown.json() == {"turns": []}

    # a browser-like anonymous client with a cookie jar
    async with _client(base) as browser:
        created = await _chat(browser, "hi from a browser")
        [cookie] = created.headers.get_list("set-cookie")
        attrs = [a.strip().lower() for a in cookie.split(";")]
        assert "httponly" in attrs and "samesite=lax" in attrs and "max-age=3600" in attrs
        assert "path=/" in attrs and "secure" not in attrs  # plain http on loopback
        again = await _chat(browser, "me again")
        assert again.json()["turn_count"] == 4
        async with _client(base, cookies={"lexigram_session": "forged.cookie.value"}) as evil:
            assert (await evil.get("/history")).json() == {"turns": []}
        ended = await browser.post("/end")
        assert ended.json() == {"closed": True}
        assert "max-age=0" in ended.headers["set-cookie"].lower()
        assert (await browser.get("/history")).json() == {"turns": []}


async def test_concurrent_clients_against_uvicorn(server: str) -> None:
    base = server

    async def conversation(n: int) -> tuple[int, list[str]]:
        async with _client(base) as http:
            for i in range(3):
                response = await _chat(http, f"client {n} message {i}")
                assert response.status_code == 200, response.text
            turns = (await http.get("/history")).json()["turns"]
            return n, [t["content"] for t in turns if t["role"] == "user"]

    results = await asyncio.gather(*(conversation(n) for n in range(12)))
    for n, messages in results:
        assert messages == [f"client {n} message {i}" for i in range(3)]


async def test_sessions_and_cookies_survive_a_restart(
    server_env: dict[str, str], tmp_path: Path
) -> None:
    with _serve(server_env) as base:
        async with _client(base) as browser:
            await _chat(browser, "remember me")
            jar = dict(browser.cookies)
    assert (tmp_path / "chat.db").stat().st_size > 0
    with _serve(server_env) as base:  # same SQLite file, same secret
        async with _client(base, cookies=jar) as browser:
            turns = (await browser.get("/history")).json()["turns"]
            more = await _chat(browser, "still here?")
    assert [t["content"] for t in turns][:1] == ["remember me"]
    assert more.json()["turn_count"] == 4 and "x-session-id" not in more.headers
    # with another secret the old cookie no longer verifies
    with _serve({**server_env, "WEB_CHAT_COOKIE_SECRET": secrets.token_urlsafe(32)}) as base:
        async with _client(base, cookies=jar) as browser:
            assert (await browser.get("/history")).json() == {"turns": []}


def _load_example(monkeypatch: pytest.MonkeyPatch, **env: str) -> Any:
    """A fresh copy of examples/web_chat.py, imported with ``env`` set."""
    for name in ("WEB_CHAT_BACKEND", "WEB_CHAT_DATABASE_URL", "WEB_CHAT_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    # the example sets these when they are unset: undone after the test
    monkeypatch.setenv("LEX_QUIET", os.environ.get("LEX_QUIET", "1"))
    monkeypatch.setenv("LEX_LOGGING__LEVEL", os.environ.get("LEX_LOGGING__LEVEL", "WARNING"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location(
        f"web_chat_{secrets.token_hex(4)}", EXAMPLES / "web_chat.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _chat_through(module: Any) -> None:
    """Chat, read back and end a conversation against the example's app."""
    with TestClient(module.app) as http:
        first = http.post("/chat", json={"message": "hello"})
        assert first.status_code == 200, first.text
        again = http.post("/chat", json={"message": "again"})
        assert again.json()["turn_count"] == 4
        assert len(http.get("/history").json()["turns"]) == 4
        ended = http.post("/end")
        assert ended.json() == {"closed": True}
        assert "max-age=0" in ended.headers["set-cookie"].lower()


@pytest.mark.parametrize("backend", ["sql", "memory"])
def test_the_example_boots_on_the_backend_it_is_given(
    backend: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``WEB_CHAT_BACKEND=memory`` failed to boot: the example always passed database_url."""
    module = _load_example(
        monkeypatch,
        WEB_CHAT_BACKEND=backend,
        WEB_CHAT_COOKIE_SECRET=secrets.token_urlsafe(32),
        WEB_CHAT_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}",
    )
    assert module.SETTINGS["backend"] == backend
    assert ("database_url" in module.SETTINGS) is (backend == "sql")
    assert "redis_url" not in module.SETTINGS
    _chat_through(module)


def test_the_example_boots_on_redis_at_its_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    require_redis()
    module = _load_example(
        monkeypatch,
        WEB_CHAT_BACKEND="redis",
        WEB_CHAT_COOKIE_SECRET=secrets.token_urlsafe(32),
        WEB_CHAT_REDIS_URL=REDIS_URL,
    )
    assert module.SETTINGS["redis_url"] == REDIS_URL and "database_url" not in module.SETTINGS
    prefix = f"test_web_chat_{secrets.token_hex(4)}"
    module.SETTINGS["key_prefix"] = prefix  # this test's own keys
    client = redis.Redis.from_url(REDIS_URL)
    try:
        _chat_through(module)
        assert list(client.scan_iter(match=f"{prefix}*"))  # it did keep them in Redis
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()


def test_the_example_defaults_to_sql_and_a_local_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _load_example(monkeypatch).SETTINGS["backend"] == "sql"
    module = _load_example(monkeypatch, WEB_CHAT_BACKEND="redis")
    assert module.SETTINGS["redis_url"] == "redis://127.0.0.1:6379/0"
