"""The adapter satisfies the SDK's ``Session`` protocol; the core never imports the SDK."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from agents import SQLiteSession
from agents.memory import Session, SessionSettings

from lexigram.ai.session.exceptions import SessionNotFoundError, SessionValidationError
from lexigram.ai.session.integrations.openai_agents import OpenAIAgentsSession
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.stores.in_memory import InMemorySessionStore


def _manager() -> SessionManagerImpl:
    return SessionManagerImpl(InMemorySessionStore())


async def test_adapter_is_an_sdk_session() -> None:
    adapter = await OpenAIAgentsSession.create(_manager(), user_id="alice")
    assert isinstance(adapter, Session)
    assert adapter.session_id
    assert adapter.session_settings == SessionSettings()


async def test_session_settings_accepts_a_dict_and_rejects_junk() -> None:
    manager = _manager()
    adapter = OpenAIAgentsSession(manager, "s1", session_settings={"limit": 3})
    assert adapter.session_settings == SessionSettings(limit=3)
    with pytest.raises(TypeError) as info:
        OpenAIAgentsSession(manager, "s1", session_settings=42)  # type: ignore[arg-type]
    assert isinstance(info.value, SessionValidationError)
    assert info.value.field == "session_settings"
    with pytest.raises(SessionValidationError) as bad_value:
        OpenAIAgentsSession(manager, "s1", session_settings={"limit": "many"})
    assert bad_value.value.field == "session_settings"


async def test_a_dict_assigned_to_session_settings_works_as_in_the_sdk() -> None:
    """The SDK's sessions take ``session.session_settings = {"limit": 1}`` (its
    EncryptedSession forwards such a value too); get_items raised AttributeError."""
    adapter = OpenAIAgentsSession(_manager(), "s1")
    reference = SQLiteSession("s1")
    items: list[Any] = [{"role": "user", "content": "1"}, {"role": "user", "content": "2"}]
    for session in (adapter, reference):
        await session.add_items(items)
        session.session_settings = {"limit": 1}  # type: ignore[assignment]
    assert await adapter.get_items() == await reference.get_items() == [
        {"role": "user", "content": "2"}
    ]


@pytest.mark.parametrize(
    ("settings", "unknown"),
    [({"limitt": 1}, "limitt"), ({"limit": 2, "max": 3, "b": 1}, "b, max")],
)
def test_unknown_session_settings_raise_type_error_like_the_sdk(
    tmp_path: Path, settings: dict[str, object], unknown: str
) -> None:
    message = f"Unknown session settings: {unknown}"
    with pytest.raises(TypeError, match=message):
        SQLiteSession("reference", db_path=tmp_path / "sdk.db", session_settings=settings)
    with pytest.raises(TypeError, match=message) as info:
        OpenAIAgentsSession(_manager(), "s1", session_settings=settings)
    assert isinstance(info.value, SessionValidationError)
    assert info.value.field == "session_settings"
    assert info.value.code == "LEX_ERR_SES_107"


async def test_items_the_sdk_refuses_with_type_error_are_type_errors_here(tmp_path: Path) -> None:
    manager = _manager()
    adapter = await OpenAIAgentsSession.create(manager, user_id="alice")
    sdk = SQLiteSession("reference", db_path=tmp_path / "sdk.db")
    bad = [{"role": "user", "content": "ok"}, {"role": "user", "content": {1, 2}}]
    try:
        with pytest.raises(TypeError):
            await sdk.add_items(bad)  # type: ignore[list-item]
        with pytest.raises(TypeError, match=r"items\[1\]") as info:
            await adapter.add_items(bad)  # type: ignore[list-item]
        assert isinstance(info.value, SessionValidationError)
        assert info.value.field == "items[1]"
        assert await adapter.get_items() == [] == await sdk.get_items()
    finally:
        sdk.close()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"manager": object(), "session_id": "s"}, "manager"),
     ({"session_id": ""}, "session_id"),
     ({"session_id": 7}, "session_id")],
)
def test_constructor_names_the_bad_field(kwargs: dict[str, object], field: str) -> None:
    args = {"manager": _manager(), **kwargs}
    with pytest.raises(SessionValidationError) as info:
        OpenAIAgentsSession(**args)  # type: ignore[arg-type]
    assert info.value.field == field


async def test_attach_refuses_an_unknown_session() -> None:
    manager = _manager()
    with pytest.raises(SessionNotFoundError):
        await OpenAIAgentsSession.attach(manager, "no-such-session")
    state = await manager.create("bob")
    adapter = await OpenAIAgentsSession.attach(manager, state.session_id)
    assert adapter.session_id == state.session_id


@pytest.mark.parametrize("limit", ["3", 1.5])
async def test_bad_limit_is_named(limit: object) -> None:
    adapter = await OpenAIAgentsSession.create(_manager(), user_id="alice")
    with pytest.raises(SessionValidationError) as info:
        await adapter.get_items(limit=limit)  # type: ignore[arg-type]
    assert info.value.field == "limit"


def test_core_package_never_imports_the_sdk() -> None:
    code = (
        "import sys\n"
        "import lexigram.ai.session as s\n"
        "import lexigram.ai.session.integrations\n"
        "from lexigram.ai.session import SessionManagerImpl, InMemorySessionStore, SessionModule\n"
        "import lexigram.ai.session.manager.core, lexigram.ai.session.stores.in_memory\n"
        "bad = sorted(m for m in sys.modules if m == 'agents' or m.startswith('agents.'))\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "ok"


async def test_an_empty_add_items_is_refused_where_a_write_would_be() -> None:
    from lexigram.ai.session.exceptions import (
        SessionClosedError,
        SessionTransitionError,
    )

    manager = _manager()
    await OpenAIAgentsSession(manager, "fresh").add_items([])  # created on first use: fine
    with pytest.raises(SessionNotFoundError):
        await OpenAIAgentsSession(manager, "nope", create_missing=False).add_items([])
    suspended = await OpenAIAgentsSession.create(manager, user_id="alice")
    await manager.suspend(suspended.session_id)
    with pytest.raises(SessionTransitionError):
        await suspended.add_items([])
    closed = await OpenAIAgentsSession.create(manager, user_id="alice")
    await manager.close(closed.session_id)
    with pytest.raises(SessionClosedError):
        await closed.add_items([])
    assert await closed.get_items() == []


async def test_limits_and_iterables_are_taken_as_the_sdk_takes_them() -> None:
    """``True``/``False`` are 1/0, a limit past 2**53 (``sys.maxsize``) is everything, and
    ``add_items`` takes any iterable, as ``SQLiteSession`` does (found by running the
    SDK's own tests against the adapter: ``limit=sys.maxsize`` raised, naming ``last``)."""
    import sys

    from agents import SQLiteSession
    from agents.memory.session_settings import SessionSettings

    items: list[Any] = [{"role": "user", "content": str(n)} for n in range(3)]
    ours = await OpenAIAgentsSession.create(_manager(), user_id="alice")
    theirs = SQLiteSession("sdk-reference")
    for session in (ours, theirs):
        await session.add_items(item for item in items)  # type: ignore[arg-type]
    for limit in (True, False, sys.maxsize, 2**53, 2**53 - 1, -5):
        assert await ours.get_items(limit=limit) == await theirs.get_items(limit=limit), limit
    everything = await OpenAIAgentsSession.attach(
        ours.manager, ours.session_id, session_settings=SessionSettings(limit=sys.maxsize)
    )
    assert await everything.get_items() == items


@pytest.mark.parametrize("depth", [70, 400, 1000, 5000])
async def test_an_item_nested_too_deep_is_refused_naming_it_however_deep(depth: int) -> None:
    """A thousand levels raised a raw ``RecursionError``, 400 a ``SessionTypeError``
    about orjson's recursion limit (found by an outside bad-input audit)."""
    nested: Any = "x"
    for _ in range(depth):
        nested = {"a": nested}
    adapter = await OpenAIAgentsSession.create(_manager(), user_id="alice")
    with pytest.raises(SessionValidationError) as caught:
        await adapter.add_items([{"role": "user", "content": "hi"}, {"extra": nested}])
    assert caught.value.field.startswith("items[1]")
    assert "nested deeper than 64 levels" in str(caught.value)
    assert await adapter.get_items() == []


async def test_a_timeout_bounds_add_items_whose_hook_hangs() -> None:
    """The adapter waited for the whole write, hooks included, and swallowed further
    cancellations: a ``turn_added`` hook that hangs hung ``Runner.run`` under any
    timeout (a regression audit). The items are stored; the call ends ~1 s later."""
    import asyncio

    from lexigram.hooks import HookRegistry

    from lexigram.ai.session.hooks import HOOK_TURN_ADDED

    hooks = HookRegistry("test")

    async def hangs(**_: Any) -> None:
        await asyncio.Event().wait()

    hooks.register_action(HOOK_TURN_ADDED, hangs)
    manager = SessionManagerImpl(InMemorySessionStore(), hooks=hooks)
    adapter = OpenAIAgentsSession(manager, "hook-hangs")

    async def bounded() -> None:
        async with asyncio.timeout(0.05):
            await adapter.add_items([{"role": "user", "content": "hi"}])

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(bounded(), timeout=10)
    assert [item["content"] for item in await adapter.get_items()] == ["hi"]


async def test_a_cancelled_calls_checkpoint_is_waited_for_before_the_store_closes() -> None:
    """The adapter kept a write it left running in a set of its own: the manager's
    shutdown did not wait for it and its automatic checkpoint failed on a closed store
    (a regression audit)."""
    import asyncio

    from lexigram.hooks import HookRegistry

    from lexigram.ai.session import SessionConfig
    from lexigram.ai.session.hooks import HOOK_TURN_ADDED

    hooks = HookRegistry("test")
    release = asyncio.Event()

    async def slow(**_: Any) -> None:
        await release.wait()

    hooks.register_action(HOOK_TURN_ADDED, slow)
    manager = SessionManagerImpl(
        InMemorySessionStore(), SessionConfig(auto_checkpoint_interval=1), hooks=hooks
    )
    adapter = OpenAIAgentsSession(manager, "bg")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await adapter.add_items([{"role": "user", "content": "hi"}])
    asyncio.get_running_loop().call_later(0.1, release.set)
    assert await manager.wait_for_background(timeout_s=5) == 0
    assert len(await manager.checkpoints.list("bg")) == 1
