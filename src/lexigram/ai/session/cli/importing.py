"""``import``: store the sessions of an export document, all checks before any write.

Order of work
-------------
1. The whole document is validated (:func:`~.transfer.parse_document`): nothing is
   written when any session, turn or checkpoint of it is invalid. The CLI does this
   before it even opens the target store (:func:`import_entries` then takes the
   parsed sessions), so a refused document creates no SQLite file, no tables and no
   Redis key either.
2. The target store is read, never written: which sessions exist already, which
   new ids it still refuses (purged recently: ``SessionStore.id_taken``), and
   whether a checkpoint id the document uses (as a checkpoint, a parent or a
   header's ``checkpoint_id``) belongs to *another* session there. Such a document
   is refused naming the place, so an import never moves or relinks another
   session's checkpoints (with ``new_checkpoint_ids`` every checkpoint of the
   document gets a fresh id instead, see :func:`renumber_checkpoints`). A new branch
   with a fork point (``fork_seq``) needs a store whose ``create_session`` takes the
   ``fork_seq`` keyword: a backend written for the earlier store contract (found once
   per import with :func:`inspect.signature`) refuses the whole document, naming the
   branch, rather than store a branch whose later merge would append its inherited
   turns again.
3. Sessions are written one at a time, oldest first:

   * a **new** session is created in one step with its turns (a branch with its fork
     point), then its checkpoints
     are added; if adding a checkpoint fails, the new session is deleted again, so
     it is stored whole or not at all (a process killed in between cannot delete it:
     a re-run with ``replace_existing`` completes such a session);
   * an **existing** session is skipped, or with ``replace_existing`` its
     checkpoints from the document are written first and then its header and live
     turns are replaced in **one atomic step** (``SessionStore.save``). It is never
     deleted: until that step the stored session keeps its old header and turns,
     after it the document's. Checkpoints the stored session has and the document
     lacks are kept (still restorable), and so is its stored fork point (``save``
     takes none).

A store failure in step 3 stops the import with :class:`ImportStopped`, which
tells what was written before it; running the same import again finishes it.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, timedelta

from lexigram.contracts.ai.session import SessionCheckpoint, SessionState

from lexigram.ai.session.cli.reader import ExportedSession
from lexigram.ai.session.cli.transfer import checkpoint_references, parse_document
from lexigram.ai.session.exceptions import SessionValidationError, WriteOutcomeUnknownError
from lexigram.ai.session.manager.sealed_guard import SealedSessionGuard
from lexigram.ai.session.stores.base import LIVE_STATUSES, SessionRecord, SessionStore

__all__ = [
    "ImportReport",
    "ImportStopped",
    "import_document",
    "import_entries",
    "renumber_checkpoints",
    "takes_fork_seq",
]

Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class ImportReport:
    """What an import did (``checkpoints``: how many checkpoints were written)."""

    imported: list[str]
    skipped: list[str]
    replaced: list[str]
    checkpoints: int
    #: Branches replaced whose stored fork point differs from the document's: a replace
    #: writes the state whole (``save``), which keeps the stored fork point.
    fork_points_kept: list[str] = field(default_factory=list)


class ImportStopped(Exception):
    """A store failure stopped an import after validation; ``report`` is what was written.

    The session being written when it stopped (``session_id``) is not partly stored:
    a new one was removed again; a replaced one keeps its old header and turns, or,
    when ``outcome_unknown`` (the store could not confirm the replacing step), holds
    either the old ones or the document's, never a mix.
    """

    def __init__(
        self,
        report: ImportReport,
        session_id: str,
        cause: BaseException,
        *,
        outcome_unknown: bool = False,
    ) -> None:
        self.report = report
        self.session_id = session_id
        self.cause = cause
        self.outcome_unknown = outcome_unknown
        #: Set by the CLI: the id was refused although no session holds it (a tombstone).
        self.purged = False
        written = len(report.imported) + len(report.replaced)
        super().__init__(
            f"import stopped at session {session_id!r} ({cause}); "
            f"{written} session(s) written before it"
        )


def renumber_checkpoints(entry: ExportedSession) -> ExportedSession:
    """``entry`` with a fresh id for each checkpoint, every reference rewritten.

    Parents and the ``checkpoint_id`` of the session's and the checkpoints' headers
    follow the new ids; a reference to a checkpoint the entry does not hold becomes
    None (it would name a checkpoint of another session).
    """
    new_ids = {cp.checkpoint_id: uuid.uuid4().hex for cp in entry.checkpoints}

    def header(state: SessionState) -> SessionState:
        link = state.checkpoint_id
        return replace(state, checkpoint_id=None if link is None else new_ids.get(link))

    checkpoints = [
        replace(
            cp,
            checkpoint_id=new_ids[cp.checkpoint_id],
            parent_checkpoint_id=(
                None if cp.parent_checkpoint_id is None
                else new_ids.get(cp.parent_checkpoint_id)
            ),
            state=header(cp.state),
        )
        for cp in entry.checkpoints
    ]
    return ExportedSession(
        state=header(entry.state), checkpoints=checkpoints, fork_seq=entry.fork_seq
    )


def takes_fork_seq(store: SessionStore) -> bool:
    """Whether ``store.create_session`` takes the ``fork_seq`` keyword (and every store
    it wraps, through ``inner``): a backend written for the earlier store contract
    does not, and would fail a branch's create with a ``TypeError``."""
    seen: set[int] = set()
    current: object = store
    while isinstance(current, SessionStore) and id(current) not in seen:
        seen.add(id(current))
        try:
            params = inspect.signature(current.create_session).parameters
        except (TypeError, ValueError):  # no signature to read: assume the old contract
            return False
        if "fork_seq" not in params and not any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
        ):
            return False
        current = getattr(current, "inner", None)
    return True


def _check_fork_points(
    store: SessionStore, plan: list[tuple[ExportedSession, bool]], places: dict[str, str]
) -> None:
    """Refuse a new branch with a fork point when the store cannot keep it."""
    wanted = [e for e, exists in plan if not exists and e.fork_seq is not None]
    if not wanted or takes_fork_seq(store):
        return
    entry = wanted[0]
    sid = entry.state.session_id
    raise SessionValidationError(
        f"{places[sid]}.fork_seq",
        f"the target store ({type(store).__name__}) cannot keep the fork point of branch "
        f"{sid!r}: its create_session takes no fork_seq keyword (a backend written for an "
        "earlier store contract); nothing was written. Update the backend, or remove "
        "fork_seq from the document to import the branch without its fork point (a "
        "later merge of it then appends all of its turns)",
    )


def _check_deadline(store: SessionStore, entry: ExportedSession, where: str) -> None:
    """Refuse a live session whose deadline (``updated_at + session_ttl`` of the target
    store) is past what a datetime holds: its write would stop the import half-way."""
    ttl = store.session_ttl
    state = entry.state
    if not ttl or state.status not in LIVE_STATUSES:
        return
    try:
        state.updated_at.astimezone(UTC) + timedelta(seconds=ttl)
    except OverflowError:
        raise SessionValidationError(
            f"{where}.header.updated_at",
            f"{state.updated_at.isoformat()} plus the target store's session_ttl ({ttl} s) "
            "is past year 9999: no backend can store its deadline",
        ) from None


def _check_not_revived(stored: SessionRecord, entry: ExportedSession, where: str) -> None:
    """Refuse replacing an ended session with a live one (``save`` would refuse it, after
    the entry's checkpoints were written): a closed or expired session stays ended."""
    if entry.state.status not in LIVE_STATUSES:
        return
    if stored.state.status not in LIVE_STATUSES:
        raise SessionValidationError(
            f"{where}.status",
            f"session {entry.state.session_id!r} is {stored.state.status.value} in the target "
            f"store; a {entry.state.status.value} copy cannot make it live again (delete it "
            "first to import it as it was)",
        )


async def _check_not_purged(store: SessionStore, entry: ExportedSession, where: str) -> None:
    """Refuse an id the store still holds a tombstone for (purged recently): its create
    would be refused, after the sessions before it in the document were written."""
    sid = entry.state.session_id
    if await store.id_taken(sid):
        raise SessionValidationError(
            f"{where}.session_id",
            f"session {sid!r} was purged recently in the target store: its id may not be "
            "used again until the purge retention (purge_after_s) has passed (import the "
            "document after that, or without this session); nothing was written",
        )


async def _check_ownership(store: SessionStore, entry: ExportedSession, where: str) -> None:
    """Refuse a checkpoint id that belongs to another session in ``store``."""
    sid = entry.state.session_id
    owners: dict[str, str | None] = {}
    for place, ref in checkpoint_references(entry, where):
        if ref not in owners:
            found = await store.load_checkpoint(ref)
            owners[ref] = None if found is None else found.session_id
        owner = owners[ref]
        if owner is not None and owner != sid:
            raise SessionValidationError(
                place,
                f"checkpoint {ref!r} belongs to session {owner!r} in the target store; "
                "import with new checkpoint ids (--new-checkpoint-ids) to copy a session",
            )


async def _write_new(
    store: SessionStore,
    state: SessionState,
    cps: list[SessionCheckpoint],
    fork_seq: int | None = None,
) -> None:
    try:
        # Inside the try: a create cancelled after the database committed it (SQLite
        # may) left a session without its checkpoints that a re-run skipped as present.
        if fork_seq is None:  # no keyword: a store of the earlier contract takes it
            await store.create_session(state)
        else:
            await store.create_session(state, fork_seq=fork_seq)
        for checkpoint in cps:
            await store.save_checkpoint(checkpoint)
    except SessionValidationError as exc:
        if exc.field != "session_id":  # "already exists": not ours to remove
            await store.delete(state.session_id)
        raise
    except BaseException:
        await store.delete(state.session_id)
        raise


async def _write_replace(
    store: SessionStore, state: SessionState, cps: list[SessionCheckpoint]
) -> None:
    for checkpoint in cps:
        await store.save_checkpoint(checkpoint)
    await store.save(state)


async def import_document(
    store: SessionStore,
    raw: bytes | str,
    *,
    replace_existing: bool = False,
    new_checkpoint_ids: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Import every session of the document ``raw`` into ``store`` (see the module doc)."""
    return await import_entries(
        store,
        parse_document(raw),
        replace_existing=replace_existing,
        new_checkpoint_ids=new_checkpoint_ids,
        progress=progress,
    )


async def import_entries(
    store: SessionStore,
    entries: list[ExportedSession],
    *,
    replace_existing: bool = False,
    new_checkpoint_ids: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """Import the sessions of a document already validated by
    :func:`~.transfer.parse_document` (in its order) into ``store``."""
    entries = list(entries)
    places = {e.state.session_id: f"sessions[{i}]" for i, e in enumerate(entries)}
    if new_checkpoint_ids:
        entries = [renumber_checkpoints(e) for e in entries]
    # Oldest first, so that listings (newest first) come out as in the source store.
    entries.sort(key=lambda e: e.state.created_at)
    plan: list[tuple[ExportedSession, bool]] = []
    fork_seqs: dict[str, int | None] = {}
    for entry in entries:
        stored = await store.load_record(entry.state.session_id)
        exists = stored is not None
        if stored is not None:
            fork_seqs[entry.state.session_id] = stored.fork_seq
        if not exists:
            await _check_not_purged(store, entry, places[entry.state.session_id])
        if not exists or replace_existing:
            _check_deadline(store, entry, places[entry.state.session_id])
            await _check_ownership(store, entry, places[entry.state.session_id])
        if stored is not None and replace_existing:
            _check_not_revived(stored, entry, places[entry.state.session_id])
            # Without keys, a replace would store an encrypted session's values in clear
            # (and drop its wrapped data key): refused by key id, as a manager's write is.
            SealedSessionGuard(store).check_state(stored.state)
        plan.append((entry, exists))
    _check_fork_points(store, plan, places)
    kept = [
        entry.state.session_id
        for entry, exists in plan
        if exists and replace_existing and entry.fork_seq is not None
        and entry.fork_seq != fork_seqs.get(entry.state.session_id)
    ]
    imported: list[str] = []
    skipped: list[str] = []
    replaced: list[str] = []
    checkpoints = 0
    for n, (entry, exists) in enumerate(plan, start=1):
        sid = entry.state.session_id
        try:
            if exists and not replace_existing:
                skipped.append(sid)
            elif exists:
                await _write_replace(store, entry.state, entry.checkpoints)
                replaced.append(sid)
                checkpoints += len(entry.checkpoints)
            else:
                await _write_new(store, entry.state, entry.checkpoints, entry.fork_seq)
                imported.append(sid)
                checkpoints += len(entry.checkpoints)
        except Exception as exc:
            report = ImportReport(list(imported), list(skipped), list(replaced), checkpoints)
            unknown = exists and isinstance(exc, WriteOutcomeUnknownError)
            raise ImportStopped(report, sid, exc, outcome_unknown=unknown) from exc
        if progress is not None:
            progress(n, len(plan))
    return ImportReport(
        imported=imported,
        skipped=skipped,
        replaced=replaced,
        checkpoints=checkpoints,
        fork_points_kept=[sid for sid in kept if sid in replaced],
    )
