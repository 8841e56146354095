"""``CheckpointManager``: create, list, restore, delete and prune checkpoints.

It lives in the manager layer because :class:`SessionManagerImpl` checkpoints through
it; :mod:`lexigram.ai.session.checkpointing` exports it for users.

A checkpoint records the session's header fields and the positions of its live
turns in the append-only turn log, so it costs O(1) storage whatever the session's
length; restoring one never destroys any other.
"""

from __future__ import annotations

import builtins
import dataclasses
import secrets
from typing import Any

from lexigram.contracts.ai.session import SessionCheckpoint, SessionState

from lexigram.ai.session.events import SessionCheckpointCreatedEvent, SessionCheckpointRestoredEvent
from lexigram.ai.session.exceptions import (
    CheckpointNotFoundError,
    SessionNotFoundError,
    SessionValidationError,
)
from lexigram.ai.session.hooks import (
    HOOK_CHECKPOINT_CREATED,
    HOOK_CHECKPOINT_RESTORED,
    SessionCheckpointCreatedHook,
    SessionCheckpointRestoredHook,
)
from lexigram.ai.session.manager.notifier import SessionNotifier
from lexigram.ai.session.manager.sealed_guard import SealedSessionGuard
from lexigram.ai.session.stores.base import SessionStore
from lexigram.ai.session.validation import check_id, check_mapping, check_turns

__all__ = ["CheckpointManager", "new_checkpoint_id"]


def new_checkpoint_id() -> str:
    """A fresh, unguessable checkpoint id."""
    return "cp_" + secrets.token_urlsafe(16)


def _check_id(name: str, value: object) -> str:
    return check_id(value, name)


class CheckpointManager:
    """Checkpoints of sessions kept in ``store``, at most ``max_checkpoints_per_session`` each."""

    def __init__(
        self,
        store: SessionStore,
        max_checkpoints_per_session: int = 50,
        *,
        notifier: SessionNotifier | None = None,
        sealed: SealedSessionGuard | None = None,
    ) -> None:
        if (
            not isinstance(max_checkpoints_per_session, int)
            or isinstance(max_checkpoints_per_session, bool)
            or max_checkpoints_per_session < 1
        ):
            raise SessionValidationError(
                "max_checkpoints_per_session",
                f"must be an integer >= 1, got {max_checkpoints_per_session!r}",
            )
        if not isinstance(store, SessionStore):
            raise SessionValidationError(
                "store", f"expected a SessionStore, got {type(store).__name__}"
            )
        self.store = store
        self.max_checkpoints_per_session = max_checkpoints_per_session
        self.notifier = notifier or SessionNotifier()
        # Over a store that does not encrypt, an encrypted session is refused by key id
        # before anything is written (a checkpoint's metadata would be stored in clear
        # inside it, a restore applied and then refused); see docs/privacy.md.
        self.sealed = sealed if sealed is not None else SealedSessionGuard(store)

    async def create(
        self,
        state: SessionState | str,
        metadata: dict[str, Any] | None = None,
        *,
        include_turns: bool = True,
    ) -> SessionCheckpoint:
        """Checkpoint a session: ``state`` is a session id or a ``SessionState``.

        A session id, a header-only state (no turns), a state read before the
        session's latest write, or one equal to the stored session: the checkpoint
        captures the session as stored at this moment, in one atomic step (O(1)
        storage); its parent is the session's previous checkpoint. A whole state of the
        caller's own (the session's current version, changed by the caller) is
        checkpointed as given (its turns copied), its parent its own ``checkpoint_id``;
        such a state whose ``turn_count`` is not its number of turns is refused
        (``SessionValidationError`` naming ``state.turn_count``), and its
        ``total_tokens`` and ``total_cost`` are recomputed from its turns (a restore
        copies them to the session). It leaves the session's own ``checkpoint_id`` as
        it is: the session was not checkpointed.
        A session that is not stored raises ``SessionNotFoundError``.
        The oldest checkpoints beyond the retention limit are deleted.
        """
        if isinstance(state, SessionState):
            session_id = _check_id("state.session_id", state.session_id)
            whole = len(state.turns) == state.turn_count
            stored = await self._own_state(state) if (whole or state.turns) else None
            if stored is not None:
                # A whole state of the caller's own (changed by the caller since it was
                # read): the checkpoint holds that state, as the contract's
                # ``create(state)`` says, not the stored session.
                if not whole:  # turns changed by hand, the count not: never guessed
                    raise SessionValidationError(
                        "state.turn_count",
                        f"is {state.turn_count} but the state holds {len(state.turns)} turns",
                    )
                given = await self._save_given(state, metadata, stored)
                await self.announce(given)
                return given
        elif isinstance(state, str):
            session_id = _check_id("state", state)
        else:
            raise SessionValidationError(
                "state", f"expected a SessionState or a session id, got {type(state).__name__}"
            )
        checkpoint = await self.snapshot(session_id, metadata, include_turns=include_turns)
        await self.announce(checkpoint)
        return checkpoint

    async def _own_state(self, state: SessionState) -> SessionState | None:
        """The stored session's header when ``state`` is the caller's own: the stored
        session's current version (same ``updated_at``) changed by the caller; else None.
        A state read before the session's latest write names the session (its current
        version is checkpointed, atomically); a session not stored is refused
        (``SessionNotFoundError``)."""
        record = await self.store.load_record(state.session_id)
        if record is None:
            # Never stored (or deleted): refused below as before. A checkpoint of no
            # session would escape erase_user, export_user and delete, and an
            # encrypting store would write it in clear (a regression audit).
            return None
        if record.state.updated_at != state.updated_at:
            return None
        if await self.store.load(state.session_id) == state:
            return None
        return record.state

    async def _save_given(
        self, state: SessionState, metadata: dict[str, Any] | None, stored: SessionState
    ) -> SessionCheckpoint:
        """Store a checkpoint of ``state`` itself; prune the oldest beyond the retention."""
        if metadata is not None:
            metadata = check_mapping(metadata, "metadata")
        self.sealed.check_metadata(metadata)
        self.sealed.check_state(state)
        checkpoint_id = new_checkpoint_id()
        # Totals as the turns give them, added one turn at a time as the stores add them:
        # turns edited by hand with the totals left as read would otherwise become the
        # session's totals on restore (found by an outside time-travel audit). The turns
        # are checked first, so a bad value is named by its turn as the store names it.
        turns = check_turns(state.turns, "checkpoint.state.turns")
        state = dataclasses.replace(
            state,
            turns=turns,
            total_tokens=sum(t.tokens_used for t in turns),
            total_cost=sum((t.cost for t in turns), 0.0),
        )
        checkpoint = SessionCheckpoint(
            checkpoint_id=checkpoint_id,
            session_id=state.session_id,
            state=dataclasses.replace(state, checkpoint_id=checkpoint_id),
            created_at=self.store.now(),
            parent_checkpoint_id=state.checkpoint_id,
            metadata=metadata or {},
        )
        await self.store.save_checkpoint(checkpoint)
        # The session may have been deleted (and its id taken again, by another user)
        # since _own_state read it: the checkpoint would then belong to no session,
        # escaping delete and erase_user, or be listed under the new one (an outside
        # audit). Read it again; when it is not that session any more, take ours back.
        # Compared with the session as read before the save (the caller may have edited
        # created_at or user_id in the state it checkpoints; a regression audit).
        record = await self.store.load_record(state.session_id)
        if (
            record is None
            or record.state.created_at != stored.created_at
            or record.state.user_id != stored.user_id
        ):
            await self.store.delete_checkpoint(checkpoint_id)
            raise SessionNotFoundError(state.session_id)
        kept = await self.store.list_checkpoint_headers(state.session_id)
        for old in kept[: max(0, len(kept) - self.max_checkpoints_per_session)]:
            await self.store.delete_checkpoint(old.checkpoint_id)
        return checkpoint

    async def snapshot(
        self,
        session_id: str,
        metadata: dict[str, Any] | None = None,
        *,
        include_turns: bool = True,
    ) -> SessionCheckpoint:
        """:meth:`create` without its event and hook (:meth:`announce` sends them)."""
        if metadata is not None:
            metadata = check_mapping(metadata, "metadata")
        self.sealed.check_metadata(metadata)
        if self.sealed.write_unchecked(session_id):
            await self.sealed.check(session_id)
        checkpoint, _pruned = await self.store.create_checkpoint(
            session_id,
            checkpoint_id=new_checkpoint_id(),
            metadata=metadata,
            max_checkpoints=self.max_checkpoints_per_session,
            include_turns=include_turns,
        )
        self.sealed.check_state(checkpoint.state)
        return checkpoint

    async def announce(self, checkpoint: SessionCheckpoint) -> None:
        """The checkpoint-created event and hook of ``checkpoint``."""
        session_id = checkpoint.session_id
        await self.notifier.notify(
            SessionCheckpointCreatedEvent(
                session_id=session_id, checkpoint_id=checkpoint.checkpoint_id
            ),
            HOOK_CHECKPOINT_CREATED,
            SessionCheckpointCreatedHook(
                session_id=session_id, checkpoint_id=checkpoint.checkpoint_id
            ),
        )

    async def restore(self, checkpoint_id: str) -> SessionState:
        """Put the checkpoint's session back to it (ACTIVE) and return the full state."""
        _check_id("checkpoint_id", checkpoint_id)
        if self.sealed.active:
            # Refused before anything changes: the checkpoint names the session it restores.
            stored = await self.store.load_checkpoint(checkpoint_id)
            if stored is not None:
                self.sealed.check_state(stored.state)
        state = await self.store.restore_checkpoint(checkpoint_id)
        self.sealed.check_state(state)
        await self.notifier.notify(
            SessionCheckpointRestoredEvent(
                session_id=state.session_id, checkpoint_id=checkpoint_id
            ),
            HOOK_CHECKPOINT_RESTORED,
            SessionCheckpointRestoredHook(session_id=state.session_id, checkpoint_id=checkpoint_id),
        )
        return state

    async def get(self, checkpoint_id: str) -> SessionCheckpoint:
        """The checkpoint with its full state; ``CheckpointNotFoundError`` when unknown."""
        checkpoint = await self.store.load_checkpoint(_check_id("checkpoint_id", checkpoint_id))
        if checkpoint is None:
            raise CheckpointNotFoundError(checkpoint_id)
        self.sealed.check_state(checkpoint.state)
        return checkpoint

    async def list(
        self, session_id: str, *, include_turns: bool = False
    ) -> builtins.list[SessionCheckpoint]:
        """The session's checkpoints, oldest first (chronological by ``created_at``).

        The same order as the store's ``list_checkpoints``, on every backend; the
        newest is the last. By default each state is header-only (``turns == []``,
        ``turn_count`` set), which reads no turn; ``include_turns=True`` loads them.
        """
        _check_id("session_id", session_id)
        if include_turns:
            checkpoints = await self.store.list_checkpoints(session_id)
        else:
            checkpoints = await self.store.list_checkpoint_headers(session_id)
        for checkpoint in checkpoints:
            self.sealed.check_state(checkpoint.state)
        return checkpoints

    async def delete(self, checkpoint_id: str) -> None:
        """Delete one checkpoint; ``CheckpointNotFoundError`` when unknown."""
        if not await self.store.delete_checkpoint(_check_id("checkpoint_id", checkpoint_id)):
            raise CheckpointNotFoundError(checkpoint_id)
