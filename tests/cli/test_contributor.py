"""The ``lexigram.cli.contributors`` entry point and what it hands the framework CLI."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
from pathlib import Path
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionManagerProtocol
from lexigram.contracts.cli.contributions import SchemaSetupResult
from lexigram.contracts.cli.protocols import CliContributorProtocol
from typer.testing import CliRunner

from lexigram import Application
from lexigram.ai.session import SessionConfig, SessionModule
from lexigram.ai.session.cli.contributor import AiSessionCliContributor
from lexigram.ai.session.cli.schema import ensure_schema, schema_present

from .conftest import Seeded, sqlite_url


def resolve(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def test_entry_point_names_a_contributor_built_without_arguments() -> None:
    (ep,) = [
        e
        for e in importlib.metadata.entry_points(group="lexigram.cli.contributors")
        if e.name == "ai-session"
    ]
    contributor = ep.load()()
    assert isinstance(contributor, AiSessionCliContributor)
    assert isinstance(contributor, CliContributorProtocol)
    assert contributor.contributor_id == "ai-session"
    for method in ("get_generators", "get_health_checks", "get_doctor_checks", "get_hooks"):
        assert isinstance(getattr(contributor, method)(), list)
    (command,) = contributor.get_commands()
    assert command.name == "ai-session" and command.contributor == "ai-session"
    (setup,) = contributor.get_schema_setup()
    assert resolve(setup.setup_fn_path) is ensure_schema


def test_command_group_runs_through_typer(seeded: Seeded, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    from lexigram.ai.session.cli import typer_app

    # The group's callback points the process's logging at CliRunner's stream, which is
    # closed afterwards (a later test's log line would then raise): leave logging alone.
    monkeypatch.setattr(typer_app, "_quiet_logging", lambda verbose: None)
    (command,) = AiSessionCliContributor().get_commands()
    app = resolve(command.app_factory_path)()
    runner = CliRunner()
    result = runner.invoke(app, ["--database-url", seeded.url, "list", "alice", "--json"])
    assert result.exit_code == 0, result.output
    assert sorted(r["session_id"] for r in json.loads(result.stdout)) == sorted(seeded.alice)
    missing = runner.invoke(app, ["--database-url", seeded.url, "show", "nope"])
    assert missing.exit_code == 1


async def test_schema_setup_contribution_creates_then_finds_the_tables(tmp_path: Path) -> None:
    config = SessionConfig(backend="sql", database_url=sqlite_url(tmp_path / "db.sqlite"))
    assert not await schema_present(config)
    first = await ensure_schema(None, config=config)
    assert first.status == SchemaSetupResult.CREATED, first.message
    assert await schema_present(config)
    second = await ensure_schema(None, config=config)
    assert second.status == SchemaSetupResult.ALREADY_PRESENT
    other = await ensure_schema(None, config=SessionConfig(backend="memory"))
    assert other.status == SchemaSetupResult.ALREADY_PRESENT
    assert "backend 'memory' ready" in (other.message or "")
    # nothing listens on port 1 (an unopenable SQLite file would leave an aiosqlite
    # worker thread behind, which is the driver's doing, not what is tested here)
    broken = SessionConfig(
        backend="sql", database_url="postgresql+asyncpg://postgres@127.0.0.1:1/none"
    )
    failed = await ensure_schema(None, config=broken)
    assert failed.status == SchemaSetupResult.FAILED and failed.message


async def test_shell_context_resolves_the_manager_of_a_booted_app() -> None:
    (ctx,) = AiSessionCliContributor().get_shell_context()
    factory = resolve(ctx.factory_path)
    async with Application.boot(modules=[SessionModule.stub()]) as app:
        manager = await factory(app.container)
        assert isinstance(manager, SessionManagerProtocol)
        assert manager is await app.container.resolve(SessionManagerProtocol)
