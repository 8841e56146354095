"""``OpenAIAgentsSession``: one lexigram session behind the OpenAI Agents SDK ``Session`` protocol.

Every protocol call is one manager call, hence one atomic store operation:

* ``get_items(limit=N)`` -> ``manager.get_turns(id, last=N)`` (reads only the newest N);
* ``add_items(items)`` -> ``manager.add_turns(id, turns)`` (all or nothing);
* ``pop_item()`` -> ``manager.pop_turn(id)``;
* ``clear_session()`` -> ``manager.clear_turns(id)``.

A write whose caller is cancelled still runs to its end before the cancellation
propagates, so its outcome is settled (as with the SDK's own sessions).

The session's lifecycle rules hold: writes to a closed, expired or suspended session
raise ``SessionClosedError`` / ``SessionExpiredError`` / ``SessionTransitionError``,
and reaching ``max_turns_per_session`` closes it. Reading works in every status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, cast

from agents.memory.session_settings import SessionSettings, coerce_session_settings

from lexigram.ai.session.branching.branch_manager import BranchManager
from lexigram.ai.session.exceptions import SessionNotFoundError, SessionValidationError
from lexigram.ai.session.integrations.openai_agents.errors import SessionTypeError
from lexigram.ai.session.integrations.openai_agents.mapping import (
    item_to_turn,
    turn_to_item,
    turns_to_items,
)
from lexigram.ai.session.manager.core import SessionManagerImpl

if TYPE_CHECKING:
    from agents.items import TResponseInputItem
    from agents.memory import Session

__all__ = ["OpenAIAgentsSession"]

_T = TypeVar("_T")


def _coerce_settings(value: Any) -> SessionSettings:
    """``SessionSettings`` from an instance, a dict or None, as the SDK's sessions do.

    An unknown key or a value of the wrong type raises :class:`SessionTypeError`
    (``TypeError: Unknown session settings: limitt``, as in the SDK); a bad value of a
    known key raises :class:`SessionValidationError`. Both name ``session_settings``.
    """
    if value is None:
        return SessionSettings()
    try:
        return coerce_session_settings(value)
    except TypeError as exc:
        raise SessionTypeError("session_settings", str(exc)) from exc
    except ValueError as exc:
        raise SessionValidationError("session_settings", str(exc)) from exc


async def _settle(write: Awaitable[_T]) -> _T:
    """Run a write to completion even when the caller is cancelled meanwhile.

    The store makes each write atomic; this makes its outcome settled before a
    cancellation propagates (no transaction abandoned half-way on a pooled
    connection), as the SDK's own sessions do. The cancellation is re-raised after.
    """
    task = asyncio.ensure_future(write)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:
                continue
        if not task.cancelled():
            task.exception()  # retrieved: the caller's cancellation wins
        raise


def _check_limit(limit: Any) -> int | None:
    if limit is None or type(limit) is int:
        return limit
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise SessionTypeError("limit", f"must be an integer or None, got {limit!r}")
    return int(limit)


class OpenAIAgentsSession:
    """A lexigram session that the OpenAI Agents SDK ``Runner`` can keep its history in.

    Satisfies ``agents.memory.Session`` (``isinstance`` holds). Build it around an
    existing session id, or let :meth:`create` open a new session::

        session = await OpenAIAgentsSession.create(manager, user_id="alice")
        result = await Runner.run(agent, "Hello", session=session)

    ``session_settings`` (the SDK's ``SessionSettings`` or a dict) gives the default
    ``limit`` of :meth:`get_items`, exactly as in the SDK's own sessions.
    """

    session_id: str
    session_settings: SessionSettings | None

    def __init__(
        self,
        manager: SessionManagerImpl,
        session_id: str,
        *,
        session_settings: SessionSettings | Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(manager, SessionManagerImpl):
            raise SessionValidationError(
                "manager", f"expected a SessionManagerImpl, got {type(manager).__name__}"
            )
        if not isinstance(session_id, str) or not session_id:
            raise SessionValidationError(
                "session_id", f"must be a non-empty string, got {session_id!r}"
            )
        self.manager = manager
        self.session_id = session_id
        self.session_settings = _coerce_settings(session_settings)

    # ------------------------------------------------------------ construction
    @classmethod
    async def create(
        cls,
        manager: SessionManagerImpl,
        *,
        user_id: str,
        metadata: dict[str, Any] | None = None,
        system_prompt: str | None = None,
        session_settings: SessionSettings | Mapping[str, Any] | None = None,
    ) -> OpenAIAgentsSession:
        """Create a new ACTIVE session for ``user_id`` and wrap it.

        The per-user cap applies (``SessionCapacityError``).
        """
        if not isinstance(manager, SessionManagerImpl):
            raise SessionValidationError(
                "manager", f"expected a SessionManagerImpl, got {type(manager).__name__}"
            )
        state = await manager.create(user_id, metadata, system_prompt=system_prompt)
        return cls(manager, state.session_id, session_settings=session_settings)

    @classmethod
    async def attach(
        cls,
        manager: SessionManagerImpl,
        session_id: str,
        *,
        session_settings: SessionSettings | Mapping[str, Any] | None = None,
    ) -> OpenAIAgentsSession:
        """Wrap an existing session; ``SessionNotFoundError`` when there is none."""
        adapter = cls(manager, session_id, session_settings=session_settings)
        if await manager.get_header(session_id) is None:
            raise SessionNotFoundError(session_id)
        return adapter

    # ----------------------------------------------------------------- protocol
    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The history in order; with ``limit=N`` only the newest N, reading nothing else.

        ``limit=None`` falls back to ``session_settings.limit``; as in the SDK's
        ``SQLiteSession``, ``0`` gives ``[]`` and a negative limit gives everything.
        """
        resolved = _check_limit(limit)
        if resolved is None and self.session_settings is not None:
            resolved = _check_limit(self.session_settings.limit)
        last = None if resolved is None or resolved < 0 else resolved
        turns = await self.manager.get_turns(self.session_id, last=last)
        return cast("list[TResponseInputItem]", turns_to_items(turns))

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append ``items`` in one atomic step: all of them are stored, or none.

        Each item must be a JSON object that survives a JSON round trip unchanged;
        otherwise ``SessionValidationError`` names it (``items[i]``) and nothing is
        stored. An empty list does nothing.
        """
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
            raise SessionTypeError(
                "items", f"expected a list of items, got {type(items).__name__}"
            )
        if not items:
            return
        now = datetime.now(UTC)
        turns = [
            item_to_turn(item, now=now, field=f"items[{index}]") for index, item in enumerate(items)
        ]
        await _settle(self.manager.add_turns(self.session_id, turns))

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove the newest item and return it (None when the history is empty), atomically."""
        turn = await _settle(self.manager.pop_turn(self.session_id))
        return None if turn is None else cast("TResponseInputItem", turn_to_item(turn))

    async def clear_session(self) -> None:
        """Remove every item of the history (the session itself stays, with its settings)."""
        await _settle(self.manager.clear_turns(self.session_id))

    # ------------------------------------------------------------- branching
    async def fork(
        self,
        branches: BranchManager,
        branch_name: str,
        *,
        from_checkpoint: str | None = None,
    ) -> OpenAIAgentsSession:
        """Fork this conversation: a new session (same settings) holding its items so far.

        The fork point is now, or ``from_checkpoint``. The branch is an SDK session of
        its own; merge it back with ``branches.merge(self.session_id, branch.session_id)``.
        """
        state = await branches.fork(self.session_id, branch_name, from_checkpoint=from_checkpoint)
        return type(self)(self.manager, state.session_id, session_settings=self.session_settings)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(session_id={self.session_id!r})"


if TYPE_CHECKING:

    def _satisfies_protocol(adapter: OpenAIAgentsSession) -> Session:
        """mypy checks here that the adapter matches ``agents.memory.Session``."""
        return adapter
