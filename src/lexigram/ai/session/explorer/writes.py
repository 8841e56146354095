"""The writes: a confirmation page (GET) and the action (POST), only with ``allow_writes``.

An action needs the process's CSRF token, no foreign ``Origin`` and ``confirm=yes``;
without ``allow_writes`` both the confirmation page and the action answer 403.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from lexigram.ai.session.explorer.pages.confirm import confirm_page
from lexigram.ai.session.explorer.params import read_form, required, same_origin, session_id
from lexigram.ai.session.explorer.runtime import ExplorerRuntime

__all__ = ["ACTIONS", "WriteViews"]

ACTIONS = frozenset({"close", "restore", "fork"})


class WriteViews:
    """Handlers of ``/confirm/{action}`` and ``/actions/{action}``."""

    def __init__(self, runtime: ExplorerRuntime) -> None:
        self.runtime = runtime

    def _refusal(self, request: Request) -> Response | None:
        rt = self.runtime
        if not rt.settings.allow_writes:
            return rt.page(request, "Read-only",
                           "This explorer is read-only: start it with --allow-writes "
                           "to close, restore or fork sessions.", 403)
        if request.path_params["action"] not in ACTIONS:
            return rt.page(request, "Not found", "No such action.", 404)
        return None

    async def confirm(self, request: Request) -> Response:
        """What the action will do, and the form that does it."""
        refused = self._refusal(request)
        if refused is not None:
            return refused
        action = request.path_params["action"]
        sid = session_id(request)
        await self.runtime.service.record(sid)
        checkpoint = request.query_params.get("checkpoint") or None
        if action == "restore":
            required(checkpoint or "", "checkpoint")
        return HTMLResponse(confirm_page(self.runtime.ctx(request), action, session_id=sid,
                                         checkpoint_id=checkpoint))

    async def act(self, request: Request) -> Response:
        """Do the confirmed action and go to the session (the new branch after a fork)."""
        rt = self.runtime
        refused = self._refusal(request)
        if refused is not None:
            return refused
        if not same_origin(request):
            return rt.page(request, "Forbidden", "The form was posted from another site.", 403)
        form = await read_form(request)
        if not hmac.compare_digest(form.get("csrf", "").encode(), rt.csrf.encode()):
            return rt.page(request, "Forbidden", "The form's CSRF token is missing or stale; "
                           "reload the page and try again.", 403)
        action = request.path_params["action"]
        sid = required(form.get("id", ""), "id")
        checkpoint = form.get("checkpoint") or None
        branch_name = form.get("branch_name", "").strip()
        ctx = rt.ctx(request)
        if form.get("confirm") != "yes":
            page = confirm_page(ctx, action, session_id=sid, checkpoint_id=checkpoint,
                                branch_name=branch_name,
                                problem="Tick the confirmation box to go ahead.")
            return HTMLResponse(page, status_code=400)
        if action == "close":
            await rt.service.close(sid)
            return RedirectResponse(ctx.session(sid, done="closed"), status_code=303)
        if action == "restore":
            await rt.service.restore(sid, required(checkpoint or "", "checkpoint"))
            return RedirectResponse(ctx.session(sid, done="restored"), status_code=303)
        branch = await rt.service.fork(sid, branch_name, from_checkpoint=checkpoint)
        return RedirectResponse(ctx.session(branch.session_id, done="forked"), status_code=303)
