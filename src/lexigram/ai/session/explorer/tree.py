"""The branch family of a session: its root, every fork (with its fork point) and merges.

The root is found by following ``parent_session_id`` up; the forks by asking the
store for each session's branches (``list_branches``), breadth first. A merge leaves
no record of its own: the merged turns keep their ids in the parent, so a branch is
shown as merged when turns it added after its fork point are live in its parent.
Everything is bounded (depth, nodes, turns compared), so a huge family still
answers quickly; :attr:`BranchTree.truncated` says when a bound was hit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lexigram.contracts.ai.session import SessionState

from lexigram.ai.session.exceptions import CorruptRecordError, SessionNotFoundError
from lexigram.ai.session.stores.base import SessionRecord, SessionStore

__all__ = ["BranchNode", "BranchTree", "Merge", "load_tree"]

MAX_DEPTH = 32
MAX_NODES = 200
MAX_MERGE_SCAN = 2000
"""Turns of a parent (after the fork point) and of a branch compared to find a merge."""


@dataclass(frozen=True)
class Merge:
    """Turns of a branch found in its parent: how many, and the first one's ``seq`` there."""

    turns: int
    parent_seq: int


@dataclass(frozen=True)
class BranchNode:
    """One session of the family.

    ``fork_point`` is the number of turns the branch inherited from its parent (None
    for the root); ``merge`` is set when the branch was merged back.
    """

    state: SessionState
    depth: int
    fork_point: int | None = None
    merge: Merge | None = None
    children: list[str] = field(default_factory=list)

    @property
    def session_id(self) -> str:
        """The session's id."""
        return self.state.session_id

    @property
    def label(self) -> str:
        """The branch name, or ``main`` for the root."""
        return self.state.branch_name or ("main" if self.fork_point is None else "branch")


@dataclass(frozen=True)
class BranchTree:
    """The family of ``focus``: nodes in breadth-first order from ``root``.

    ``damaged`` names the sessions whose parent or branches could not be read because
    a stored record is damaged; the walk went on without them. ``merge_unknown`` names
    the branches found unmerged in the first :data:`MAX_MERGE_SCAN` turns compared: a
    merge may lie beyond them.
    """

    focus: str
    root: str
    nodes: dict[str, BranchNode]
    truncated: bool = False
    damaged: list[str] = field(default_factory=list)
    merge_unknown: list[str] = field(default_factory=list)

    @property
    def merges(self) -> list[BranchNode]:
        """The branches that were merged back, in tree order."""
        return [n for n in self.nodes.values() if n.merge is not None]


async def load_tree(store: SessionStore, session_id: str) -> BranchTree:
    """The branch family of ``session_id`` (raises ``SessionNotFoundError``)."""
    record = await store.load_record(session_id)
    if record is None:
        raise SessionNotFoundError(session_id)
    truncated = False
    damaged: list[str] = []
    merge_unknown: list[str] = []
    root = record
    for _ in range(MAX_DEPTH):
        parent_id = root.state.parent_session_id
        if not parent_id:
            break
        try:
            parent = await store.load_record(parent_id)
        except CorruptRecordError:
            damaged.append(parent_id)
            break
        if parent is None:  # the parent was deleted: this branch roots what is left
            break
        if not any(
            b.state.session_id == root.state.session_id
            for b in await store.list_branches(parent_id)
        ):  # a new session under a deleted parent's id: not this family
            break
        root = parent
    else:
        truncated = True
    nodes: dict[str, BranchNode] = {
        root.state.session_id: BranchNode(state=root.state, depth=0)
    }
    records: dict[str, SessionRecord] = {root.state.session_id: root}
    # Branches forked at the same point share the parent's scan (read once per tree).
    scans: _Scans = {}
    queue = [root.state.session_id]
    while queue:
        current = queue.pop(0)
        node = nodes[current]
        try:
            branches = await store.list_branches(current)
        except CorruptRecordError:
            damaged.append(current)
            continue
        for branch in branches:
            branch_id = branch.state.session_id
            if branch_id in nodes:
                continue
            if len(nodes) >= MAX_NODES or node.depth + 1 > MAX_DEPTH:
                truncated = True
                break
            try:
                merge, bounded = await _find_merge(store, records[current], branch, scans)
            except CorruptRecordError:
                damaged.append(branch_id)
                merge, bounded = None, False
            if bounded:
                merge_unknown.append(branch_id)
            nodes[branch_id] = BranchNode(
                state=branch.state,
                depth=node.depth + 1,
                fork_point=branch.fork_seq or 0,
                merge=merge,
            )
            records[branch_id] = branch
            node.children.append(branch_id)
            queue.append(branch_id)
    if session_id not in nodes:  # beyond the bounds: show at least the session itself
        nodes[session_id] = BranchNode(state=record.state, depth=0)
        truncated = True
    return BranchTree(
        focus=session_id, root=root.state.session_id, nodes=nodes, truncated=truncated,
        damaged=damaged, merge_unknown=merge_unknown,
    )


_Scans = dict[tuple[str, int], list[tuple[int, str]]]


async def _find_merge(
    store: SessionStore, parent: SessionRecord, branch: SessionRecord, scans: _Scans
) -> tuple[Merge | None, bool]:
    """Where the turns ``branch`` added after its fork point are live in ``parent``, and
    whether a scan stopped at :data:`MAX_MERGE_SCAN` without finding them (the page
    then says a bound was reached instead of showing no merge)."""
    fork_seq = branch.fork_seq or 0
    if branch.last_seq and branch.last_seq <= fork_seq:
        return None, False  # the branch added nothing
    added = await store.get_turn_seqs(
        branch.state.session_id, after_seq=fork_seq, limit=MAX_MERGE_SCAN
    )
    wanted = {turn.turn_id for _, turn in added}
    if not wanted:
        return None, False
    # Turns at positions past the fork point have a seq past it too (seqs only grow).
    key = (parent.state.session_id, fork_seq)
    candidates = scans.get(key)
    if candidates is None:
        rows = await store.get_turn_seqs(
            parent.state.session_id, after_seq=fork_seq, limit=MAX_MERGE_SCAN
        )
        candidates = scans[key] = [(seq, turn.turn_id) for seq, turn in rows]
    found = [seq for seq, turn_id in candidates if turn_id in wanted]
    if not found:
        return None, MAX_MERGE_SCAN in (len(added), len(candidates))
    return Merge(turns=len(found), parent_seq=found[0]), False
