"""``python -m lexigram.ai.session.cli``: manage sessions from a shell.

Configuration comes from ``application.yaml`` (and ``application.<LEX_PROFILE>.yaml``)
in the working directory and ``LEX_AI_SESSION__*`` variables, like the
application's; ``--backend``, ``--database-url``, ``--redis-url`` and the prefix
options override it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO, cast

from lexigram.ai.session.backends import find_backend
from lexigram.ai.session.cli import commands, privacy_commands
from lexigram.ai.session.cli.operations import build_config
from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.redaction import RedactingWriter

__all__ = ["SCRIPT_NAME", "build_parser", "main"]

#: The console script the package installs (``[project.scripts]``).
SCRIPT_NAME = "lexigram-ai-session"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the session CLI."""
    command = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    parser = argparse.ArgumentParser(
        # The installed script names itself; ``python -m`` shows the module path.
        prog=command if command == SCRIPT_NAME else "python -m lexigram.ai.session.cli",
        description="Manage lexigram-ai-session sessions: schema, listing, export/import, sweeps, "
        "explorer.",
    )
    parser.add_argument(
        "--backend",
        help="memory, sql, redis (aliases: in_memory, database, cache) or a plugin's name",
    )
    parser.add_argument(
        "--database-url",
        help="SQL URL (selects the sql backend; or the URL of a configured plugin that takes it)",
    )
    parser.add_argument(
        "--redis-url",
        help="Redis URL (selects redis; or the URL of a configured plugin that takes it)",
    )
    parser.add_argument("--table-prefix", help="SQL table prefix")
    parser.add_argument("--key-prefix", help="Redis key prefix")
    parser.add_argument("-v", "--verbose", action="store_true", help="show framework logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("schema-setup", help="create or upgrade the SQL tables")

    p = sub.add_parser("list", help="list a user's sessions, newest first")
    p.add_argument("user_id")
    p.add_argument("--status", help="active, suspended, closed or expired")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true", help="JSON on stdout")

    p = sub.add_parser("show", help="show a session")
    p.add_argument("session_id")
    p.add_argument("--turns", type=int, default=10, help="newest turns to print (default 10)")
    p.add_argument("--json", action="store_true", help="JSON on stdout")

    p = sub.add_parser("export", help="export sessions to a JSON document")
    p.add_argument("session_ids", nargs="*", metavar="SESSION")
    p.add_argument("--user", help="export every session of this user")
    p.add_argument("-o", "--output", help="file to write (default: stdout)")
    p.add_argument("--no-checkpoints", action="store_true", help="leave checkpoints out")

    p = sub.add_parser("import", help="import sessions from an export document")
    p.add_argument("file", help="export document ('-' for stdin)")
    p.add_argument("--replace", action="store_true", help="overwrite sessions that exist")
    p.add_argument(
        "--new-checkpoint-ids",
        action="store_true",
        help="give every imported checkpoint a new id (to copy a session in the same store)",
    )

    p = sub.add_parser("sweep", help="expire idle sessions and purge old ended ones now")
    p.add_argument("--purge-after", type=int, help="seconds (default: config purge_after_s)")
    p.add_argument("--no-expire", action="store_true", help="only purge")

    p = sub.add_parser("explore", help="browse sessions, branches and checkpoints in a browser")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8765)")
    p.add_argument("--allow-writes", action="store_true", help="enable close/restore/fork")
    p.add_argument("--token", help="access token (required off loopback; "
                   "default $AI_SESSION_EXPLORER_TOKEN)")
    privacy_commands.add_parsers(sub)
    return parser


def _quiet_logging(verbose: bool) -> None:
    """Framework logs to stderr (stdout carries results), warnings and up unless -v."""
    os.environ.setdefault("LEX_QUIET", "1")
    from lexigram.logging import configure_logging

    configure_logging(level="INFO" if verbose else "ERROR")
    try:
        import structlog

        structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    except ImportError:  # pragma: no cover - structlog ships with lexigram
        pass


def main(
    argv: Sequence[str] | None = None,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    setup_logging: bool = True,
) -> int:
    """Run one command; returns the exit code.

    ``setup_logging=False`` leaves the process's logging alone (when embedding).
    """
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    # Every message goes out with the credentials of the URLs in use redacted.
    redacting = RedactingWriter(err or sys.stderr, [args.database_url, args.redis_url])
    err = cast(TextIO, redacting)
    if setup_logging:
        _quiet_logging(args.verbose)
    from lexigram.contracts.exceptions.config import ConfigurationError

    try:
        config = build_config(
            backend=args.backend,
            database_url=args.database_url,
            redis_url=args.redis_url,
            table_prefix=args.table_prefix,
            key_prefix=args.key_prefix,
        )
    except (ConfigurationError, ValueError, TypeError) as exc:
        err.write(f"error: configuration: {exc}\n")
        return 1
    redacting.add_urls([config.database_url, config.redis_url])
    backend = find_backend(config.backend)
    if args.command != "schema-setup" and backend is not None:
        if not backend.persistent:
            err.write(
                f"warning: backend {config.backend} keeps nothing between runs; "
                "pass --database-url or --redis-url, or configure ai_session.backend\n"
            )
        elif backend.name == "sql" and config.keeps_nothing():
            err.write(
                "warning: database_url is an in-memory SQLite database, which keeps "
                "nothing between runs; give a file: sqlite+aiosqlite:///<path>\n"
            )
    try:
        return _dispatch(args, config, out=out, err=err)
    except KeyboardInterrupt:
        err.write(
            "error: interrupted; what was done is kept (a 'keys rotate' resumes with the "
            "last --resume-from cursor it printed; running the other commands again is safe)\n"
        )
        return 1


def _dispatch(
    args: argparse.Namespace, config: SessionConfig, *, out: TextIO, err: TextIO
) -> int:
    """Run the parsed command; returns the exit code."""
    if args.command in privacy_commands.COMMANDS:
        return privacy_commands.run(args, config, out=out, err=err)
    if args.command == "schema-setup":
        return commands.run_schema_setup(config, out=out, err=err)
    if args.command == "list":
        return commands.run_list(
            config, args.user_id, status=args.status, limit=args.limit, as_json=args.json,
            out=out, err=err,
        )
    if args.command == "show":
        return commands.run_show(
            config, args.session_id, turns=args.turns, as_json=args.json, out=out, err=err
        )
    if args.command == "export":
        return commands.run_export(
            config,
            session_ids=args.session_ids,
            user_id=args.user,
            output=args.output,
            include_checkpoints=not args.no_checkpoints,
            out=out,
            err=err,
        )
    if args.command == "import":
        return commands.run_import(
            config, args.file, replace_existing=args.replace,
            new_checkpoint_ids=args.new_checkpoint_ids, out=out, err=err,
        )
    if args.command == "sweep":
        return commands.run_sweep(
            config, expire=not args.no_expire, purge_after_s=args.purge_after, out=out, err=err
        )
    if args.command == "explore":
        return commands.run_explore(
            config, host=args.host, port=args.port, allow_writes=args.allow_writes,
            token=args.token, out=out, err=err,
        )
    raise AssertionError(args.command)  # pragma: no cover - argparse rejects others
