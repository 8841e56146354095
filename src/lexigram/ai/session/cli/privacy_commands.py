"""CLI commands of privacy and keys: ``keys status|rotate|retire``, ``erase-user``, ``export-user``.

Keys come from ``encryption_keys`` (``application.yaml`` or
``LEX_AI_SESSION__ENCRYPTION_KEYS="new-id:key,old-id:key"``), newest first; they are
never printed. ``keys rotate`` re-wraps every stored data key under the newest key in
batches (progress on stderr, a cursor to resume with); ``keys retire KEYID`` exits 1
while any record still needs that key, else says it can be removed from the config.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import orjson
from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram.ai.session.cli.interrupt import run_interruptible
from lexigram.ai.session.cli.operations import DAMAGED, open_store, why_unreadable
from lexigram.ai.session.cli.transfer import dump_document, session_to_dict, write_document
from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.encryption.keyring import Keyring
from lexigram.ai.session.exceptions import EncryptionKeyError, SessionError
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.manager.privacy import export_user as export_readable
from lexigram.ai.session.manager.protocol import SessionManagerAPI
from lexigram.ai.session.stores.base import SessionStore
from lexigram.ai.session.stores.encrypted.envelopes import envelope_access
from lexigram.ai.session.stores.encrypted.wiring import crypto_missing, encrypt_if_configured

if TYPE_CHECKING:
    from lexigram.ai.session.stores.encrypted.rotation import RotationReport

__all__ = [
    "COMMANDS",
    "ManagerFactory",
    "add_parsers",
    "run",
    "run_erase_user",
    "run_export_user",
    "run_keys_retire",
    "run_keys_rotate",
    "run_keys_status",
]

#: The commands this module adds to the CLI.
COMMANDS = frozenset({"keys", "erase-user", "export-user"})

T = TypeVar("T")

ManagerFactory = Callable[[SessionStore, SessionConfig], SessionManagerAPI]
"""Makes the manager a command runs through: any :class:`SessionManagerAPI` (a wrapped or
instrumented manager too); ``SessionManagerImpl`` by default."""


def add_parsers(sub: Any) -> None:
    """Add ``keys``, ``erase-user`` and ``export-user`` to the CLI's subparsers."""
    keys = sub.add_parser("keys", help="encryption keys: status, rotate, retire")
    actions = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    actions.add_parser("status", help="how many stored records need each configured key")
    p = actions.add_parser("rotate", help="re-wrap every data key under the newest key")
    p.add_argument("--batch", type=int, default=500, help="sessions per batch (default 500)")
    p.add_argument("--resume-from", metavar="CURSOR", help="cursor printed by an earlier run")
    p = actions.add_parser("retire", help="check that no stored record needs KEYID any more")
    p.add_argument("key_id", metavar="KEYID")

    p = sub.add_parser("erase-user", help="erase every session of a user (irreversible)")
    p.add_argument("user_id", metavar="USER")
    p.add_argument("--json", action="store_true", help="the report as JSON on stdout")

    p = sub.add_parser("export-user", help="everything stored about a user, as one document")
    p.add_argument("user_id", metavar="USER")
    p.add_argument("-o", "--output", help="file to write (default: stdout)")


def _run(make: Callable[[], Awaitable[T]], err: TextIO) -> tuple[int, T | None]:
    async def main() -> T:
        return await make()

    try:
        return 0, run_interruptible(main())
    except (SessionError, ConfigurationError, OSError) as exc:
        err.write(f"error: {exc}\n")
        return 1, None


def _keyring(config: SessionConfig) -> Keyring:
    keyring = Keyring.from_config(config.encryption_keys)
    if keyring is None:
        raise ConfigurationError(
            "ai_session.encryption_keys: no key configured (set it in application.yaml or "
            "LEX_AI_SESSION__ENCRYPTION_KEYS='id:key,...', newest first)"
        )
    return keyring


def _rotation() -> ModuleType:
    """The key rotation module, which needs ``cryptography`` (the CLI's other commands do not)."""
    try:
        from lexigram.ai.session.stores.encrypted import rotation
    except ImportError as exc:
        raise crypto_missing() from exc
    return rotation


@asynccontextmanager
async def _store(config: SessionConfig, *, read_only: bool = False) -> AsyncIterator[SessionStore]:
    async with open_store(config, read_only=read_only) as store:
        yield encrypt_if_configured(store, config)


def run(args: argparse.Namespace, config: SessionConfig, *, out: TextIO, err: TextIO) -> int:
    """Run one of :data:`COMMANDS`; returns the exit code."""
    if args.command == "erase-user":
        return run_erase_user(config, args.user_id, as_json=args.json, out=out, err=err)
    if args.command == "export-user":
        return run_export_user(config, args.user_id, args.output, out=out, err=err)
    action = args.keys_command
    if action == "status":
        return run_keys_status(config, out=out, err=err)
    if action == "rotate":
        return run_keys_rotate(
            config, batch=args.batch, resume_from=args.resume_from, out=out, err=err
        )
    return run_keys_retire(config, args.key_id, out=out, err=err)


def run_keys_status(config: SessionConfig, *, out: TextIO, err: TextIO) -> int:
    """``keys status``: how many stored records need each configured key."""
    async def work() -> list[tuple[str, int]]:
        keyring = _keyring(config)
        key_usage = _rotation().key_usage
        async with _store(config, read_only=True) as store:
            access = envelope_access(store)
            return [(key_id, await key_usage(access, key_id)) for key_id in keyring.ids]

    code, counts = _run(work, err)
    for index, (key_id, count) in enumerate(counts or []):
        role = "newest (wraps new data keys)" if index == 0 else "older"
        out.write(f"{key_id}: {count} record(s); {role}\n")
    return code


def run_keys_rotate(
    config: SessionConfig, *, batch: int, resume_from: str | None, out: TextIO, err: TextIO
) -> int:
    """``keys rotate``: re-wrap every data key under the newest key, batch by batch."""
    if batch < 1:
        err.write("error: --batch: must be >= 1\n")
        return 1

    def progress(report: RotationReport) -> None:
        resume = f"; resume with --resume-from {report.cursor}" if report.cursor else ""
        err.write(
            f"batch {report.batches}: {report.sessions_seen} session(s) seen, "
            f"{report.sessions_rewrapped} re-wrapped{resume}\n"
        )

    async def work() -> RotationReport:
        keyring = _keyring(config)
        rotate_keys = _rotation().rotate_keys
        async with _store(config, read_only=True) as store:  # never creates a store
            report: RotationReport = await rotate_keys(
                envelope_access(store),
                keyring,
                batch=batch,
                resume_from=resume_from,
                progress=progress,
            )
            return report

    code, report = _run(work, err)
    if report is None:
        return code
    out.write(
        f"rotated: {report.sessions_rewrapped} of {report.sessions_seen} session(s) re-wrapped "
        f"({report.envelopes_rewrapped} key envelope(s)) under the newest key\n"
    )
    for session_id, problem in report.failed:
        err.write(f"error: session {session_id!r}: {problem}\n")
    return 1 if report.failed else 0


def run_keys_retire(config: SessionConfig, key_id: str, *, out: TextIO, err: TextIO) -> int:
    """``keys retire KEYID``: exit 1 while a stored record still needs the key."""
    configured: list[str] = []

    async def work() -> int:
        keyring = _keyring(config)
        configured.extend(keyring.ids)
        if keyring.newest.id == key_id:
            raise ConfigurationError(
                f"ai_session.encryption_keys: {key_id!r} is the newest key (it wraps every new "
                "data key); put a new key first and run 'keys rotate' before retiring it"
            )
        key_usage = _rotation().key_usage
        async with _store(config, read_only=True) as store:
            count: int = await key_usage(envelope_access(store), key_id)
            return count

    code, count = _run(work, err)
    if count is None:
        return code
    if count:
        err.write(
            f"error: key {key_id!r} still wraps the data keys of {count} stored record(s); "
            "run 'keys rotate' first (with a newer key first in encryption_keys)\n"
        )
        return 1
    if key_id not in configured:
        err.write(
            f"error: key {key_id!r} is not in encryption_keys (configured: "
            f"{', '.join(configured)}), and no stored record needs it\n"
        )
        return 1
    out.write(f"key {key_id!r} is needed by no stored record: remove it from encryption_keys\n")
    return 0


def run_erase_user(
    config: SessionConfig,
    user_id: str,
    *,
    as_json: bool,
    out: TextIO,
    err: TextIO,
    manager: ManagerFactory = SessionManagerImpl,
) -> int:
    """``erase-user USER``: erase every session of the user; print what was removed."""
    async def work() -> Any:
        async with _store(config, read_only=True) as store:  # never creates a store
            return await manager(store, config).erase_user(user_id)

    code, erasure = _run(work, err)
    if erasure is None:
        return code
    if as_json:
        out.write(orjson.dumps({
            "user_id": erasure.user_id,
            "sessions": erasure.sessions,
            "checkpoints": erasure.checkpoints,
            "turns": erasure.turns,
            "damaged": erasure.damaged,
            "complete": erasure.complete,
        }, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out.write(
            f"erased user {user_id!r}: {len(erasure.sessions)} session(s), "
            f"{erasure.checkpoints} checkpoint(s), {erasure.turns} turn(s)\n"
        )
    if not erasure.complete:
        err.write("error: sessions of the user remain (created meanwhile?); run it again\n")
        return 1
    return 0


def run_export_user(
    config: SessionConfig,
    user_id: str,
    output: str | None,
    *,
    out: TextIO,
    err: TextIO,
    manager: ManagerFactory = SessionManagerImpl,
) -> int:
    """``export-user USER``: everything stored about the user as one export document."""
    reasons: dict[str, str] = {}

    async def work() -> Any:
        async with _store(config, read_only=True) as store:
            try:
                export = await manager(store, config).export_user(user_id)
            except EncryptionKeyError:
                # The manager refuses a user it cannot read whole; the command writes
                # what it can read and names the rest (exit 1), as `export` does.
                export = await export_readable(store, user_id, skip_unopenable=True)
            if export.damaged:
                reasons.update(await why_unreadable(store, list(export.damaged)))
            return export

    code, export = _run(work, err)
    if export is None:
        return code
    data = dump_document([
        session_to_dict(s.state, s.checkpoints, fork_seq=s.fork_seq)
        for s in export.sessions
    ])
    done = f"wrote {len(export.sessions)} session(s) of {user_id!r} to {output}"
    if write_document(data, output, out, err, done):
        return 1
    for session_id in export.damaged:
        why = reasons.get(session_id, DAMAGED)
        err.write(f"warning: session {session_id!r} could not be read ({why}); it was left out\n")
    return 1 if export.damaged else code
