"""What the CLI commands do, as async functions over a configured store.

Each function opens the store ``config`` names, does its work and closes it; the
command-line front ends (:mod:`.main` for ``python -m lexigram.ai.session.cli``,
:mod:`.typer_app` for the ``lexigram`` CLI) only parse arguments and print.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, fields
from typing import Any

from lexigram.contracts.ai.session import SessionCheckpoint, SessionState, SessionStatus
from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram.ai.session.analytics import SessionAnalytics, compute
from lexigram.ai.session.backends import canonical_name, find_backend
from lexigram.ai.session.cli.flags import configured_section, with_flags
from lexigram.ai.session.cli.importing import ImportReport, import_entries
from lexigram.ai.session.cli.schema import tables_present
from lexigram.ai.session.cli.transfer import fork_point, parse_document, session_to_dict
from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.exceptions import (
    CorruptRecordError,
    EncryptionKeyError,
    SessionNotFoundError,
    SessionStoreError,
    SessionValidationError,
)
from lexigram.ai.session.manager.cleanup import SessionCleanupScheduler, SweepProgress, SweepReport
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.manager.privacy import user_session_ids
from lexigram.ai.session.manager.sealed_guard import SealedSessionGuard
from lexigram.ai.session.stores.base import SessionStore
from lexigram.ai.session.stores.registry import create_store

__all__ = [
    "Export",
    "ImportReport",
    "Listing",
    "Progress",
    "SessionDetails",
    "build_config",
    "export_sessions",
    "import_sessions",
    "list_sessions",
    "open_store",
    "schema_setup",
    "show_session",
    "sweep_now",
]

Progress = Callable[[int, int | None], None]
"""Called with (done, total or None) as a long operation advances."""


def build_config(
    *,
    backend: str | None = None,
    database_url: str | None = None,
    redis_url: str | None = None,
    table_prefix: str | None = None,
    key_prefix: str | None = None,
    base: SessionConfig | None = None,
) -> SessionConfig:
    """The config of ``application.yaml`` / profile / ``LEX_AI_SESSION__*`` plus overrides.

    A ``database_url`` without ``backend`` selects the ``sql`` backend (or sets the URL
    of a configured plugin backend that reads ``database_url``); a ``redis_url``
    selects ``redis`` (likewise); both without ``backend`` are refused naming
    ``ai_session.backend`` (as in the configuration).
    """
    overrides: dict[str, Any] = {}
    section = configured_section() if base is None else None  # read once
    if database_url is not None:
        overrides["database_url"] = database_url
    if redis_url is not None:
        overrides["redis_url"] = redis_url
    if table_prefix is not None:
        overrides["table_prefix"] = table_prefix
    if key_prefix is not None:
        overrides["key_prefix"] = key_prefix
    if backend is not None:
        overrides["backend"] = backend
    elif database_url is not None and redis_url is not None:
        raise ConfigurationError(
            "ai_session.backend: both --database-url and --redis-url are given; "
            "give one, or choose the backend with --backend"
        )
    elif database_url is not None:
        overrides["backend"] = _reading("database_url", database_url, base, section) or "sql"
    elif redis_url is not None:
        overrides["backend"] = _reading("redis_url", redis_url, base, section) or "redis"
    if base is None:
        # Applied before validation: env settings for the backend the flags choose hold.
        return SessionConfig(**with_flags(section or {}, overrides))
    if not overrides:
        return base
    values = {f.name: getattr(base, f.name) for f in fields(base)}
    return SessionConfig(**{**values, **overrides})


def _require_database_file(config: SessionConfig) -> None:
    """Refuse a SQLite database file that does not exist (a read-only command)."""
    if canonical_name(config.backend) != "sql":
        return
    from lexigram.ai.session.stores.sql.urls import normalise_url

    path = normalise_url(config.database_url).sqlite_path
    if path is not None and not path.exists():
        raise SessionStoreError(
            f"no SQLite database at {path}: a command that only reads, erases or rotates "
            "keys does not create one (check --database-url; 'schema-setup', 'import' or "
            "'sweep' creates it)"
        )


async def _require_schema(config: SessionConfig, store: SessionStore) -> None:
    """Refuse SQL session tables that do not exist under the prefix, or a Redis key prefix
    holding nothing (a read-only command)."""
    store = getattr(store, "inner", store)  # the store behind an encrypting one
    if canonical_name(config.backend) == "redis":
        from lexigram.ai.session.stores.cache import CacheSessionStore  # needs the extra

        if not isinstance(store, CacheSessionStore):
            return
        await store.ping()
        if not await store.holds_data():
            raise SessionStoreError(
                f"nothing stored under key prefix {config.key_prefix!r} on that Redis: a "
                "mistyped prefix, or a store that holds no session any more (all erased "
                "or purged: then nothing needs a key and no user is left to erase); a "
                "command that only reads, erases or rotates keys does not tell the two "
                "apart (check --key-prefix and --redis-url)"
            )
        return
    from lexigram.ai.session.stores.database import DatabaseSessionStore

    if not isinstance(store, DatabaseSessionStore):
        return
    await store.ping()  # an unreachable server is named as by initialize()
    if not await tables_present(store):
        raise SessionStoreError(
            f"no session tables with prefix {config.table_prefix!r} in that database: a "
            "command that only reads, erases or rotates keys does not create them (check "
            "--table-prefix and --database-url; 'schema-setup', 'import' or 'sweep' "
            "creates them)"
        )


@asynccontextmanager
async def open_store(
    config: SessionConfig, *, read_only: bool = False
) -> AsyncIterator[SessionStore]:
    """The initialised store of ``config`` (closed on exit).

    ``read_only``: a SQLite file, or SQL session tables under the prefix, that do not
    exist are refused, not created (also for commands that erase or rotate keys: a
    mistyped path or prefix must not pass for an empty store).
    """
    if read_only:
        _require_database_file(config)
    store = create_store(config)
    store.session_ttl = config.session_ttl
    try:
        if read_only:
            await _require_schema(config, store)
        await store.initialize()
        yield store
    finally:
        await store.close()


async def schema_setup(config: SessionConfig) -> str:
    """Create (or upgrade) what the backend needs; returns a one-line description."""
    backend = find_backend(config.backend)
    if backend is None:
        create_store(config)  # raises the ConfigurationError naming the known backends
        raise AssertionError("unreachable")
    return await backend.setup(config)


@dataclass(frozen=True)
class Listing:
    """Session headers found, and the ids of sessions whose record could not be read."""

    sessions: list[SessionState]
    damaged: list[str] = field(default_factory=list)
    #: Why each damaged session could not be read (see :func:`why_unreadable`).
    reasons: dict[str, str] = field(default_factory=dict)


#: At most this many unreadable sessions are read again to say why.
_WHY_MAX = 100
DAMAGED = "stored record is damaged"


async def why_unreadable(store: SessionStore, session_ids: list[str]) -> dict[str, str]:
    """Why each session a listing left out could not be read: the key error, naming the
    key id, when its key is missing or does not open it; else :data:`DAMAGED`."""
    sealed = SealedSessionGuard(store)
    reasons: dict[str, str] = {}
    for session_id in session_ids[:_WHY_MAX]:
        try:
            error = await sealed.key_error(session_id)
        except Exception:  # damaged in some other way: said as such
            error = None
        reasons[session_id] = (
            DAMAGED if error is None else f"cannot decrypt it: key {error.key_id!r} {error.problem}"
        )
    return reasons


async def list_sessions(
    config: SessionConfig,
    user_id: str,
    *,
    status: str | None = None,
    limit: int = 50,
) -> Listing:
    """Up to ``limit`` of the user's session headers, newest first, and the damaged ids."""
    if not isinstance(limit, int) or limit < 1:
        raise SessionValidationError("limit", f"must be an integer >= 1, got {limit!r}")
    wanted = None if status is None else _status(status)
    found: list[SessionState] = []
    damaged: list[str] = []
    async with open_store(config, read_only=True) as store:
        sealed = SealedSessionGuard(store)
        cursor: str | None = None
        while len(found) < limit:
            page = sealed.split_page(
                await store.list_user_sessions(
                    user_id, status=wanted, limit=min(limit - len(found), 500), cursor=cursor
                )
            )
            found.extend(page.items)
            damaged.extend(page.damaged)
            cursor = page.next_cursor
            if not cursor:
                break
        reasons = await why_unreadable(store, damaged) if damaged else {}
    return Listing(sessions=found[:limit], damaged=damaged, reasons=reasons)


def _reading(
    url_field: str, url: str, base: SessionConfig | None, section: dict[str, Any] | None
) -> str | None:
    """The configured plugin backend (``base``'s, else the settings ``section``'s) when
    it reads ``url_field`` and takes ``url`` (``--database-url`` then sets its URL
    instead of choosing the ``sql`` backend), else None: a URL the plugin refuses (a SQL
    URL) still chooses the built-in backend."""
    written = base.backend if base is not None else (section or {}).get("backend")
    if not isinstance(written, str) or canonical_name(written) in ("memory", "sql", "redis"):
        return None
    plugin = find_backend(written)
    if plugin is None or plugin.url_field != url_field:
        return None
    try:
        refused = plugin.url_problem(url)
    except Exception:  # a plugin's check that fails is no acceptance
        return None
    return written if refused is None else None


def _status(value: str) -> SessionStatus:
    try:
        return SessionStatus(value.lower())
    except ValueError:
        known = ", ".join(s.value for s in SessionStatus)
        problem = f"unknown status {value!r}; one of {known}"
        raise SessionValidationError("status", problem) from None


@dataclass(frozen=True)
class SessionDetails:
    """What ``show`` prints: the header, the newest turns, checkpoints and analytics."""

    state: SessionState
    checkpoints: list[SessionCheckpoint]
    analytics: SessionAnalytics


async def show_session(config: SessionConfig, session_id: str) -> SessionDetails:
    """The session with all its turns, its checkpoint headers and its analytics."""
    async with open_store(config, read_only=True) as store:
        state = await store.load(session_id)
        if state is None:
            raise SessionNotFoundError(session_id)
        SealedSessionGuard(store).check_state(state)  # never print sealed text
        checkpoints = await store.list_checkpoint_headers(session_id)
    return SessionDetails(state=state, checkpoints=checkpoints, analytics=compute(state))


@dataclass(frozen=True)
class Export:
    """Document entries of the sessions exported, and the ids that could not be read."""

    entries: list[dict[str, Any]]
    damaged: list[str] = field(default_factory=list)
    #: Why each damaged session could not be read (see :func:`why_unreadable`).
    reasons: dict[str, str] = field(default_factory=dict)


async def export_sessions(
    config: SessionConfig,
    *,
    session_ids: list[str] | None = None,
    user_id: str | None = None,
    include_checkpoints: bool = True,
    progress: Progress | None = None,
) -> Export:
    """Document entries of the named sessions, or of every session of ``user_id``.

    A session whose stored record cannot be decoded (listed in
    ``SessionPage.damaged``, or raising ``CorruptRecordError`` when read) is left
    out and its id reported in :attr:`Export.damaged`; the others are exported.
    """
    if not session_ids and not user_id:
        raise SessionValidationError("session_id", "name a session or a user to export")
    entries: list[dict[str, Any]] = []
    damaged: list[str] = []
    async with open_store(config, read_only=True) as store:
        sealed = SealedSessionGuard(store)
        ids = list(session_ids or [])
        if user_id:
            found, damaged = await user_session_ids(store, user_id)
            ids.extend(found)
        ids = list(dict.fromkeys(ids))  # a session named twice is exported once
        for n, session_id in enumerate(ids, start=1):
            try:
                state = await store.load(session_id)
                if state is None:
                    raise SessionNotFoundError(session_id)
                sealed.check_state(state)  # never write sealed text
                checkpoints = (
                    await store.list_checkpoints(session_id) if include_checkpoints else []
                )
                fork_seq = await fork_point(store, state)
            except (CorruptRecordError, EncryptionKeyError):  # named with its reason
                damaged.append(session_id)
            else:
                entries.append(session_to_dict(state, checkpoints, fork_seq=fork_seq))
            if progress is not None:
                progress(n, len(ids))
        reasons = await why_unreadable(store, damaged) if damaged else {}
    return Export(entries=entries, damaged=damaged, reasons=reasons)


async def session_exists(config: SessionConfig, session_id: str) -> bool:
    """Whether a session (readable or damaged) is stored under ``session_id``."""
    async with open_store(config) as store:
        try:
            return await store.load_record(session_id) is not None
        except CorruptRecordError:
            return True


async def import_sessions(
    config: SessionConfig,
    raw: bytes | str,
    *,
    replace_existing: bool = False,
    new_checkpoint_ids: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Store every session of an export document, with its checkpoints.

    The whole document is validated before the store is even opened (a refused
    document creates no database file, tables or keys), and checked against the
    store before anything is written; see :mod:`lexigram.ai.session.cli.importing`
    for the order of the writes and what a replace guarantees.
    """
    entries = parse_document(raw)
    async with open_store(config) as store:
        return await import_entries(
            store,
            entries,
            replace_existing=replace_existing,
            new_checkpoint_ids=new_checkpoint_ids,
            progress=progress,
        )


async def sweep_now(
    config: SessionConfig,
    *,
    expire: bool = True,
    purge_after_s: int | None = None,
    progress: SweepProgress | None = None,
) -> SweepReport:
    """One sweep of the store (no event bus here: expiries fire no application events).

    ``expire=False`` only purges.
    """
    async with open_store(config) as store:
        manager = SessionManagerImpl(store, config)
        scheduler = SessionCleanupScheduler(manager, purge_after_s=purge_after_s)
        return await scheduler.sweep(progress=progress, expire=expire)
