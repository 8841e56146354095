"""The confirmation step of a write: what will happen, and a form that does it."""

from __future__ import annotations

from lexigram.ai.session.explorer.html import el
from lexigram.ai.session.explorer.pages.context import PageContext
from lexigram.ai.session.explorer.pages.layout import layout

__all__ = ["confirm_page"]

_TEXT = {
    "close": ("Close this session?",
              "A closed session accepts no more turns and cannot be reopened."),
    "restore": ("Restore this checkpoint?",
                "The session's live turns and header become the checkpoint's; later turns "
                "stop being live (they stay stored, so other checkpoints still restore)."),
    "fork": ("Create a branch?",
             "A new session is created with the turns up to the fork point; the source is "
             "not changed."),
}


def confirm_page(
    ctx: PageContext,
    action: str,
    *,
    session_id: str,
    checkpoint_id: str | None = None,
    branch_name: str = "",
    problem: str | None = None,
) -> str:
    """The page asking to confirm ``action`` (``close``, ``restore`` or ``fork``)."""
    title, explanation = _TEXT[action]
    fields: list[object] = [
        el("input", {"type": "hidden", "name": "csrf", "value": ctx.csrf}),
        el("input", {"type": "hidden", "name": "id", "value": session_id}),
    ]
    if checkpoint_id:
        fields.append(el("input", {"type": "hidden", "name": "checkpoint",
                                   "value": checkpoint_id}))
    if action == "fork":
        fields.append(el("label", None, "Branch name ",
                         el("input", {"name": "branch_name", "value": branch_name,
                                      "required": True, "id": "branch_name"})))
    fields.append(el("label", {"class": "confirm-box"},
                     el("input", {"type": "checkbox", "name": "confirm", "value": "yes",
                                  "required": True, "id": "confirm"}),
                     " I understand, do it"))
    fields.append(el("button", {"type": "submit", "class": "danger", "id": "do-it"},
                     action.capitalize()))
    fields.append(el("a", {"href": ctx.session(session_id)}, "Cancel"))
    target = [("Session", session_id)]
    if checkpoint_id:
        target.append(("Checkpoint", checkpoint_id))
    return layout(
        ctx, title,
        el("h1", None, title),
        el("dl", {"class": "facts"}, [(el("dt", None, k), el("dd", None, el("code", None, v)))
                                      for k, v in target]),
        el("p", None, explanation),
        el("p", {"class": "warning", "role": "alert"}, problem) if problem else None,
        el("form", {"method": "post", "action": ctx.href(f"/actions/{action}"),
                    "class": "confirm"}, fields),
    )
