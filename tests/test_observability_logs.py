"""What is logged when a hook handler raises, and that operations.md names it (an outside
audit: the page named ``ai_session.hook_failed``, which is never logged for it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lexigram.hooks import HookRegistry

from lexigram.ai.session import InMemorySessionStore, SessionConfig, SessionManagerImpl
from lexigram.ai.session import hooks as HK
from lexigram.ai.session.manager import notifier as notifier_module

OPERATIONS = Path(__file__).resolve().parents[1] / "docs" / "operations.md"


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def __getattr__(self, level: str) -> Any:
        def log(event: str, *args: Any, **kwargs: Any) -> None:
            self.events.append((level, event))

        return log


async def test_a_raising_hook_handler_is_logged_as_the_docs_say(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import lexigram.hooks.registry as registry_module

    framework, ours = Recorder(), Recorder()
    monkeypatch.setattr(registry_module, "logger", framework)
    monkeypatch.setattr(notifier_module, "logger", ours)
    hooks = HookRegistry("app")
    calls: list[Any] = []

    async def bad(*, payload: Any, **_: Any) -> None:
        calls.append(payload)
        raise ValueError("handler boom")

    hooks.register_action(HK.HOOK_TURN_ADDED, bad)
    manager = SessionManagerImpl(
        InMemorySessionStore(), SessionConfig(auto_checkpoint_interval=None), hooks=hooks
    )
    sid = (await manager.create("kim")).session_id
    await manager.add_message(sid, "user", "hello")
    assert len(calls) == 1
    logged = {event for _, event in framework.events + ours.events}
    assert "action_hook_error" in logged
    assert "ai_session.hook_failed" not in logged
    text = OPERATIONS.read_text(encoding="utf-8")
    assert "`action_hook_error`" in text
    assert "ai_session.hook_failed" not in text
