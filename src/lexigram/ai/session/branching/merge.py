"""Merge strategies: what a branch brings back into its parent.

A strategy returns a :class:`MergePlan`; the :class:`BranchManager` applies it to the
parent in one atomic step (turns appended, header fields replaced, totals counted
by the store), so a failed merge changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from lexigram.contracts.ai.session import SessionState, SessionTurn

from lexigram.ai.session.exceptions import SessionValidationError

__all__ = ["AppendMerge", "MergePlan", "MergeStrategy", "SelectiveMerge"]


@dataclass(frozen=True)
class MergePlan:
    """What to apply to the parent: turns to append and header fields to replace."""

    turns: list[SessionTurn] = field(default_factory=list)
    variables: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


@runtime_checkable
class MergeStrategy(Protocol):
    """Decides what a merge brings into the parent.

    ``new_turns`` are exactly the turns the branch added after its fork point.
    ``merge`` may also return the parent's merged :class:`SessionState` instead of a
    plan (whatever its signature, e.g. ``merge(self, parent, branch, *args,
    **kwargs)``): the turns of that state the parent lacks are appended, and changed
    variables/metadata replace the parent's.
    """

    async def merge(
        self, parent: SessionState, branch: SessionState, new_turns: list[SessionTurn]
    ) -> MergePlan | SessionState:
        """Plan the merge of ``branch`` into ``parent``."""
        ...


class AppendMerge:
    """Append every turn the branch added after its fork point; merge variables (branch wins)."""

    async def merge(
        self, parent: SessionState, branch: SessionState, new_turns: list[SessionTurn]
    ) -> MergePlan:
        """Plan: the branch's new turns, and ``{**parent.variables, **branch.variables}``."""
        return MergePlan(turns=list(new_turns), variables={**parent.variables, **branch.variables})


class SelectiveMerge:
    """Cherry-pick the branch turns named in ``turn_ids`` (in branch order).

    A named turn the parent already has (one from before the fork, or merged
    earlier) is skipped: the merge takes the named turns the parent lacks.
    """

    def __init__(self, turn_ids: Iterable[str], *, merge_variables: bool = False) -> None:
        if isinstance(turn_ids, (str, bytes)) or not isinstance(turn_ids, Iterable):
            raise SessionValidationError(
                "turn_ids", f"expected a list of turn ids, got {type(turn_ids).__name__}"
            )
        self.turn_ids = list(turn_ids)
        if not self.turn_ids:
            raise SessionValidationError("turn_ids", "no turn id given")
        self.merge_variables = merge_variables

    async def merge(
        self, parent: SessionState, branch: SessionState, new_turns: list[SessionTurn]
    ) -> MergePlan:
        """Plan: the named turns of the branch the parent lacks; unknown ids are an error."""
        by_id = {t.turn_id: t for t in branch.turns}
        missing = [tid for tid in self.turn_ids if tid not in by_id]
        if missing:
            raise SessionValidationError(
                "turn_ids", f"not in branch {branch.session_id!r}: {missing}"
            )
        wanted = set(self.turn_ids) - {t.turn_id for t in parent.turns}
        picked = [t for t in branch.turns if t.turn_id in wanted]
        variables = {**parent.variables, **branch.variables} if self.merge_variables else None
        return MergePlan(turns=picked, variables=variables)
