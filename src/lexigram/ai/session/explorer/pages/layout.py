"""The frame around every page: head, top bar (backend, mode, open-by-id box), main."""

from __future__ import annotations

from lexigram.ai.session.explorer.html import Markup, el
from lexigram.ai.session.explorer.pages.context import PageContext

__all__ = ["layout", "message_page"]


def layout(ctx: PageContext, title: str, *body: object) -> str:
    """A full HTML document."""
    mode = (
        el("span", {"class": "mode writes"}, "writes enabled")
        if ctx.allow_writes
        else el("span", {"class": "mode", "title": "start with --allow-writes to enable"},
                "read-only")
    )
    top = el(
        "header", {"class": "top"},
        el("a", {"class": "brand", "href": ctx.href("/")}, "Session explorer"),
        el("span", {"class": "backend"}, f"backend: {ctx.backend}"),
        mode,
        el("form", {"class": "open-form", "method": "get", "action": ctx.href("/")},
           el("input", {"name": "session", "placeholder": "Open a session by id",
                        "aria-label": "Session id", "required": True}),
           el("button", {"type": "submit"}, "Open")),
    )
    document = el(
        "html", {"lang": "en"},
        el("head", None,
           Markup('<meta charset="utf-8">'),
           el("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}),
           el("title", None, f"{title} · Session explorer"),
           el("link", {"rel": "stylesheet", "href": ctx.href("/static/explorer.css")}),
           el("script", {"src": ctx.href("/static/explorer.js"), "defer": True})),
        el("body", None, top, el("main", None, *body)),
    )
    return "<!doctype html>\n" + document


def message_page(ctx: PageContext, title: str, message: str, *, code: str = "") -> str:
    """A page that only says what went wrong (or what happened)."""
    return layout(
        ctx, title,
        el("h1", None, title),
        el("p", {"class": "error-message"}, message),
        el("p", {"class": "muted"}, code) if code else None,
        el("p", None, el("a", {"href": ctx.href("/")}, "Back to the sessions")),
    )
