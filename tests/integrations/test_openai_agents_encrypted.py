"""The SDK's own ``EncryptedSession`` over our adapter, on every backend.

``EncryptedSession`` stores envelopes ``{"__enc__": 1, "v", "kid", "payload"}``; the
adapter must store them exactly (as neutral ``data`` turns) and give them back
unchanged, so that the SDK can decrypt, expire (TTL), pop and clear them. Each test
runs the same calls on ``EncryptedSession`` over the SDK's ``SQLiteSession`` and
compares. The SDK's clock and its tokens' are a settable one, so TTL expiry needs no sleep.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import Runner, SQLiteSession
from agents.extensions.memory import encrypt_session
from agents.extensions.memory.encrypt_session import EncryptedSession
from cryptography.fernet import Fernet

from lexigram.ai.session.integrations.openai_agents import (
    ENCRYPTED_KIND,
    ITEM_TYPE_KEY,
    NEUTRAL_ROLE,
    OpenAIAgentsSession,
)

from .conftest import MakeManager, sample_items
from .scripted import ScriptedModel, weather_agent, weather_script

KEY = Fernet.generate_key().decode("ascii")
TTL = 600
ENVELOPE_KEYS = {"__enc__", "v", "kid", "payload"}


class _FernetClock:
    """A settable clock for the SDK's ``EncryptedSession`` and its Fernet tokens.

    Stands in for the ``time`` module inside the SDK's ``encrypt_session`` (its own
    expiry cut-off), and gives the time to :class:`_ClockFernet`.
    """

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now


def _clock_fernet(clock: _FernetClock) -> type[Fernet]:
    """Fernet whose tokens are made and judged at ``clock``'s time.

    Through Fernet's own ``encrypt_at_time`` / ``decrypt_at_time``: since
    ``cryptography`` 51 Fernet is implemented in Rust and reads the system clock there,
    so replacing ``time`` inside ``cryptography.fernet`` no longer reaches it.
    """

    class _ClockFernet(Fernet):
        def encrypt(self, data: bytes) -> bytes:
            return self.encrypt_at_time(data, int(clock.now))

        def decrypt(self, token: bytes | str, ttl: int | None = None) -> bytes:
            if ttl is None:
                return super().decrypt(token)
            return self.decrypt_at_time(token, ttl, int(clock.now))

    return _ClockFernet


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[_FernetClock]:
    fake = _FernetClock()
    monkeypatch.setattr(encrypt_session, "time", fake)
    monkeypatch.setattr(encrypt_session, "Fernet", _clock_fernet(fake))
    yield fake


@pytest.fixture
def sdk_sqlite(tmp_path: Path) -> Iterator[SQLiteSession]:
    session = SQLiteSession("reference", db_path=tmp_path / "sdk.db")
    yield session
    session.close()


def _encrypted(underlying: Any, session_id: str = "conversation-1") -> EncryptedSession:
    # Same session id (the key derivation salt) on both sides: identical plaintexts.
    return EncryptedSession(session_id, underlying, KEY, ttl=TTL)


async def _ours(make_manager: MakeManager) -> OpenAIAgentsSession:
    manager = await make_manager()
    return await OpenAIAgentsSession.create(manager, user_id="alice")


async def _assert_stored_as_envelopes(adapter: OpenAIAgentsSession, count: int) -> None:
    raw = await adapter.get_items()
    assert len(raw) == count
    assert all(isinstance(i, dict) and set(i) == ENVELOPE_KEYS for i in raw)
    turns = await adapter.manager.get_turns(adapter.session_id)
    assert [t.role for t in turns] == [NEUTRAL_ROLE] * count
    assert {t.metadata[ITEM_TYPE_KEY] for t in turns} <= {ENCRYPTED_KIND}
    assert all(t.content == "[encrypted item]" for t in turns)


async def test_a_runner_keeps_its_history_encrypted_in_our_session(
    make_manager: MakeManager, sdk_sqlite: SQLiteSession, clock: _FernetClock
) -> None:
    adapter = await _ours(make_manager)
    ours, reference = _encrypted(adapter), _encrypted(sdk_sqlite)
    for session in (ours, reference):
        model = ScriptedModel(weather_script())
        agent = weather_agent(model)
        first = await Runner.run(agent, "Weather in Paris?", session=session)
        assert first.final_output == "It is sunny in Paris."
        second = await Runner.run(agent, "What did I ask?", session=session)
        assert second.final_output == "You asked about the weather in Paris."
        seen = model.inputs[2]  # the history the Runner decrypted for the third call
        assert isinstance(seen, list) and seen[0] == {
            "role": "user", "content": "Weather in Paris?"
        }
    expected = await reference.get_items()
    assert len(expected) == 7
    assert await ours.get_items() == expected
    await _assert_stored_as_envelopes(adapter, 7)
    # The raw envelopes come back exactly as the SDK wrote them to its own store's wrapper.
    raw = await adapter.get_items()
    assert [list(e) for e in raw] == [["__enc__", "v", "kid", "payload"]] * 7
    # Another manager on the same store (a restart) decrypts the same history.
    again = OpenAIAgentsSession(await make_manager(), adapter.session_id)
    assert await _encrypted(again).get_items() == expected
    # A wrong key sees nothing, and stores nothing.
    wrong = EncryptedSession("conversation-1", again, Fernet.generate_key().decode(), ttl=TTL)
    assert await wrong.get_items() == []
    assert len(await again.get_items()) == 7


async def test_add_get_with_limits_pop_and_clear_match_the_sdk(
    make_manager: MakeManager, sdk_sqlite: SQLiteSession, clock: _FernetClock
) -> None:
    adapter = await _ours(make_manager)
    ours, reference = _encrypted(adapter), _encrypted(sdk_sqlite)
    items = sample_items()
    for session in (ours, reference):
        await session.add_items(items[:4])
        await session.add_items(items[4:])
    for limit in (None, 0, 1, 3, len(items), 10_000):
        got = await ours.get_items(limit)
        assert got == await reference.get_items(limit), limit
    assert await ours.get_items() == items
    assert await ours.get_items(limit=3) == items[-3:]
    for _ in range(3):
        popped = await ours.pop_item()
        assert popped == await reference.pop_item()
    assert popped == items[-3]
    assert await ours.get_items() == items[:-3] == await reference.get_items()
    await _assert_stored_as_envelopes(adapter, len(items) - 3)
    await ours.clear_session()
    await reference.clear_session()
    assert await ours.get_items() == [] == await reference.get_items()
    assert await adapter.get_items() == []
    assert await ours.pop_item() is None and await reference.pop_item() is None
    header = await adapter.manager.get_header(adapter.session_id)
    assert header is not None and header.turn_count == 0


async def test_expired_envelopes_are_skipped_and_drained_like_the_sdk(
    make_manager: MakeManager, sdk_sqlite: SQLiteSession, clock: _FernetClock
) -> None:
    adapter = await _ours(make_manager)
    ours, reference = _encrypted(adapter), _encrypted(sdk_sqlite)
    old = [{"role": "user", "content": f"old {n}"} for n in range(4)]
    new = [{"role": "user", "content": f"new {n}"} for n in range(3)]
    for session in (ours, reference):
        await session.add_items(old)
    clock.now += TTL + 1  # every old envelope is past its TTL now
    for session in (ours, reference):
        await session.add_items(new)
    for limit in (None, 1, 2, 3, 5, 7):
        got = await ours.get_items(limit)
        assert got == await reference.get_items(limit), limit
    assert await ours.get_items() == new
    assert await ours.get_items(limit=2) == new[-2:]
    # Expired records stay in the store until popped or cleared.
    await _assert_stored_as_envelopes(adapter, len(old) + len(new))
    for expected in reversed(new):
        assert await ours.pop_item() == expected == await reference.pop_item()
    # Only expired envelopes remain: pop drains them and finds nothing readable.
    assert await ours.pop_item() is None
    assert await reference.pop_item() is None
    assert await adapter.get_items() == []
    assert await sdk_sqlite.get_items() == []
    # Fresh writes after the drain work as before.
    await ours.add_items([{"role": "user", "content": "after"}])
    assert await ours.get_items() == [{"role": "user", "content": "after"}]
    await _assert_stored_as_envelopes(adapter, 1)
