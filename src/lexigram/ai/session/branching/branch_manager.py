"""``BranchManager``: fork a session into a branch and merge it back."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.branching.merge import AppendMerge, MergePlan, MergeStrategy
from lexigram.ai.session.branching.merge_locks import HeldMerge, merge_lock
from lexigram.ai.session.events import (
    SessionBranchMergedEvent,
    SessionClosedEvent,
    SessionForkedEvent,
)
from lexigram.ai.session.exceptions import (
    DuplicateTurnError,
    SessionNotFoundError,
    SessionValidationError,
)
from lexigram.ai.session.hooks import (
    HOOK_BRANCH_MERGED,
    HOOK_SESSION_CLOSED,
    HOOK_SESSION_FORKED,
    SessionBranchMergedHook,
    SessionClosedHook,
    SessionForkedHook,
)
from lexigram.ai.session.manager.core import new_session_id
from lexigram.ai.session.manager.finishing import Background, write_then
from lexigram.ai.session.manager.notifier import SessionNotifier
from lexigram.ai.session.manager.protocol import SessionManagerAPI
from lexigram.ai.session.manager.sealed_guard import SealedSessionGuard
from lexigram.ai.session.observability import telemetry
from lexigram.ai.session.stores.base import SessionPatch, SessionRecord, SessionStore
from lexigram.ai.session.validation import check_id, check_mapping, check_optional_id, check_turns

__all__ = ["BranchManager"]


def _limit(name: str, value: object, smallest: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < smallest:
        raise SessionValidationError(name, f"must be an integer >= {smallest}, got {value!r}")
    return value


class BranchManager:
    """Forks and merges sessions kept in ``store``.

    ``max_branches_per_session`` (10 by default) caps the branches of one source
    session (branches that still exist); ``max_sessions_per_user`` and
    ``max_turns_per_session``, when given, apply to branches and merges as to any
    session. Given a session manager instead of a store (``BranchManager(manager)``),
    it works on the manager's store with the manager's limits and subscribers, unless
    given here.
    """

    def __init__(
        self,
        store: SessionStore | SessionManagerAPI,
        max_branches_per_session: int | None = None,
        *,
        max_sessions_per_user: int | None = None,
        max_turns_per_session: int | None = None,
        notifier: SessionNotifier | None = None,
    ) -> None:
        # What a cancelled caller leaves running: the manager's, so that its
        # wait_for_background() (and its shutdown) waits for it too.
        finishing = getattr(store, "_finishing", None)
        self._finishing: Background = finishing if isinstance(finishing, set) else set()
        if not isinstance(store, SessionStore) and isinstance(store, SessionManagerAPI):
            # A manager: its store, its limits and its subscribers, unless given here.
            config = store.config
            if max_branches_per_session is None:
                max_branches_per_session = config.max_branches_per_session
            if max_sessions_per_user is None:
                max_sessions_per_user = config.max_sessions_per_user
            if max_turns_per_session is None:
                max_turns_per_session = config.max_turns_per_session
            found = getattr(store, "notifier", None)
            if notifier is None and isinstance(found, SessionNotifier):
                notifier = found
            store = store.store
        if max_branches_per_session is None:
            max_branches_per_session = 10
        if not isinstance(store, SessionStore):
            raise SessionValidationError(
                "store", f"expected a SessionStore, got {type(store).__name__}"
            )
        self.store = store
        self.max_branches_per_session = _limit(
            "max_branches_per_session", max_branches_per_session, 0
        )
        self.max_sessions_per_user = (
            None
            if max_sessions_per_user is None
            else _limit("max_sessions_per_user", max_sessions_per_user, 1)
        )
        self.max_turns_per_session = (
            None
            if max_turns_per_session is None
            else _limit("max_turns_per_session", max_turns_per_session, 1)
        )
        self.notifier = notifier or SessionNotifier()
        # Without keys an encrypted session is refused by key id: a fork or merge would
        # copy its sealed values where they no longer open.
        self._sealed = SealedSessionGuard(store)

    async def fork(
        self, session_id: str, branch_name: str, *, from_checkpoint: str | None = None
    ) -> SessionState:
        """Create a branch of ``session_id`` holding its turns up to the fork point.

        The fork point is the session's current end, or ``from_checkpoint`` (a
        checkpoint of that session). Returns the branch's full state.
        """
        # The checked ids are plain str (a str Enum's value), as every store keeps them.
        session_id = check_id(session_id, "session_id")
        branch_name = check_id(branch_name, "branch_name")
        from_checkpoint = check_optional_id(from_checkpoint, "from_checkpoint")
        source = await self.store.load_record(session_id)
        if source is None:
            raise SessionNotFoundError(session_id)
        self._sealed.check_state(source.state)
        now = self.store.now()  # the store's clock judges the deadline
        header = SessionState(
            session_id=new_session_id(),
            user_id=source.state.user_id,
            status=SessionStatus.ACTIVE,
            created_at=now,
            updated_at=now,
            parent_session_id=session_id,
            branch_name=branch_name,
        )
        # The owner is checked again inside the store's step where it can be: the
        # session read above may be deleted and its id taken by another user meanwhile.
        guard = {"owner": source.state.user_id} if self.store.supports_owner_guard else {}

        async def store_fork() -> SessionRecord:
            record = await self.store.fork_session(
                session_id,
                header,
                from_checkpoint=from_checkpoint,
                max_branches=self.max_branches_per_session,
                max_live_per_user=self.max_sessions_per_user,
                **guard,
            )
            # A branch is a session created (its close counts as one ended): the
            # active gauge is created minus ended.
            telemetry().session_created(backend=self.store.backend_name)
            return record

        forking = store_fork()

        def announce(record: SessionRecord) -> Callable[[], Coroutine[Any, Any, None]]:
            async def forked() -> None:
                branch_id = record.state.session_id
                await self.notifier.notify(
                    SessionForkedEvent(
                        session_id=session_id, branch_id=branch_id, branch_name=branch_name
                    ),
                    HOOK_SESSION_FORKED,
                    SessionForkedHook(
                        session_id=session_id, branch_id=branch_id, branch_name=branch_name
                    ),
                )

            return forked

        if self.notifier.listened(HOOK_SESSION_FORKED):
            # A caller cancelled while the store forks still has the fork announced.
            record = await write_then(forking, self._finishing, announce)
        else:
            record = await forking
            await announce(record)()
        state = await self.store.load(record.state.session_id)
        if state is None:  # deleted between the fork and the read
            raise SessionNotFoundError(record.state.session_id)
        return state

    async def merge(
        self, parent_id: str, branch_id: str, *, strategy: MergeStrategy | None = None
    ) -> SessionState:
        """Merge ``branch_id`` into ``parent_id`` with ``strategy`` (``AppendMerge`` by default).

        ``branch_id`` must be a branch forked from ``parent_id``
        (``SessionValidationError`` otherwise): the strategy is handed exactly the
        turns the branch added after its recorded fork point. The plan is applied
        in one atomic step: turns keep their ids (a turn the parent already has is
        refused with ``DuplicateTurnError`` and nothing changes), totals are counted
        from the merged turns. Returns the parent's full state.
        """
        parent_id = check_id(parent_id, "parent_id")
        branch_id = check_id(branch_id, "branch_id")
        if parent_id == branch_id:
            raise SessionValidationError("branch_id", "a session cannot be merged into itself")
        if await self.store.load_record(parent_id) is None:
            raise SessionNotFoundError(parent_id)
        branch_record = await self.store.load_record(branch_id)
        if branch_record is None:
            raise SessionNotFoundError(branch_id)
        if branch_record.state.parent_session_id != parent_id:
            raise SessionValidationError(
                "branch_id",
                f"session {branch_id!r} is not a branch of {parent_id!r} "
                f"(its parent is {branch_record.state.parent_session_id!r})",
            )
        if not await _is_branch_of(self.store, branch_id, parent_id):
            raise SessionValidationError(
                "branch_id",
                f"session {branch_id!r} was forked from an earlier session {parent_id!r}, "
                "deleted since; it is not a branch of the present one",
            )
        held = merge_lock(self.store, parent_id)
        await held.acquire()
        try:
            return await self._merge_held(parent_id, branch_id, branch_record, strategy, held)
        finally:
            if not held.writing:
                held.release()

    async def _merge_held(
        self,
        parent_id: str,
        branch_id: str,
        branch_record: SessionRecord,
        strategy: MergeStrategy | None,
        held: HeldMerge,
    ) -> SessionState:
        """:meth:`merge` from the parent's read on, holding its merge lock until written."""
        parent = await self.store.load(parent_id)
        if parent is None:
            raise SessionNotFoundError(parent_id)
        branch = await self.store.load(branch_id)
        if branch is None:
            raise SessionNotFoundError(branch_id)
        self._sealed.check_state(parent)
        self._sealed.check_state(branch)
        new_turns = await self.store.get_turns(branch_id, after_seq=branch_record.fork_seq or 0)
        plan = _checked(await _plan(strategy or AppendMerge(), parent, branch, new_turns))
        # Judged here, the same on every backend (a store may take an append of its
        # newest turns for a retry of that append and accept it).
        known = {t.turn_id for t in parent.turns}
        for turn in plan.turns:
            if turn.turn_id in known:
                raise DuplicateTurnError(parent_id, turn.turn_id)
        patch = SessionPatch(variables=plan.variables, metadata=plan.metadata)
        # The parent read above may be deleted and its id taken by another user
        # meanwhile (a strategy may take seconds): the write checks the owner in its step.
        owned = {"owner": parent.user_id} if self.store.supports_owner_guard else {}
        merged_turns = len(plan.turns)

        async def write() -> SessionState | None:
            """The merge's write; the parent's header when it reached the turn cap."""
            if plan.turns:
                result = await self.store.append_turns(
                    parent_id,
                    plan.turns,
                    max_turns=self.max_turns_per_session,
                    patch=patch,
                    **owned,
                )
                telemetry().turns_appended(len(plan.turns), backend=self.store.backend_name)
                return result.record.state if result.closed_by_cap else None
            if not patch.is_empty():
                await self.store.update_session(parent_id, patch, **owned)
            return None

        async def write_and_release() -> SessionState | None:
            try:
                return await write()
            finally:
                held.release()  # written: the next merge into the parent reads it

        def announce(closed: SessionState | None) -> Callable[[], Coroutine[Any, Any, None]]:
            async def merged() -> None:
                await self.notifier.notify(
                    SessionBranchMergedEvent(
                        session_id=parent_id, branch_id=branch_id, merged_turns=merged_turns
                    ),
                    HOOK_BRANCH_MERGED,
                    SessionBranchMergedHook(
                        session_id=parent_id, branch_id=branch_id, merged_turns=merged_turns
                    ),
                )
                if closed is not None:  # the merge filled the parent up to the turn cap
                    await self._closed_by_cap(closed)

            return merged

        if self.notifier.listened(HOOK_BRANCH_MERGED) or self.notifier.listened(
            HOOK_SESSION_CLOSED
        ):
            # A caller cancelled while the store merges still has the merge announced.
            held.writing = True
            closed = await write_then(write_and_release(), self._finishing, announce)
        else:
            held.writing = True
            closed = await write_and_release()
            await announce(closed)()
        merged = await self.store.load(parent_id)
        if merged is None:
            raise SessionNotFoundError(parent_id)
        return merged

    async def _closed_by_cap(self, header: SessionState) -> None:
        """The event and hook ``add_turns`` sends when an append reaches the turn cap."""
        telemetry().session_ended("max_turns", backend=self.store.backend_name)
        await self.notifier.notify(
            SessionClosedEvent(
                session_id=header.session_id,
                user_id=header.user_id,
                duration_seconds=(header.updated_at - header.created_at).total_seconds(),
                reason="max_turns",
            ),
            HOOK_SESSION_CLOSED,
            SessionClosedHook(
                session_id=header.session_id, user_id=header.user_id, reason="max_turns"
            ),
        )

    async def list_branches(self, session_id: str) -> list[SessionState]:
        """Headers of the branches forked from ``session_id``, oldest first.

        In a process without ``encryption_keys``, an encrypted branch raises
        ``EncryptionKeyError`` naming its key id (never its sealed fields).
        """
        records: list[SessionRecord] = await self.store.list_branches(session_id)
        for record in records:  # without keys an encrypted branch is refused by key id
            self._sealed.check_state(record.state)
        return [r.state for r in records]


async def _is_branch_of(store: SessionStore, branch_id: str, parent_id: str) -> bool:
    """Whether the store lists ``branch_id`` among the branches of ``parent_id``.

    A branch keeps its ``parent_session_id`` when its parent is deleted, so a new
    session created later under that id (another user's, perhaps) would otherwise
    take in the old session's branches.
    """
    return any(r.state.session_id == branch_id for r in await store.list_branches(parent_id))


def _checked(plan: MergePlan) -> MergePlan:
    """Validate what a (possibly user-written) strategy planned, naming the bad field."""
    if not isinstance(plan.turns, list):
        raise SessionValidationError(
            "plan.turns", f"expected a list, got {type(plan.turns).__name__}"
        )
    turns = check_turns(plan.turns, "plan.turns")
    for name in ("variables", "metadata"):
        value = getattr(plan, name)
        if value is not None:
            check_mapping(value, f"plan.{name}")
    return replace(plan, turns=turns)


async def _plan(
    strategy: Any, parent: SessionState, branch: SessionState, new_turns: list[SessionTurn]
) -> MergePlan:
    """Ask ``strategy`` for its plan.

    ``merge`` is called as ``merge(parent, branch)`` when it takes exactly two
    positional arguments, else as ``merge(parent, branch, new_turns)``; it may be
    a coroutine function or a plain one. It may
    return a :class:`MergePlan` or, whatever its signature, the merged parent as a
    :class:`SessionState`: the turns of that state the parent does not have become
    the plan's turns, and changed variables/metadata are carried over.
    """
    merge = getattr(strategy, "merge", None)
    if isinstance(strategy, type) and _unbound(merge):
        # AppendMerge, not AppendMerge(): its merge() wants a self (a class whose merge
        # is a classmethod or staticmethod is a strategy as it is)
        raise SessionValidationError(
            "strategy",
            f"expected a strategy object, got the class {strategy.__name__}; "
            f"pass an instance ({strategy.__name__}(...))",
        )
    if merge is None or not callable(merge):
        raise SessionValidationError("strategy", "expected an object with an async merge() method")
    if _positional_arity(merge) == 2:
        result = merge(parent, branch)
    else:
        result = merge(parent, branch, new_turns)
    if inspect.isawaitable(result):  # a plain merge() returning its plan is taken too
        result = await result
    if isinstance(result, MergePlan):
        return result
    if isinstance(result, SessionState):
        known = {t.turn_id for t in parent.turns}
        return MergePlan(
            turns=[t for t in result.turns if t.turn_id not in known],
            variables=None if result.variables == parent.variables else dict(result.variables),
            metadata=None if result.metadata == parent.metadata else dict(result.metadata),
        )
    raise SessionValidationError(
        "strategy",
        f"merge() must return a MergePlan or a SessionState, got {type(result).__name__}",
    )


def _positional_arity(func: Any) -> int:
    """How many positional arguments a bound callable takes (3 when it cannot tell)."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return 3
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 3
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def _unbound(merge: Any) -> bool:
    """Whether ``merge``, read from a class, is an instance method (its first parameter
    would take the class's first argument: ``self``)."""
    if not inspect.isfunction(merge):
        return False  # a classmethod reads as a bound method
    params = list(inspect.signature(merge).parameters)
    return bool(params) and params[0] == "self"

