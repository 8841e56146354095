"""In production a missing cookie_secret stops the middleware, not the whole application."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lexigram.contracts.core.config import Environment
from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram import Application
from lexigram.ai.session import SessionConfig, SessionManager, SessionModule
from lexigram.ai.session.middleware import SessionMiddleware


def production(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "env": "production",
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'prod.db'}",
        **extra,
    }


async def test_a_worker_without_a_secret_boots_in_production(tmp_path: Path) -> None:
    async with Application.boot(modules=[SessionModule.configure(production(tmp_path))]) as app:
        manager = await app.container.resolve(SessionManager)
        state = await manager.create("worker-user")
        stored = await manager.get_state(state.session_id)
        assert stored is not None and stored.user_id == "worker-user"


async def test_the_middleware_refuses_to_be_built_without_a_secret(tmp_path: Path) -> None:
    async with Application.boot(modules=[SessionModule.configure(production(tmp_path))]) as app:
        with pytest.raises(ConfigurationError, match=r"ai_session\.cookie_secret"):
            await app.container.resolve(SessionMiddleware)
        manager = await app.container.resolve(SessionManager)
        with pytest.raises(ConfigurationError, match=r"ai_session\.cookie_secret"):
            SessionMiddleware(None, session_manager=manager)


async def test_with_a_secret_the_middleware_is_built(tmp_path: Path) -> None:
    config = production(tmp_path, cookie_secret="s" * 40)
    async with Application.boot(modules=[SessionModule.configure(config)]) as app:
        middleware = await app.container.resolve(SessionMiddleware)
        assert middleware.codec is not None


def test_require_cookie_secret() -> None:
    assert SessionConfig(cookie_secret="k" * 32).require_cookie_secret() == "k" * 32
    assert SessionConfig().require_cookie_secret() is None  # development: none needed
    assert SessionConfig(env="production", cookie_name=None).require_cookie_secret() is None
    with pytest.raises(ConfigurationError, match=r"ai_session\.cookie_secret"):
        SessionConfig(env="production", backend="database").require_cookie_secret()


def test_the_environment_check_only_warns_about_the_secret() -> None:
    issues = SessionConfig(backend="database").validate_for_environment(Environment.PRODUCTION)
    assert [(i.field, i.severity) for i in issues] == [("ai_session.cookie_secret", "warning")]
    SessionConfig(backend="database", env="production").check_environment()  # no error
