"""The ``lexigram ai-session`` command group for the framework's CLI (``lexigram-cli``).

The framework CLI mounts the Typer app :func:`create_app` returns (named by the
contributor's ``CommandContribution``). The commands are the ones of
``python -m lexigram.ai.session.cli``; Typer is needed only here (extra ``cli``).
"""

# No ``from __future__ import annotations``: Typer evaluates the parameter
# annotations at runtime, and ``typer`` is imported inside :func:`create_app`.
import sys
from typing import Annotated, Any

from lexigram.ai.session.cli import commands, privacy_commands
from lexigram.ai.session.cli.main import _quiet_logging
from lexigram.ai.session.cli.operations import build_config
from lexigram.ai.session.redaction import RedactingWriter

__all__ = ["create_app"]


def create_app() -> Any:
    """A ``typer.Typer`` holding the session commands."""
    try:
        import typer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the 'lexigram ai-session' commands need Typer: "
            "pip install 'lexigram-ai-session[cli]'"
        ) from exc

    app = typer.Typer(
        name="ai-session",
        help="Manage AI conversation sessions (lexigram-ai-session).",
        no_args_is_help=True,
    )
    state: dict[str, Any] = {}

    @app.callback()
    def options(
        backend: str | None = typer.Option(
            None, help="memory, sql, redis (aliases: in_memory, database, cache) or a plugin's name"
        ),
        database_url: str | None = typer.Option(
            None, help="SQL URL (selects sql; or the URL of a configured plugin that takes it)"
        ),
        redis_url: str | None = typer.Option(
            None, help="Redis URL (selects redis; or the URL of a configured plugin that takes it)"
        ),
        table_prefix: str | None = typer.Option(None, help="SQL table prefix"),
        key_prefix: str | None = typer.Option(None, help="Redis key prefix"),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="show framework logs"),
    ) -> None:
        """Connection options; configuration otherwise comes from application.yaml / env."""
        _quiet_logging(verbose)
        from lexigram.contracts.exceptions.config import ConfigurationError

        # Every message goes out with the credentials of the URLs in use redacted.
        err = RedactingWriter(sys.stderr, [database_url, redis_url])
        state["err"] = err
        try:
            state["config"] = build_config(
                backend=backend,
                database_url=database_url,
                redis_url=redis_url,
                table_prefix=table_prefix,
                key_prefix=key_prefix,
            )
        except (ConfigurationError, ValueError, TypeError) as exc:
            err.write(f"error: configuration: {exc}\n")
            raise typer.Exit(1) from None
        err.add_urls([state["config"].database_url, state["config"].redis_url])

    def finish(code: int) -> None:
        if code:
            raise typer.Exit(code)

    @app.command("schema-setup")
    def schema_setup() -> None:
        """Create or upgrade the SQL tables."""
        finish(commands.run_schema_setup(state["config"], out=sys.stdout, err=state["err"]))

    @app.command("list")
    def list_(
        user_id: str,
        status: str | None = typer.Option(None, help="active, suspended, closed or expired"),
        limit: int = typer.Option(50, help="how many sessions at most"),
        as_json: bool = typer.Option(False, "--json", help="JSON on stdout"),
    ) -> None:
        """List a user's sessions, newest first."""
        finish(
            commands.run_list(
                state["config"], user_id, status=status, limit=limit, as_json=as_json,
                out=sys.stdout, err=state["err"],
            )
        )

    @app.command("show")
    def show(
        session_id: str,
        turns: int = typer.Option(10, help="newest turns to print"),
        as_json: bool = typer.Option(False, "--json", help="JSON on stdout"),
    ) -> None:
        """Show a session."""
        finish(
            commands.run_show(
                state["config"], session_id, turns=turns, as_json=as_json,
                out=sys.stdout, err=state["err"],
            )
        )

    @app.command("export")
    def export(
        session_ids: Annotated[list[str] | None, typer.Argument(metavar="SESSION...")] = None,
        user: str | None = typer.Option(None, help="export every session of this user"),
        output: str | None = typer.Option(None, "--output", "-o", help="file (default stdout)"),
        no_checkpoints: bool = typer.Option(False, "--no-checkpoints", help="leave them out"),
    ) -> None:
        """Export sessions to a JSON document."""
        finish(
            commands.run_export(
                state["config"], session_ids=list(session_ids or []), user_id=user,
                output=output, include_checkpoints=not no_checkpoints,
                out=sys.stdout, err=state["err"],
            )
        )

    @app.command("import")
    def import_(
        file: str,
        replace: bool = typer.Option(False, "--replace", help="overwrite existing sessions"),
        new_checkpoint_ids: bool = typer.Option(
            False, "--new-checkpoint-ids", help="give imported checkpoints new ids"
        ),
    ) -> None:
        """Import sessions from an export document ('-' for stdin)."""
        finish(
            commands.run_import(
                state["config"], file, replace_existing=replace,
                new_checkpoint_ids=new_checkpoint_ids, out=sys.stdout, err=state["err"],
            )
        )

    @app.command("sweep")
    def sweep(
        purge_after: int | None = typer.Option(None, help="seconds (default from config)"),
        no_expire: bool = typer.Option(False, "--no-expire", help="only purge"),
    ) -> None:
        """Expire idle sessions and purge old ended ones now."""
        finish(
            commands.run_sweep(
                state["config"], expire=not no_expire, purge_after_s=purge_after,
                out=sys.stdout, err=state["err"],
            )
        )

    @app.command("explore")
    def explore(
        host: str | None = typer.Option(None, help="address to listen on (default 127.0.0.1)"),
        port: int | None = typer.Option(None, help="port (default 8765)"),
        allow_writes: bool = typer.Option(
            False, "--allow-writes", help="enable close/restore/fork"
        ),
        token: str | None = typer.Option(
            None, help="access token (required off loopback; default $AI_SESSION_EXPLORER_TOKEN)"
        ),
    ) -> None:
        """Browse sessions, branches and checkpoints in a browser."""
        finish(
            commands.run_explore(
                state["config"], host=host, port=port, allow_writes=allow_writes, token=token,
                out=sys.stdout, err=state["err"],
            )
        )

    _add_privacy_commands(app, state, finish)
    return app


def _add_privacy_commands(owner: Any, state: dict[str, Any], finish: Any) -> None:
    """``keys status|rotate|retire``, ``erase-user`` and ``export-user`` (see docs/privacy.md)."""
    import typer

    app: typer.Typer = owner
    keys = typer.Typer(name="keys", help="Encryption keys: status, rotate, retire.",
                       no_args_is_help=True)
    app.add_typer(keys, name="keys")

    @keys.command("status")
    def keys_status() -> None:
        """How many stored records need each configured key."""
        finish(privacy_commands.run_keys_status(state["config"], out=sys.stdout,
                                                err=state["err"]))

    @keys.command("rotate")
    def keys_rotate(
        batch: int = typer.Option(500, help="sessions per batch"),
        resume_from: str | None = typer.Option(None, help="cursor of an earlier run"),
    ) -> None:
        """Re-wrap every data key under the newest key."""
        finish(privacy_commands.run_keys_rotate(
            state["config"], batch=batch, resume_from=resume_from, out=sys.stdout,
            err=state["err"],
        ))

    @keys.command("retire")
    def keys_retire(key_id: str) -> None:
        """Check that no stored record needs KEY_ID any more."""
        finish(privacy_commands.run_keys_retire(state["config"], key_id, out=sys.stdout,
                                                err=state["err"]))

    @app.command("erase-user")
    def erase_user(
        user_id: str,
        as_json: bool = typer.Option(False, "--json", help="the report as JSON"),
    ) -> None:
        """Erase every session of a user (irreversible)."""
        finish(privacy_commands.run_erase_user(state["config"], user_id, as_json=as_json,
                                               out=sys.stdout, err=state["err"]))

    @app.command("export-user")
    def export_user(
        user_id: str,
        output: str | None = typer.Option(None, "--output", "-o", help="file"),
    ) -> None:
        """Everything stored about a user, as one export document."""
        finish(privacy_commands.run_export_user(state["config"], user_id, output,
                                                out=sys.stdout, err=state["err"]))
