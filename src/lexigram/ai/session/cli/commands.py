"""The CLI commands: run an operation, print its result, return an exit code.

Shared by ``python -m lexigram.ai.session.cli`` and the ``lexigram ai-session``
command group. Results go to ``out`` (stdout), progress and errors to ``err``
(stderr). Exit codes: 0 success, 1 failure (message on stderr).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TextIO, TypeVar

import orjson
from lexigram.contracts.ai.session import SessionState

from lexigram.ai.session.cli import operations as ops
from lexigram.ai.session.cli.importing import ImportStopped
from lexigram.ai.session.cli.interrupt import run_interruptible
from lexigram.ai.session.cli.progress import ProgressLine
from lexigram.ai.session.cli.transfer import dump_document, header_to_dict, write_document
from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.exceptions import SessionError, SessionValidationError
from lexigram.ai.session.manager.cleanup import SweepReport
from lexigram.ai.session.validation import MAX_DURATION_S

__all__ = [
    "CommandError",
    "run_explore",
    "run_export",
    "run_import",
    "run_list",
    "run_schema_setup",
    "run_show",
    "run_sweep",
]

T = TypeVar("T")


class CommandError(Exception):
    """A failure the user can act on; printed without a traceback."""


def _run(make: Callable[[], Coroutine[Any, Any, T]], err: TextIO) -> tuple[int, T | None]:
    """Run the coroutine; turn known failures into exit code 1 and a message."""
    from lexigram.contracts.exceptions.config import ConfigurationError

    try:
        return 0, run_interruptible(make())
    except (SessionError, ConfigurationError, CommandError, OSError) as exc:
        err.write(f"error: {exc}\n")
        return 1, None


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _when(state: SessionState) -> str:
    return state.updated_at.strftime("%Y-%m-%d %H:%M:%S")


def run_schema_setup(config: SessionConfig, *, out: TextIO, err: TextIO) -> int:
    """``schema-setup``: create the SQL tables (or check the backend)."""
    code, message = _run(lambda: ops.schema_setup(config), err)
    if message is not None:
        out.write(message + "\n")
    return code


def run_list(
    config: SessionConfig,
    user_id: str,
    *,
    status: str | None,
    limit: int,
    as_json: bool,
    out: TextIO,
    err: TextIO,
) -> int:
    """``list USER``: the user's sessions, newest first."""
    code, listing = _run(
        lambda: ops.list_sessions(config, user_id, status=status, limit=limit), err
    )
    if listing is None:
        return code
    found = listing.sessions
    if as_json:
        out.write(_json([header_to_dict(s) for s in found]) + "\n")
    else:
        rows = [
            [
                s.session_id,
                s.status.value,
                str(s.turn_count),
                str(s.total_tokens),
                f"{s.total_cost:.4f}",
                _when(s),
                s.branch_name or "",
            ]
            for s in found
        ]
        headers = ["SESSION", "STATUS", "TURNS", "TOKENS", "COST", "UPDATED (UTC)", "BRANCH"]
        out.write(_table(rows, headers) + "\n")
        err.write(f"{len(found)} session(s) of {user_id!r}\n")
    return _report_damaged(listing.damaged, err, listing.reasons)


def _report_damaged(damaged: list[str], err: TextIO, reasons: dict[str, str]) -> int:
    """Name each session whose record could not be read, and why (the key id when its
    key is missing or wrong); exit code 1 when there are any."""
    for session_id in damaged:
        why = reasons.get(session_id, ops.DAMAGED)
        err.write(f"error: session {session_id!r}: {why}; it was left out\n")
    if damaged:
        err.write(f"{len(damaged)} unreadable session(s) left out\n")
        return 1
    return 0


def run_show(
    config: SessionConfig,
    session_id: str,
    *,
    turns: int,
    as_json: bool,
    out: TextIO,
    err: TextIO,
) -> int:
    """``show SESSION``: header, analytics, checkpoints and the newest turns."""
    if turns < 0:
        err.write(f"error: --turns: must be >= 0 (0 shows none), got {turns}\n")
        return 1
    code, details = _run(lambda: ops.show_session(config, session_id), err)
    if details is None:
        return code
    state = details.state
    shown = state.turns[-turns:] if turns > 0 else []
    if as_json:
        out.write(
            _json(
                {
                    "header": header_to_dict(state),
                    "analytics": details.analytics.to_dict(),
                    "checkpoints": [
                        {
                            "checkpoint_id": c.checkpoint_id,
                            "created_at": c.created_at.isoformat(),
                            "parent_checkpoint_id": c.parent_checkpoint_id,
                            "turn_count": c.state.turn_count,
                            "metadata": c.metadata,
                        }
                        for c in details.checkpoints
                    ],
                    "turns": [
                        {"turn_id": t.turn_id, "role": t.role, "content": t.content,
                         "timestamp": t.timestamp.isoformat()}
                        for t in shown
                    ],
                }
            )
            + "\n"
        )
        return 0
    a = details.analytics
    lines = [
        f"session   {state.session_id}",
        f"user      {state.user_id}",
        f"status    {state.status.value}",
        f"created   {state.created_at.isoformat()}",
        f"updated   {state.updated_at.isoformat()}",
        f"turns     {state.turn_count}   tokens {state.total_tokens}   cost {state.total_cost:.4f}",
    ]
    if state.parent_session_id:
        lines.append(f"branch    {state.branch_name} of {state.parent_session_id}")
    if state.system_prompt:
        lines.append(f"prompt    {state.system_prompt}")
    if a.agents_used:
        lines.append(f"agents    {', '.join(a.agents_used)}")
    if a.models_used:
        lines.append(f"models    {', '.join(a.models_used)}")
    if a.tool_call_counts:
        lines.append("tools     " + ", ".join(f"{k} x{v}" for k, v in a.tool_call_counts.items()))
    if a.response_count:
        lines.append(f"response  {a.avg_response_time_ms:.0f} ms on average")
    lines.append(f"checkpoints {len(details.checkpoints)}")
    for c in details.checkpoints:
        lines.append(f"  {c.checkpoint_id}  {c.created_at.isoformat()}  turns={c.state.turn_count}")
    if shown:
        lines.append(f"last {len(shown)} turn(s):")
        for t in shown:
            text = t.content if len(t.content) <= 200 else t.content[:197] + "..."
            lines.append(f"  [{t.timestamp.strftime('%H:%M:%S')}] {t.role}: {text}")
    out.write("\n".join(map(_printable, lines)) + "\n")
    return 0


def _printable(line: str) -> str:
    """``line`` with every character a terminal would act on (ESC, CR, BEL, a newline
    inside a turn...) written as its escape, so stored text cannot clear the operator's
    screen, retitle the window or overwrite the line (an outside audit)."""
    if line.isprintable():
        return line
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in line)


def run_export(
    config: SessionConfig,
    *,
    session_ids: list[str],
    user_id: str | None,
    output: str | None,
    include_checkpoints: bool,
    out: TextIO,
    err: TextIO,
) -> int:
    """``export SESSION... [--user U] [-o FILE]``: a JSON document (stdout by default)."""
    progress = ProgressLine("exported", stream=err, unit="session(s)")

    async def work() -> ops.Export:
        return await ops.export_sessions(
            config,
            session_ids=session_ids,
            user_id=user_id,
            include_checkpoints=include_checkpoints,
            progress=progress,
        )

    code, export = _run(work, err)
    progress.finish()
    if export is None:
        return code
    entries = export.entries
    data = dump_document(entries)
    if write_document(data, output, out, err, f"wrote {len(entries)} session(s) to {output}"):
        return 1
    return _report_damaged(export.damaged, err, export.reasons)


def run_import(
    config: SessionConfig,
    source: str,
    *,
    replace_existing: bool,
    new_checkpoint_ids: bool = False,
    out: TextIO,
    err: TextIO,
) -> int:
    """``import FILE``: store the sessions of an export document (``-`` reads stdin).

    Nothing is written unless the whole document is valid; exit code 1 when it is
    not, or when a store failure stopped the import (what was written is printed).
    """
    try:
        raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    except OSError as exc:
        err.write(f"error: cannot read {source}: {exc}\n")
        return 1
    progress = ProgressLine("imported", stream=err, unit="session(s)")

    async def work() -> ops.ImportReport | ImportStopped:
        try:
            return await ops.import_sessions(
                config,
                raw,
                replace_existing=replace_existing,
                new_checkpoint_ids=new_checkpoint_ids,
                progress=progress,
            )
        except ImportStopped as stopped:
            if _id_refused(stopped.cause) and not await ops.session_exists(
                config, stopped.session_id
            ):
                stopped.purged = True
            return stopped

    code, result = _run(work, err)
    progress.finish()
    if result is None:
        return code
    report = result.report if isinstance(result, ImportStopped) else result
    out.write(
        f"imported {len(report.imported)}, replaced {len(report.replaced)}, "
        f"skipped {len(report.skipped)} (already present), "
        f"{report.checkpoints} checkpoint(s)\n"
    )
    for sid in report.skipped:
        err.write(f"skipped {sid}: already exists (use --replace to overwrite)\n")
    for sid in report.fork_points_kept:
        err.write(
            f"warning: branch {sid}: its stored fork point was kept (a replace does not "
            "change it) and differs from the document's; a merge appends from the stored "
            "one: delete the branch and import again to take the document's\n"
        )
    if isinstance(result, ImportStopped):
        err.write(f"error: {result}\n")
        if result.purged:
            err.write(
                f"session {result.session_id!r} was purged recently: its id may not be "
                "used again until the purge retention (purge_after_s) has passed; nothing "
                "was stored for it and the sessions after it were not tried (import the "
                "document again after that, or without this session)\n"
            )
            return 1
        if result.outcome_unknown:
            fate = "holds either its old header and turns or the document's (unconfirmed)"
        else:
            fate = "keeps its old header and turns (a new one is not stored)"
        err.write(
            f"session {result.session_id!r} {fate}; the sessions after it were not tried "
            "(run the same import again to finish)\n"
        )
        return 1
    return 0


def _id_refused(cause: BaseException) -> bool:
    """Whether a store refused the session's id (it exists, or was purged recently)."""
    return isinstance(cause, SessionValidationError) and cause.field == "session_id"


def run_sweep(
    config: SessionConfig,
    *,
    expire: bool,
    purge_after_s: int | None,
    out: TextIO,
    err: TextIO,
) -> int:
    """``sweep``: expire idle sessions and purge old ended ones now."""
    if purge_after_s is not None and not 0 <= purge_after_s <= MAX_DURATION_S:
        # Named as the user wrote it (the check behind it names the config field).
        err.write(
            f"error: --purge-after: must be a whole number of seconds in "
            f"0..{MAX_DURATION_S}, got {purge_after_s}\n"
        )
        return 1
    progress = ProgressLine("expire", stream=err, unit="session(s)")

    async def work() -> SweepReport:
        return await ops.sweep_now(
            config, expire=expire, purge_after_s=purge_after_s, progress=progress.phase
        )

    code, report = _run(work, err)
    progress.finish()
    if report is None:
        return code
    failed = f", failed {report.failed}" if report.failed else ""
    out.write(
        f"expired {report.expired}, purged {report.purged}, skipped {report.skipped}"
        f"{failed} in {report.seconds:.2f}s\n"
    )
    code = 0
    if report.failed:
        err.write(
            f"error: the store failed for {report.failed} session(s), left for the next "
            f"sweep: {report.error}\n"
        )
        code = 1
    if report.damaged:
        err.write(
            f"error: {report.damaged} damaged session record(s) could not be expired or "
            "purged and were quarantined (taken out of the sweep); repair or delete them:\n"
        )
        for session_id in report.damaged_ids:
            err.write(f"damaged: {session_id}\n")
        return 1
    return code


def run_explore(
    config: SessionConfig,
    *,
    host: str | None,
    port: int | None,
    allow_writes: bool,
    token: str | None,
    out: TextIO,
    err: TextIO,
) -> int:
    """``explore``: serve the session explorer until Ctrl-C (see docs/explorer.md).

    Refuses to start (exit code 1) on a non-loopback ``host`` without a token.
    """
    from lexigram.contracts.exceptions.config import ConfigurationError

    try:
        from lexigram.ai.session.explorer import ExplorerSettings, serve
    except ImportError as exc:
        hint = "pip install 'lexigram-ai-session[explorer]'"
        err.write(f"error: {exc}" + ("" if hint in str(exc) else f"; {hint}") + "\n")
        return 1
    try:
        settings = ExplorerSettings.from_options(
            host=host, port=port, token=token, allow_writes=allow_writes
        )
    except SessionError as exc:
        err.write(f"error: {exc.message}\n")
        return 1
    try:
        if not settings.allow_writes:  # read-only: a mistyped path or prefix creates nothing
            asyncio.run(_check_readable(config))
        serve(config, settings, err=err)
    except KeyboardInterrupt:
        return 0
    except (SessionError, ConfigurationError, OSError) as exc:
        err.write(f"error: {exc}\n")
        return 1
    except SystemExit:  # uvicorn's own exit when it cannot start (its error is printed above)
        err.write("error: the explorer could not start (see above)\n")
        return 1
    return 0


async def _check_readable(config: SessionConfig) -> None:
    """Open the store as the read-only commands do (missing SQL tables are refused)."""
    async with ops.open_store(config, read_only=True):
        pass
