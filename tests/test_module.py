"""SessionModule / SessionProvider wired into a real lexigram Application."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest
from lexigram.contracts.ai.session import (
    SessionManagerProtocol,
    SessionStoreProtocol,
)
from lexigram.contracts.core.health import HealthStatus
from lexigram.di.module import Module, module

import lexigram.ai.session as pkg
from lexigram import Application
from lexigram.ai.session import (
    BranchManager,
    CheckpointManager,
    InMemorySessionStore,
    SessionConfig,
    SessionManagerAPI,
    SessionManagerImpl,
    SessionModule,
    SessionProvider,
)
from lexigram.ai.session.manager.cleanup import SessionCleanupScheduler

ROOT = Path(__file__).resolve().parents[1]


@module(
    imports=[
        SessionModule.configure(
            SessionConfig(backend="in_memory", max_turns_per_session=50),
            enable_cleanup_scheduler=True,
        )
    ]
)
class AppModule(Module):
    """The README's Quick start module, defined at import time."""


async def _use(app: Application) -> SessionManagerImpl:
    manager = await app.container.resolve(SessionManagerProtocol)
    assert isinstance(manager, SessionManagerImpl)
    state = await manager.create("alice")
    await manager.add_message(state.session_id, "user", "hi")
    return manager


async def test_quick_start_module_boots_twice() -> None:
    managers = []
    for _ in range(2):
        async with Application.boot(modules=[AppModule]) as app:
            manager = await _use(app)
            assert manager.config.max_turns_per_session == 50
            scheduler = await app.container.resolve(SessionCleanupScheduler)
            assert scheduler.running
            managers.append(manager)
        assert not scheduler.running
    assert managers[0] is not managers[1]
    assert managers[0].store is not managers[1].store


async def test_add_module_form() -> None:
    app = Application()
    app.add_module(AppModule)
    await app.start()
    try:
        await _use(app)
    finally:
        await app.stop()


async def test_stub_uses_memory_and_no_background_task() -> None:
    async with Application.boot(modules=[SessionModule.stub({"backend": "database"})]) as app:
        manager = await _use(app)
        assert isinstance(manager.store, InMemorySessionStore)
        scheduler = await app.container.resolve(SessionCleanupScheduler)
        assert not scheduler.running


async def test_services_resolve() -> None:
    async with Application.boot(modules=[SessionModule.stub()]) as app:
        c = app.container
        manager = await c.resolve(SessionManagerImpl)
        assert await c.resolve(SessionManagerProtocol) is manager
        # The whole typed API (the README's type to annotate with) resolves to it too.
        assert await c.resolve(SessionManagerAPI) is manager
        assert await c.resolve(SessionStoreProtocol) is manager.store
        assert await c.resolve(CheckpointManager) is manager.checkpoints
        branches = await c.resolve(BranchManager)
        assert branches.max_branches_per_session == 10
        config = await c.resolve(SessionConfig)
        assert config is manager.config


async def test_health_check_pings_the_store() -> None:
    async with Application.boot(modules=[SessionModule.stub()]) as app:
        report = await app.health_check()
        [component] = [c for c in report.components if c.component == "session"]
        assert component.status == HealthStatus.HEALTHY


async def test_disabled_registers_config_only() -> None:
    async with Application.boot(modules=[SessionModule.configure({"enabled": False})]) as app:
        config = await app.container.resolve(SessionConfig)
        assert config.enabled is False
        assert not app.container.has(SessionManagerImpl)


def test_provider_class_per_application() -> None:
    dynamic = SessionModule.configure({"session_ttl": 5})
    [provider_cls] = dynamic.providers
    assert isinstance(provider_cls, type) and issubclass(provider_cls, SessionProvider)
    first, second = provider_cls(), provider_cls()
    assert first is not second
    assert first.session_config.session_ttl == 5


def test_public_names() -> None:
    required = [
        "AppendMerge",
        "BranchManager",
        "CacheSessionStore",
        "CheckpointManager",
        "CheckpointNotFoundError",
        "ContextPrunerProtocol",
        "DatabaseSessionStore",
        "GroupSession",
        "InMemorySessionStore",
        "MergeStrategy",
        "Metadata",
        "PriorityTurnManager",
        "RelevanceContextPruner",
        "RoleIsolation",
        "RoundRobinTurnManager",
        "SelectiveMerge",
        "SessionAnalytics",
        "SessionCapacityError",
        "SessionCheckpointCreatedHook",
        "SessionClosedError",
        "SessionClosedEvent",
        "SessionClosedHook",
        "SessionConfig",
        "SessionContext",
        "SessionContextProtocol",
        "SessionCreatedEvent",
        "SessionError",
        "SessionExpiredError",
        "SessionId",
        "SessionManagerImpl",
        "SessionManagerProtocol",
        "SessionMiddleware",
        "SessionModule",
        "SessionNotFoundError",
        "SessionProvider",
        "SessionStartedHook",
        "SessionStateMachine",
        "SessionStoreProtocol",
        "SessionTransitionError",
        "StateDiff",
        "TopicBasedTurnManager",
        "TurnId",
        "TurnManager",
        "SessionManager",
    ]
    missing = [n for n in required if n not in pkg.__all__]
    assert missing == []
    foundation = [
        "SessionConfig",
        "SessionModule",
        "SessionProvider",
        "SessionManagerImpl",
        "SessionManager",
        "SessionStateMachine",
        "InMemorySessionStore",
        "SessionError",
        "SessionNotFoundError",
        "SessionClosedError",
        "SessionExpiredError",
        "CheckpointNotFoundError",
        "SessionTransitionError",
        "SessionCapacityError",
        "SessionId",
        "TurnId",
        "Metadata",
        "SessionCreatedEvent",
        "SessionClosedEvent",
        "SessionStartedHook",
        "SessionClosedHook",
        "SessionCheckpointCreatedHook",
        "CheckpointManager",
        "StateDiff",
        "BranchManager",
        "AppendMerge",
        "SelectiveMerge",
        "MergeStrategy",
        "SessionStoreProtocol",
        "SessionManagerProtocol",
        "SessionContextProtocol",
        "ContextPrunerProtocol",
    ]
    for name in foundation:
        assert getattr(pkg, name) is not None, name
    assert pkg.SessionManager is pkg.SessionManagerImpl


def test_import_does_not_load_drivers() -> None:
    code = (
        "import sys, lexigram.ai.session as s; s.SessionModule; s.SessionManagerImpl;"
        "mods = ('redis', 'sqlalchemy', 'asyncpg', 'agents', 'starlette');"
        "print('LOADED=' + ','.join(m for m in mods if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "LOADED=\n" in out.stdout + "\n"


def test_entry_points_declared() -> None:
    groups = {
        "lexigram.modules": "lexigram.ai.session.module:SessionModule",
        "lexigram.ai.modules": "lexigram.ai.session.module:SessionModule",
        "lexigram.ai.subsystems": "lexigram.ai.session.di.provider:SessionProvider",
        "lexigram.cli.contributors": "lexigram.ai.session.cli.contributor:AiSessionCliContributor",
    }
    eps = importlib.metadata.entry_points()
    for group, target in groups.items():
        values = [ep.value for ep in eps.select(group=group)]
        assert target in values, group


def test_no_top_level_lexigram_init_shipped() -> None:
    assert not (ROOT / "src" / "lexigram" / "__init__.py").exists()
    assert (ROOT / "src" / "lexigram" / "ai" / "session" / "py.typed").exists()


@pytest.mark.slow
def test_quickstart_example_runs() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "3 turns" in out.stdout
    assert "user: What is a session?" in out.stdout
    assert "closed: status=closed total_tokens=12" in out.stdout


async def test_extension_services_resolve() -> None:
    from lexigram.contracts.ai.session import ContextPrunerProtocol, SessionContextProtocol

    from lexigram.ai.session import RelevanceContextPruner, SessionContext, SessionMiddleware
    from lexigram.ai.session.multi_agent import GroupSession, GroupSessionFactory

    async with Application.boot(modules=[SessionModule.stub({"max_agents_per_group": 3})]) as app:
        c = app.container
        assert isinstance(await c.resolve(ContextPrunerProtocol), RelevanceContextPruner)
        context = await c.resolve(SessionContextProtocol)
        assert isinstance(context, SessionContext)
        assert isinstance(await c.resolve(SessionMiddleware), SessionMiddleware)
        factory = await c.resolve(GroupSessionFactory)
        group = factory.create()
        assert isinstance(group, GroupSession)


def test_every_public_name_imports() -> None:
    missing = []
    for name in pkg.__all__:
        try:
            getattr(pkg, name)
        except (AttributeError, ImportError) as exc:
            missing.append(f"{name}: {exc}")
    assert missing == []


async def test_a_config_in_code_names_the_storage_settings_it_leaves_unused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``configure({"session_ttl": 3600})`` beside ``LEX_AI_SESSION__DATABASE_URL``
    stored in memory without a word (an outside audit). The config in code still wins
    (SPEC); what it leaves unused is named by field, never by value."""
    from lexigram.ai.session.di import provider

    warned: list[dict[str, object]] = []

    class Recorder:
        def warning(self, event: str, **fields: object) -> None:
            warned.append({"event": event, **fields})

    monkeypatch.setattr(provider, "logger", Recorder())
    monkeypatch.chdir(tmp_path)
    secret_url = f"sqlite+aiosqlite:///{tmp_path}/app.db"
    monkeypatch.setenv("LEX_AI_SESSION__DATABASE_URL", secret_url)
    async with Application.boot(modules=[SessionModule.configure({"session_ttl": 3600})]):
        pass
    unused = [w for w in warned if w["event"] == "ai_session.config_in_code_ignores_layered"]
    assert len(unused) == 1 and unused[0]["fields"] == ["backend", "database_url"]
    assert secret_url not in repr(unused)
    warned.clear()
    async with Application.boot(modules=[SessionModule.configure()]):
        pass  # the layered config itself: nothing left unused
    assert not [w for w in warned if w["event"] == "ai_session.config_in_code_ignores_layered"]
    # The same backend under another of its names is no field left unused (a regression
    # audit: "database" in code and "sql" in the environment warned of "backend").
    monkeypatch.setenv("LEX_AI_SESSION__BACKEND", "sql")
    same = {"backend": "database", "database_url": secret_url}
    async with Application.boot(modules=[SessionModule.configure(same)]):
        pass
    assert not [w for w in warned if w["event"] == "ai_session.config_in_code_ignores_layered"]
