"""``AiSessionCliContributor``: what this package adds to the framework's ``lexigram`` CLI.

Declared under the ``lexigram.cli.contributors`` entry point (name ``ai-session``):

* a command group ``lexigram ai-session`` (``schema-setup``, ``list``, ``show``,
  ``export``, ``import``, ``sweep``, ``explore``) built by :func:`.typer_app.create_app`;
* a schema setup step run by ``lexigram db setup`` (:func:`.schema.ensure_schema`);
* ``session_manager`` in ``lexigram shell``.
"""

from __future__ import annotations

from typing import Any

from lexigram.contracts.cli.contributions import (
    CommandContribution,
    DoctorCheckContribution,
    HealthCheckContribution,
    HookContribution,
    SchemaSetupContribution,
    ShellContextContribution,
)
from lexigram.contracts.cli.types import GeneratorDefinition

__all__ = ["CONTRIBUTOR_ID", "AiSessionCliContributor", "session_manager"]

CONTRIBUTOR_ID = "ai-session"
_HERE = "lexigram.ai.session.cli"


async def session_manager(container: Any) -> Any:
    """Shell context factory: the application's ``SessionManagerProtocol``."""
    from lexigram.contracts.ai.session import SessionManagerProtocol

    return await container.resolve(SessionManagerProtocol)


class AiSessionCliContributor:
    """Satisfies ``lexigram.contracts.cli.protocols.CliContributorProtocol``."""

    @property
    def contributor_id(self) -> str:
        """``ai-session``."""
        return CONTRIBUTOR_ID

    def get_generators(self) -> list[GeneratorDefinition]:
        """No scaffolding generators."""
        return []

    def get_commands(self) -> list[CommandContribution]:
        """The ``ai-session`` command group."""
        return [
            CommandContribution(
                name="ai-session",
                help="Manage AI conversation sessions: schema, list, show, export/import, "
                "sweep, explore.",
                app_factory_path=f"{_HERE}.typer_app:create_app",
                contributor=CONTRIBUTOR_ID,
                category="ai",
            )
        ]

    def get_health_checks(self) -> list[HealthCheckContribution]:
        """None: the provider's ``health_check`` already pings the backend."""
        return []

    def get_doctor_checks(self) -> list[DoctorCheckContribution]:
        """None."""
        return []

    def get_shell_context(self) -> list[ShellContextContribution]:
        """``session_manager`` in the interactive shell."""
        return [
            ShellContextContribution(
                name="session_manager",
                description="The application's SessionManagerProtocol",
                factory_path=f"{_HERE}.contributor:session_manager",
                contributor=CONTRIBUTOR_ID,
            )
        ]

    def get_hooks(self) -> list[HookContribution]:
        """No CLI lifecycle hooks."""
        return []

    def get_schema_setup(self) -> list[SchemaSetupContribution]:
        """Create the session tables during ``lexigram db setup``."""
        return [
            SchemaSetupContribution(
                name="ai-session.tables",
                description="Session, turn, checkpoint and tombstone tables of lexigram-ai-session",
                setup_fn_path=f"{_HERE}.schema:ensure_schema",
                contributor=CONTRIBUTOR_ID,
                category="ai",
            )
        ]
