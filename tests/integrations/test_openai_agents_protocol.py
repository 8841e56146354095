"""The adapter satisfies the SDK's ``Session`` protocol; the core never imports the SDK."""

from __future__ import annotations

import subprocess
import sys

import pytest
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
    with pytest.raises(SessionValidationError) as info:
        OpenAIAgentsSession(manager, "s1", session_settings=42)  # type: ignore[arg-type]
    assert info.value.field == "session_settings"


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


@pytest.mark.parametrize("limit", ["3", 1.5, True])
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
