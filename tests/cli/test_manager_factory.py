"""The CLI's manager-level commands run through any ``SessionManagerAPI`` they are given."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any, ClassVar

from lexigram.ai.session import SessionManager
from lexigram.ai.session.cli.operations import build_config
from lexigram.ai.session.cli.privacy_commands import run_erase_user, run_export_user
from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.manager.protocol import SessionManagerAPI
from lexigram.ai.session.stores.base import SessionStore


class Audited:
    """A wrapped manager (not a subclass) that records the calls made through it."""

    calls: ClassVar[list[str]] = []

    def __init__(self, store: SessionStore, config: SessionConfig) -> None:
        self._inner = SessionManager(store, config)

    def __getattr__(self, name: str) -> Any:
        Audited.calls.append(name)
        return getattr(self._inner, name)


def test_erase_and_export_run_through_the_given_manager(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 's.db'}"

    async def write() -> str:
        async with SessionManager.open(database_url=url) as manager:
            state = await manager.create("alice")
            await manager.add_message(state.session_id, "user", "hello")
            assert isinstance(Audited(manager.store, manager.config), SessionManagerAPI)
            return state.session_id

    async def read(session_id: str) -> object:
        async with SessionManager.open(database_url=url) as manager:
            return await manager.get_state(session_id)

    session_id = asyncio.run(write())
    config = build_config(database_url=url, base=SessionConfig())
    out, err = io.StringIO(), io.StringIO()
    Audited.calls.clear()
    assert run_export_user(config, "alice", None, out=out, err=err, manager=Audited) == 0
    assert '"hello"' in out.getvalue() and Audited.calls == ["export_user"]
    assert run_erase_user(config, "alice", as_json=False, out=out, err=err, manager=Audited) == 0
    assert Audited.calls == ["export_user", "erase_user"]
    assert asyncio.run(read(session_id)) is None
