"""Encryption turned on from the configuration, through the module and the container."""

from __future__ import annotations

from pathlib import Path

from lexigram.contracts.ai.session import SessionManagerProtocol

from lexigram import Application
from lexigram.ai.session import SessionConfig, SessionModule
from lexigram.ai.session.encryption import new_key_text
from lexigram.ai.session.stores.encrypted import EncryptedSessionStore


def _files(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file())


async def test_a_booted_application_encrypts_what_it_stores(tmp_path: Path) -> None:
    config = SessionConfig(
        backend="database",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 's.db'}",
        encryption_keys=new_key_text("boot"),
    )
    async with Application.boot(modules=[SessionModule.configure(config)]) as app:
        manager = await app.container.resolve(SessionManagerProtocol)
        assert isinstance(manager.store, EncryptedSessionStore)  # type: ignore[attr-defined]
        state = await manager.create("ida", {"address": "SECRET-ADDRESS-1"})
        await manager.add_message(state.session_id, "user", "SECRET-CONTENT-1")
        loaded = await manager.get_state(state.session_id)
        assert loaded is not None
        assert loaded.turns[0].content == "SECRET-CONTENT-1"
        assert loaded.metadata["address"] == "SECRET-ADDRESS-1"
    raw = _files(tmp_path)
    assert state.session_id.encode() in raw
    assert b"SECRET-CONTENT-1" not in raw and b"SECRET-ADDRESS-1" not in raw
