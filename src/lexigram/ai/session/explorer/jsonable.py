"""The JSON shapes of the API: headers, turns, checkpoints, the branch tree."""

from __future__ import annotations

from typing import Any

from lexigram.contracts.ai.session import SessionCheckpoint, SessionState, SessionTurn

from lexigram.ai.session.explorer.service import TurnPage
from lexigram.ai.session.explorer.tree import BranchTree
from lexigram.ai.session.stores.base import SessionPage, SessionRecord
from lexigram.ai.session.stores.codec import turn_to_dict

__all__ = [
    "checkpoint_json",
    "header_json",
    "page_json",
    "record_json",
    "tree_json",
    "turn_json",
    "turns_json",
]


def header_json(state: SessionState) -> dict[str, Any]:
    """A session header (no turns)."""
    return {
        "session_id": state.session_id,
        "user_id": state.user_id,
        "status": state.status.value,
        "created_at": state.created_at.isoformat(),
        "updated_at": state.updated_at.isoformat(),
        "turn_count": state.turn_count,
        "total_tokens": state.total_tokens,
        "total_cost": state.total_cost,
        "checkpoint_id": state.checkpoint_id,
        "parent_session_id": state.parent_session_id,
        "branch_name": state.branch_name,
        "system_prompt": state.system_prompt,
        "metadata": state.metadata,
        "variables": state.variables,
        "active_tools": list(state.active_tools),
        "active_skills": list(state.active_skills),
    }


def record_json(record: SessionRecord) -> dict[str, Any]:
    """A header with the store's bookkeeping (deadline, fork point)."""
    data = header_json(record.state)
    data["expires_at"] = None if record.expires_at is None else record.expires_at.isoformat()
    data["fork_point"] = record.fork_seq
    return data


def page_json(page: SessionPage, locked: dict[str, str] | None = None) -> dict[str, Any]:
    """A page of session headers with its cursor and the ids left out: ``damaged`` (all
    of them) and ``locked`` (those encrypted under a key this process lacks -> key id)."""
    return {
        "sessions": [header_json(s) for s in page.items],
        "next_cursor": page.next_cursor,
        "damaged": list(page.damaged),
        "locked": dict(locked or {}),
    }


def turn_json(turn: SessionTurn) -> dict[str, Any]:
    """Every field of a turn (the stores' own JSON form, :func:`codec.turn_to_dict`)."""
    return turn_to_dict(turn)


def turns_json(page: TurnPage) -> dict[str, Any]:
    """A transcript page: each turn with its position and seq, and how to continue."""
    return {
        "turns": [
            {"position": e.position, "seq": e.seq, **turn_json(e.turn)} for e in page.entries
        ],
        "next_after": page.next_after,
        "next_position": page.next_position,
    }


def checkpoint_json(cp: SessionCheckpoint) -> dict[str, Any]:
    """A checkpoint header."""
    return {
        "checkpoint_id": cp.checkpoint_id,
        "session_id": cp.session_id,
        "created_at": cp.created_at.isoformat(),
        "parent_checkpoint_id": cp.parent_checkpoint_id,
        "turn_count": cp.state.turn_count,
        "total_tokens": cp.state.total_tokens,
        "total_cost": cp.state.total_cost,
        "metadata": cp.metadata,
    }


def tree_json(tree: BranchTree) -> dict[str, Any]:
    """The branch family: nodes with their parent, fork point, merge and children."""
    return {
        "focus": tree.focus,
        "root": tree.root,
        "truncated": tree.truncated,
        "damaged": list(tree.damaged),
        "merge_unknown": list(tree.merge_unknown),
        "nodes": [
            {
                "session_id": n.session_id,
                "label": n.label,
                "parent_session_id": n.state.parent_session_id,
                "branch_name": n.state.branch_name,
                "status": n.state.status.value,
                "turn_count": n.state.turn_count,
                "depth": n.depth,
                "fork_point": n.fork_point,
                "merged": None
                if n.merge is None
                else {"turns": n.merge.turns, "parent_seq": n.merge.parent_seq},
                "children": list(n.children),
            }
            for n in tree.nodes.values()
        ],
    }
