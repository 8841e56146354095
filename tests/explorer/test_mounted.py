"""``create_app(SessionConfig)`` mounted in another Starlette app.

Starlette's ``Mount`` does not pass the lifespan on, so the explorer's store was never
opened and every request answered a bare 500 (an outside audit). It opens on the first
request and ``aclose()`` closes it.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount

from lexigram.ai.session import SessionConfig
from lexigram.ai.session.explorer import ExplorerSettings, create_app
from lexigram.ai.session.manager.core import SessionManagerImpl


async def test_a_mounted_explorer_over_a_config_opens_its_store_on_first_request(
    tmp_path: Path,
) -> None:
    config = SessionConfig(
        backend="sql", database_url=f"sqlite+aiosqlite:///{tmp_path / 's.db'}", session_ttl=0
    )
    async with SessionManagerImpl.open(config) as manager:
        await manager.create("alice", session_id="mounted-1")
    explorer = create_app(config, ExplorerSettings())
    app = Starlette(routes=[Mount("/explorer", app=explorer)])
    transport = httpx.ASGITransport(app=app)  # runs no lifespan, as a mount does not
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            listed = await http.get("/explorer/api/sessions", params={"user": "alice"})
            page = await http.get("/explorer/", params={"user": "alice"})
    finally:
        await explorer.aclose()
    assert listed.status_code == 200, listed.text
    assert [s["session_id"] for s in listed.json()["sessions"]] == ["mounted-1"]
    assert page.status_code == 200 and "mounted-1" in page.text
    await explorer.aclose()  # twice is harmless


async def test_a_mounted_explorer_over_an_unreachable_store_answers_503(tmp_path: Path) -> None:
    config = SessionConfig(
        backend="redis", redis_url="redis://127.0.0.1:1/0", session_ttl=0
    )
    explorer = create_app(config, ExplorerSettings())
    transport = httpx.ASGITransport(app=Starlette(routes=[Mount("/x", app=explorer)]))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        answer = await http.get("/x/api/info")
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "LEX_ERR_SES_110"
