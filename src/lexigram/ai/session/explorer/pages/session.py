"""The session page: header, branch tree, checkpoint timeline, rounds and a transcript page."""

from __future__ import annotations

from lexigram.contracts.ai.session import SessionCheckpoint

from lexigram.ai.session.explorer.graph import branch_graph, checkpoint_timeline
from lexigram.ai.session.explorer.html import Markup, el
from lexigram.ai.session.explorer.pages.context import PageContext
from lexigram.ai.session.explorer.pages.format import (
    cost,
    pretty_json,
    shown,
    status_badge,
    when,
)
from lexigram.ai.session.explorer.pages.layout import layout
from lexigram.ai.session.explorer.pages.transcript import rounds_grid, transcript
from lexigram.ai.session.explorer.service import TurnPage
from lexigram.ai.session.explorer.tree import MAX_MERGE_SCAN, BranchTree
from lexigram.ai.session.stores.base import LIVE_STATUSES, SessionRecord

__all__ = ["session_page"]


def _summary(ctx: PageContext, record: SessionRecord) -> Markup:
    s = record.state
    facts: list[tuple[str, object]] = [
        ("User", el("a", {"href": ctx.href("/", user=s.user_id)}, s.user_id)),
        ("Status", status_badge(s.status.value)),
        ("Turns", s.turn_count),
        ("Tokens", s.total_tokens),
        ("Cost", cost(s.total_cost)),
        ("Created", when(s.created_at)),
        ("Updated", when(s.updated_at)),
    ]
    if record.expires_at is not None:
        facts.append(("Expires", when(record.expires_at)))
    if s.parent_session_id:
        facts.append(("Branch of", el("a", {"href": ctx.session(s.parent_session_id)},
                                      s.parent_session_id)))
        facts.append(("Fork point", f"after turn {record.fork_seq or 0}"))
    if s.checkpoint_id:
        facts.append(("Checkpoint", el("a", {"href": f"#cp-{s.checkpoint_id}"}, s.checkpoint_id)))
    if s.system_prompt:
        facts.append(("System prompt", el("span", {"class": "prompt"},
                                          shown(s.system_prompt, "/api/session"))))
    if s.active_tools:
        facts.append(("Tools", ", ".join(s.active_tools)))
    dl = el("dl", {"class": "facts"}, [(el("dt", None, k), el("dd", None, v)) for k, v in facts])
    more = el("details", {"class": "meta"}, el("summary", None, "metadata and variables"),
              el("pre", None, shown(pretty_json({"metadata": s.metadata,
                                                 "variables": s.variables,
                                                 "active_skills": s.active_skills}),
                                    "/api/session")))
    return el("section", {"class": "summary"}, dl, more)


def _actions(ctx: PageContext, record: SessionRecord) -> Markup:
    sid = record.state.session_id
    links = [el("a", {"class": "button", "href": ctx.href("/session/analytics", id=sid),
                      "id": "analytics-link"}, "Analytics")]
    if ctx.allow_writes:
        if record.state.status in LIVE_STATUSES:
            links.append(el("a", {"class": "button danger", "id": "close-link",
                                  "href": ctx.href("/confirm/close", id=sid)}, "Close…"))
        links.append(el("a", {"class": "button", "id": "fork-link",
                              "href": ctx.href("/confirm/fork", id=sid)}, "Fork…"))
    return el("nav", {"class": "actions"}, links)


_COMPARED = ("status", "system_prompt", "variables", "metadata", "active_tools",
             "active_skills", "turn_count", "total_tokens", "total_cost")


def _checkpoint_state(cp: SessionCheckpoint, record: SessionRecord) -> Markup:
    """The checkpoint's metadata and header, and what has changed since (on demand)."""
    changed = [name for name in _COMPARED
               if getattr(cp.state, name) != getattr(record.state, name)]
    state = {
        "checkpoint_metadata": cp.metadata,
        "status": cp.state.status.value,
        "system_prompt": cp.state.system_prompt,
        "variables": cp.state.variables,
        "metadata": cp.state.metadata,
        "active_tools": cp.state.active_tools,
        "active_skills": cp.state.active_skills,
        "total_cost": cp.state.total_cost,
    }
    summary = ("same as now" if not changed
               else "changed since: " + ", ".join(changed))
    return el("details", {"class": "meta cp-state"}, el("summary", None, summary),
              el("pre", None, shown(pretty_json(state), "/api/session/checkpoints")))


def _checkpoints(
    ctx: PageContext, record: SessionRecord, checkpoints: list[SessionCheckpoint] | str
) -> Markup:
    if isinstance(checkpoints, str):  # they could not be read: why, instead of the list
        return el("section", {"id": "checkpoints"}, el("h2", None, "Checkpoints"),
                  el("p", {"class": "warning", "id": "checkpoints-damaged"},
                     "The checkpoints cannot be shown: ", checkpoints))
    sid = record.state.session_id
    current = record.state.checkpoint_id
    rows = []
    for cp in reversed(checkpoints):
        actions: list[object] = []
        if ctx.allow_writes:
            if record.state.status in LIVE_STATUSES:
                actions.append(el("a", {"href": ctx.href("/confirm/restore", id=sid,
                                                         checkpoint=cp.checkpoint_id),
                                        "class": "restore-link"}, "restore…"))
            actions.append(el("a", {"href": ctx.href("/confirm/fork", id=sid,
                                                     checkpoint=cp.checkpoint_id),
                                    "class": "fork-link"}, "fork…"))
        rows.append(el(
            "tr", {"id": f"cp-{cp.checkpoint_id}",
                   "class": "current" if cp.checkpoint_id == current else None},
            el("td", None, el("code", None, cp.checkpoint_id),
               " (current)" if cp.checkpoint_id == current else None),
            el("td", None, when(cp.created_at)),
            el("td", {"class": "num"}, cp.state.turn_count),
            el("td", {"class": "num"}, cp.state.total_tokens),
            el("td", None, el("code", None, cp.parent_checkpoint_id or "—")),
            el("td", None, _checkpoint_state(cp, record)),
            el("td", None, actions),
        ))
    head = el("tr", None, [el("th", None, h) for h in
                           ("Checkpoint", "Created", "Turns", "Tokens", "Parent", "State", "")])
    table = (el("table", {"class": "checkpoints"}, el("thead", None, head),
                el("tbody", None, rows)) if rows else None)
    return el("section", {"id": "checkpoints"},
              el("h2", None, f"Checkpoints ({len(checkpoints)})"),
              checkpoint_timeline(checkpoints, current), table)


def _branches(ctx: PageContext, tree: BranchTree) -> Markup:
    merges = [el("li", None, el("a", {"href": ctx.session(n.session_id)}, n.label),
                 f" merged {n.merge.turns} turn(s) into ",
                 el("a", {"href": ctx.session(n.state.parent_session_id or "")},
                    tree.nodes[n.state.parent_session_id].label
                    if n.state.parent_session_id in tree.nodes else n.state.parent_session_id))
              for n in tree.merges if n.merge is not None]
    note = (el("p", {"class": "warning"}, "The family is larger than shown (bounded walk).")
            if tree.truncated else None)
    unknown = (el("p", {"class": "warning", "id": "merge-unknown"},
                  f"Not merged in the first {MAX_MERGE_SCAN:,} turns after the fork point "
                  "(a merge further on is not looked for): ",
                  [el("code", None, tree.nodes[sid].label, " ") for sid in tree.merge_unknown])
               if tree.merge_unknown else None)
    damaged = (el("p", {"class": "warning", "id": "tree-damaged"},
                  "Left out of the tree: a stored record is damaged near ",
                  [el("code", None, sid, " ") for sid in tree.damaged])
               if tree.damaged else None)
    legend = el("p", {"class": "muted legend"},
                "Solid lines: forks (labelled with the number of turns inherited). "
                "Dashed arrows: merges back into the parent. Click a node to open it.")
    return el("section", {"id": "branches"},
              el("h2", None, f"Branches ({len(tree.nodes) - 1} fork(s), "
                             f"{len(tree.merges)} merge(s))"),
              el("div", {"class": "graph-scroll"}, branch_graph(tree, ctx.session)),
              legend, el("ul", {"class": "merges"}, merges) if merges else None, note,
              unknown, damaged)


def _pager(ctx: PageContext, record: SessionRecord, page: TurnPage, limit: int) -> Markup:
    sid = record.state.session_id
    links: list[object] = []
    first_shown = page.entries[0].position if page.entries else 1
    if page.newest or first_shown > 1:
        links.append(el("a", {"href": ctx.session(sid) + "#transcript"}, "« First turns"))
    if page.next_after is not None:
        links.append(el("a", {"id": "next-turns", "rel": "next",
                              "href": ctx.session(sid, after=page.next_after,
                                                  pos=page.next_position) + "#transcript"},
                        f"Next {limit} turns »"))
    if not page.newest and record.state.turn_count > limit:
        links.append(el("a", {"href": ctx.session(sid, view="newest") + "#transcript"},
                        "Newest turns »»"))
    shown = (f"turns {page.entries[0].position}-{page.entries[-1].position} "
             f"of {record.state.turn_count}") if page.entries else "no turns"
    return el("nav", {"class": "pager"}, el("span", {"class": "muted"}, shown), links)


def session_page(
    ctx: PageContext,
    record: SessionRecord,
    *,
    page: TurnPage,
    checkpoints: list[SessionCheckpoint] | str,
    tree: BranchTree,
    limit: int,
    notice: str | None = None,
) -> str:
    """The whole page (``checkpoints``: the list, or why it cannot be read)."""
    s = record.state
    title = s.branch_name or s.session_id
    heading = el("h1", None, el("span", {"class": "muted"}, "Session "),
                 el("code", {"id": "session-id"}, s.session_id),
                 el("span", {"class": "branch-tag"}, f"branch {s.branch_name}")
                 if s.branch_name else None)
    grid = rounds_grid(page)
    body: list[object] = [
        heading,
        el("p", {"class": "notice", "role": "status"}, notice) if notice else None,
        _actions(ctx, record),
        _summary(ctx, record),
        _branches(ctx, tree),
        _checkpoints(ctx, record, checkpoints),
    ]
    if grid is not None:
        body.append(el("section", {"id": "group"}, el("h2", None, "Rounds by agent"),
                       el("div", {"class": "graph-scroll"}, grid)))
    pager = _pager(ctx, record, page, limit)
    body.append(el("section", None,
                   el("h2", None, "Transcript",
                      el("button", {"type": "button", "class": "toggle-details",
                                    "data-target": "transcript"}, "expand all")),
                   pager, transcript(page), pager))
    return layout(ctx, title, *body)
