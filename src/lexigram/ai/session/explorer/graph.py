"""The branch tree and the checkpoint timeline as inline SVG with clickable nodes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lexigram.contracts.ai.session import SessionCheckpoint

from lexigram.ai.session.explorer.html import Markup, el, join
from lexigram.ai.session.explorer.tree import BranchNode, BranchTree

__all__ = ["branch_graph", "checkpoint_timeline"]

_COL, _ROW, _NODE_W, _NODE_H, _PAD = 210, 62, 180, 44, 16


def _short(value: str, size: int) -> str:
    return value if len(value) <= size else value[: size - 1] + "…"


def _preorder(tree: BranchTree) -> list[BranchNode]:
    ordered: list[BranchNode] = []
    stack = [tree.root]
    while stack:
        node = tree.nodes[stack.pop()]
        ordered.append(node)
        stack.extend(reversed(node.children))
    seen = {n.session_id for n in ordered}
    ordered.extend(n for n in tree.nodes.values() if n.session_id not in seen)
    return ordered


def branch_graph(tree: BranchTree, link: Callable[[str], str]) -> Markup:
    """The family as a tree: fork edges (solid, labelled with the fork point), merges dashed.

    ``link(session_id)`` is the URL each node opens.
    """
    ordered = _preorder(tree)
    pos = {n.session_id: (_PAD + n.depth * _COL, _PAD + i * _ROW) for i, n in enumerate(ordered)}
    width = _PAD * 2 + max(n.depth for n in ordered) * _COL + _NODE_W + 90
    height = _PAD * 2 + (len(ordered) - 1) * _ROW + _NODE_H
    edges: list[Markup] = []
    for node in ordered:
        px, py = pos[node.session_id]
        for child_id in node.children:
            cx, cy = pos[child_id]
            child = tree.nodes[child_id]
            sx = px + 18
            edges.append(el("path", {
                "class": "edge fork",
                "d": f"M{sx},{py + _NODE_H} V{cy + _NODE_H / 2} H{cx}",
                "data-from": node.session_id, "data-to": child_id,
            }))
            edges.append(el("text", {"class": "edge-label", "x": sx + 6, "y": cy + _NODE_H / 2 - 5},
                            f"fork @ {child.fork_point}"))
            if child.merge is not None:
                right = cx + _NODE_W
                edges.append(el("path", {
                    "class": "edge merge",
                    "d": (f"M{right},{cy + _NODE_H / 2} C{right + 60},{cy + _NODE_H / 2} "
                          f"{right + 60},{py + _NODE_H / 2} {px + _NODE_W},{py + _NODE_H / 2}"),
                    "marker-end": "url(#arrow)",
                    "data-from": child_id, "data-to": node.session_id,
                }))
                edges.append(el("text", {"class": "edge-label merge-label",
                                         "x": right + 8, "y": cy + 4},
                                f"merged {child.merge.turns}"))
    nodes: list[Markup] = []
    for node in ordered:
        x, y = pos[node.session_id]
        state = node.state
        classes = f"node status-{state.status.value}"
        if node.session_id == tree.focus:
            classes += " focus"
        nodes.append(el(
            "a", {"href": link(node.session_id), "class": "node-link",
                  "data-session": node.session_id},
            el("g", {"class": classes},
               el("title", None, f"{node.label} — {node.session_id} "
                                 f"({state.status.value}, {state.turn_count} turns)"),
               el("rect", {"x": x, "y": y, "width": _NODE_W, "height": _NODE_H, "rx": 6}),
               el("text", {"class": "node-name", "x": x + 10, "y": y + 18},
                  _short(node.label, 22)),
               el("text", {"class": "node-meta", "x": x + 10, "y": y + 35},
                  f"{_short(node.session_id, 12)} · {state.turn_count} turns")),
        ))
    defs = el("defs", None, el(
        "marker", {"id": "arrow", "viewBox": "0 0 10 10", "refX": 9, "refY": 5,
                   "markerWidth": 7, "markerHeight": 7, "orient": "auto-start-reverse"},
        el("path", {"d": "M0,0 L10,5 L0,10 z", "class": "arrow-head"}),
    ))
    return el(
        "svg",
        {"class": "branch-graph", "viewBox": f"0 0 {width} {height}", "width": width,
         "height": height, "role": "img", "data-nodes": len(ordered),
         "data-merges": len(tree.merges), "xmlns": "http://www.w3.org/2000/svg"},
        el("title", None, f"Branch tree: {len(ordered)} session(s), {len(tree.merges)} merge(s)"),
        defs, join(edges), join(nodes),
    )


def checkpoint_timeline(
    checkpoints: Sequence[SessionCheckpoint], current: str | None
) -> Markup:
    """Checkpoints oldest first, placed by turn count; a line joins each to its parent."""
    if not checkpoints:
        return el("p", {"class": "muted"}, "No checkpoints.")
    width = max(320, 40 + 70 * (len(checkpoints) - 1) + 40)
    height = 120
    top = max(c.state.turn_count for c in checkpoints) or 1
    place: dict[str, tuple[float, float]] = {}
    for i, cp in enumerate(checkpoints):
        place[cp.checkpoint_id] = (40 + 70 * i, 90 - cp.state.turn_count / top * 60)
    lines: list[Markup] = []
    dots: list[Markup] = []
    for cp in checkpoints:
        x, y = place[cp.checkpoint_id]
        parent = cp.parent_checkpoint_id
        if parent in place:
            assert parent is not None
            px, py = place[parent]
            lines.append(el("line", {"class": "cp-edge", "x1": px, "y1": f"{py:.1f}",
                                     "x2": x, "y2": f"{y:.1f}"}))
        classes = "cp" + (" current" if cp.checkpoint_id == current else "")
        dots.append(el(
            "a", {"href": f"#cp-{cp.checkpoint_id}", "class": "cp-link"},
            el("g", {"class": classes, "data-checkpoint": cp.checkpoint_id},
               el("title", None, f"{cp.checkpoint_id}: {cp.state.turn_count} turns, "
                                 f"{cp.created_at.isoformat(timespec='seconds')}"),
               el("circle", {"cx": x, "cy": f"{y:.1f}", "r": 7}),
               el("text", {"class": "axis", "x": x, "y": 112, "text-anchor": "middle"},
                  f"{cp.state.turn_count}")),
        ))
    return el(
        "svg",
        {"class": "timeline", "viewBox": f"0 0 {width} {height}", "width": width,
         "height": height, "role": "img", "data-checkpoints": len(checkpoints),
         "xmlns": "http://www.w3.org/2000/svg"},
        el("title", None, f"{len(checkpoints)} checkpoint(s), turns at each"),
        el("line", {"class": "grid", "x1": 20, "x2": width - 20, "y1": 96, "y2": 96}),
        join(lines), join(dots),
    )
