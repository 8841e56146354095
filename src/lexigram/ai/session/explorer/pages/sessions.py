"""The sessions page: one user's sessions, filtered by status, paged with the store's cursor."""

from __future__ import annotations

from lexigram.contracts.ai.session import SessionStatus

from lexigram.ai.session.explorer.html import el
from lexigram.ai.session.explorer.pages.context import PageContext
from lexigram.ai.session.explorer.pages.format import age, cost, status_badge
from lexigram.ai.session.explorer.pages.layout import layout
from lexigram.ai.session.stores.base import SessionPage

__all__ = ["sessions_page"]


def _filter_form(ctx: PageContext, user_id: str, status: str) -> object:
    options = [el("option", {"value": "", "selected": not status}, "any status")]
    options += [
        el("option", {"value": s.value, "selected": s.value == status}, s.value)
        for s in SessionStatus
    ]
    return el(
        "form", {"class": "filters", "method": "get", "action": ctx.href("/")},
        el("label", None, "User ",
           el("input", {"name": "user", "value": user_id, "required": True,
                        "placeholder": "user id", "id": "user"})),
        el("label", None, "Status ",
           el("select", {"name": "status", "class": "auto-submit", "id": "status"}, options)),
        el("button", {"type": "submit"}, "List sessions"),
    )


def sessions_page(
    ctx: PageContext,
    *,
    user_id: str,
    status: str,
    cursor: str | None,
    page: SessionPage | None,
    locked: dict[str, str] | None = None,
) -> str:
    """The page; ``page`` is None until a user id is given; ``locked``: the ids of
    ``page.damaged`` encrypted under a key this process lacks, with the key id."""
    body: list[object] = [el("h1", None, "Sessions"), _filter_form(ctx, user_id, status)]
    if page is None:
        body.append(el("p", {"class": "muted"},
                       "Enter a user id to list that user's sessions, newest first, "
                       "or open a session by its id above."))
        return layout(ctx, "Sessions", *body)
    locked = locked or {}
    if locked:
        body.append(el(
            "div", {"class": "warning", "role": "alert", "id": "locked"},
            el("strong", None,
               f"{len(locked)} encrypted session(s) left out (this process lacks the key): "),
            el("ul", None, [
                el("li", None, el("code", None, sid), f" needs key {key_id!r}")
                for sid, key_id in locked.items()
            ]),
            "They are intact; start the explorer with that key in encryption_keys to read "
            "them.",
        ))
    broken = [sid for sid in page.damaged if sid not in locked]
    if broken:
        body.append(el(
            "div", {"class": "warning", "role": "alert", "id": "damaged"},
            el("strong", None, f"{len(broken)} damaged session record(s) left out: "),
            el("ul", None, [el("li", None, el("code", None, sid)) for sid in broken]),
            "Their stored records could not be decoded; inspect or delete them in the store.",
        ))
    rows = [
        el("tr", {"data-session": s.session_id},
           el("td", None, el("a", {"href": ctx.session(s.session_id)}, s.session_id),
              el("span", {"class": "branch-tag"}, f"branch {s.branch_name}")
              if s.parent_session_id else None),
           el("td", None, status_badge(s.status.value)),
           el("td", {"class": "num"}, s.turn_count),
           el("td", {"class": "num"}, s.total_tokens),
           el("td", {"class": "num"}, cost(s.total_cost)),
           el("td", {"class": "num", "title": s.updated_at.isoformat()},
              age(s.updated_at)),
           el("td", {"class": "num", "title": s.created_at.isoformat()},
              age(s.created_at)))
        for s in page.items
    ]
    head = el("tr", None, el("th", None, "Session"), el("th", None, "Status"),
              *(el("th", {"class": "num"}, h) for h in ("Turns", "Tokens", "Cost", "Updated",
                                                        "Age")))
    title = f"Sessions of {user_id}" + (f" ({status})" if status else "")
    body.append(el("h2", None, title))
    if rows:
        body.append(el("table", {"class": "sessions", "id": "sessions"},
                       el("thead", None, head), el("tbody", None, rows)))
    else:
        body.append(el("p", {"class": "muted", "id": "no-sessions"}, "No sessions."))
    pager = []
    if cursor:
        pager.append(el("a", {"href": ctx.href("/", user=user_id, status=status)},
                        "« First page"))
    if page.next_cursor:
        pager.append(el("a", {"href": ctx.href("/", user=user_id, status=status,
                                               cursor=page.next_cursor), "rel": "next",
                              "id": "next-page"}, "Next page »"))
    body.append(el("nav", {"class": "pager"}, pager))
    return layout(ctx, title, *body)
