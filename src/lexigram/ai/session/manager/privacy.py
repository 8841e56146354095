"""Erasure and portability of one user's data (``erase_user``, ``export_user``).

Erasure is the store's ``erase_user`` (one atomic step per session, resumable) plus
a ``SessionUserErasedEvent`` and the ``ai_session.user_erased`` hook, carrying counts
only. Export gathers every session of the user and the branches forked from them,
each with its turns and checkpoints, read through the store (so decrypted when
encryption is on), parents before branches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lexigram.contracts.ai.session import SessionCheckpoint, SessionState

from lexigram.ai.session.events import SessionUserErasedEvent
from lexigram.ai.session.exceptions import (
    CorruptRecordError,
    EncryptionKeyError,
    SessionStoreError,
)
from lexigram.ai.session.hooks import HOOK_USER_ERASED, SessionUserErasedHook
from lexigram.ai.session.manager.notifier import SessionNotifier
from lexigram.ai.session.manager.sealed_guard import SealedSessionGuard
from lexigram.ai.session.stores.base import SessionStore, UserErasure
from lexigram.ai.session.validation import check_id

__all__ = [
    "ExportedUserSession",
    "UserExport",
    "branch_fork_point",
    "erase_user",
    "export_user",
    "user_session_ids",
]


@dataclass(frozen=True)
class ExportedUserSession:
    """One exported session: its full state (live turns), its checkpoints and, for a
    branch, its fork point (how many of its first turns it inherited, see
    :func:`branch_fork_point`; what an import keeps so that a merge appends only the
    branch's own turns)."""

    state: SessionState
    checkpoints: list[SessionCheckpoint] = field(default_factory=list)
    fork_seq: int | None = None


@dataclass(frozen=True)
class UserExport:
    """Everything stored about one user; ``damaged`` names records that could not be read."""

    user_id: str
    sessions: list[ExportedUserSession] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)


async def user_session_ids(store: SessionStore, user_id: str) -> tuple[list[str], list[str]]:
    """Every session id of ``user_id`` (paging the store) and the ids it could not decode."""
    ids: list[str] = []
    damaged: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.list_user_sessions(user_id, limit=500, cursor=cursor)
        ids.extend(s.session_id for s in page.items)
        damaged.extend(page.damaged)
        cursor = page.next_cursor
        if not cursor:
            return ids, damaged


async def export_user(
    store: SessionStore, user_id: str, *, skip_unopenable: bool = False
) -> UserExport:
    """Every session of ``user_id`` and of its branches, with turns and checkpoints.

    With ``skip_unopenable``, a session this process has no key for is named in
    ``damaged`` instead of failing the export (the CLI's ``export-user``, which
    writes the sessions it can read and exits 1 naming the others).
    """
    check_id(user_id, "user_id")
    sealed = SealedSessionGuard(store) if skip_unopenable else None
    unopenable = (EncryptionKeyError,) if skip_unopenable else ()
    pending, damaged = await user_session_ids(store, user_id)
    seen: set[str] = set(damaged)
    sessions: list[ExportedUserSession] = []
    while pending:
        session_id = pending.pop()
        if session_id in seen:
            continue
        seen.add(session_id)
        try:
            state = await store.load(session_id)
            if state is None:
                continue
            if sealed is not None:
                sealed.check_state(state)  # sealed text is never exported
            checkpoints = await store.list_checkpoints(session_id)
            branches = await store.list_branches(session_id)
            fork_seq = await branch_fork_point(store, state)
        except (CorruptRecordError, *unopenable):
            damaged.append(session_id)
            continue
        sessions.append(
            ExportedUserSession(state=state, checkpoints=checkpoints, fork_seq=fork_seq)
        )
        pending.extend(r.state.session_id for r in branches)
    sessions.sort(key=lambda s: (s.state.created_at, s.state.parent_session_id is not None))
    return UserExport(user_id=user_id, sessions=_parents_first(sessions), damaged=damaged)


async def branch_fork_point(store: SessionStore, state: SessionState) -> int | None:
    """The fork point of the branch ``state`` (a full state, as exported) in a document:
    how many of the first ``state.turns`` it inherited; None for a session that is no
    branch or has no fork point stored.

    The store keeps the last inherited ``seq`` (``SessionRecord.fork_seq``); the turns
    it still has up to that seq are the first ones of ``state.turns`` (seqs only grow).
    A turn popped or cleared from the branch since the fork is not counted, so that the
    imported branch's turns after the fork point are exactly those a merge appends on
    the source store. Raises ``SessionStoreError`` when the branch's inherited turns
    changed between the read of ``state`` and this one (export again).
    """
    if state.parent_session_id is None:
        return None
    record = await store.load_record(state.session_id)
    if record is None or record.fork_seq is None:
        return None
    fork_seq = record.fork_seq
    inherited: list[str] = []
    if fork_seq > 0:
        # At most fork_seq live turns have a seq <= fork_seq: only they are read.
        pairs = await store.get_turn_seqs(state.session_id, limit=fork_seq)
        inherited = [turn.turn_id for seq, turn in pairs if seq <= fork_seq]
    if [t.turn_id for t in state.turns[: len(inherited)]] != inherited:
        raise SessionStoreError(
            f"branch {state.session_id!r} changed while it was exported (its inherited "
            "turns differ between two reads); export it again"
        )
    return len(inherited)


def _parents_first(sessions: list[ExportedUserSession]) -> list[ExportedUserSession]:
    """Order so that every branch comes after the session it was forked from."""
    by_id = {s.state.session_id: s for s in sessions}
    placed: set[str] = set()
    out: list[ExportedUserSession] = []

    def place(item: ExportedUserSession) -> None:
        sid = item.state.session_id
        if sid in placed:
            return
        placed.add(sid)
        parent = by_id.get(item.state.parent_session_id or "")
        if parent is not None:
            place(parent)
        out.append(item)

    for item in sessions:
        place(item)
    return out


async def erase_user(store: SessionStore, notifier: SessionNotifier, user_id: str) -> UserErasure:
    """Erase everything stored about ``user_id``; announce it (counts only)."""
    check_id(user_id, "user_id")
    erasure = await store.erase_user(user_id)
    await notifier.notify_lazy(
        lambda: SessionUserErasedEvent(
            user_id=user_id,
            sessions=len(erasure.sessions),
            checkpoints=erasure.checkpoints,
            turns=erasure.turns,
        ),
        HOOK_USER_ERASED,
        lambda: SessionUserErasedHook(
            user_id=user_id,
            sessions=len(erasure.sessions),
            checkpoints=erasure.checkpoints,
            turns=erasure.turns,
        ),
    )
    return erasure
