"""The read-only pages: sessions, session, analytics."""

from __future__ import annotations

from lexigram.contracts.ai.session import SessionCheckpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from lexigram.ai.session.exceptions import CorruptRecordError
from lexigram.ai.session.explorer.pages.analytics import analytics_page
from lexigram.ai.session.explorer.pages.session import session_page
from lexigram.ai.session.explorer.pages.sessions import sessions_page
from lexigram.ai.session.explorer.params import paging, session_id, text_param, user_param
from lexigram.ai.session.explorer.runtime import ExplorerRuntime

__all__ = ["PageViews"]

_NOTICES = {
    "closed": "Session closed.",
    "restored": "Checkpoint restored.",
    "forked": "Branch created.",
}


class PageViews:
    """Handlers of ``/``, ``/session`` and ``/session/analytics``."""

    def __init__(self, runtime: ExplorerRuntime) -> None:
        self.runtime = runtime

    async def index(self, request: Request) -> Response:
        """The sessions page; ``?session=ID`` redirects to that session."""
        rt = self.runtime
        ctx = rt.ctx(request)
        wanted = text_param(request, "session")
        if wanted:
            return RedirectResponse(ctx.session(wanted), status_code=303)
        user_id, status = user_param(request), text_param(request, "status")
        cursor = request.query_params.get("cursor") or None
        page = None
        locked: dict[str, str] = {}
        if user_id:
            page = await rt.service.sessions(
                user_id, status=status, cursor=cursor, limit=rt.settings.page_size
            )
            locked = await rt.service.locked(page)
        return HTMLResponse(
            sessions_page(
                ctx, user_id=user_id, status=status, cursor=cursor, page=page, locked=locked
            )
        )

    async def session(self, request: Request) -> Response:
        """The session page with one page of its transcript."""
        rt = self.runtime
        sid = session_id(request)
        after, position = paging(request)
        record = await rt.service.record(sid)
        limit = rt.settings.turns_per_page
        page = await rt.service.turns(
            record, after=after, position=position, limit=limit,
            newest=request.query_params.get("view") == "newest",
        )
        checkpoints: list[SessionCheckpoint] | str
        try:
            checkpoints = await rt.service.checkpoints(sid)
        except CorruptRecordError as exc:  # one damaged checkpoint: the rest still shows
            checkpoints = str(exc).splitlines()[0]
        html = session_page(
            rt.ctx(request),
            record,
            page=page,
            checkpoints=checkpoints,
            tree=await rt.service.tree(sid),
            limit=limit,
            notice=_NOTICES.get(request.query_params.get("done", "")),
        )
        return HTMLResponse(html)

    async def analytics(self, request: Request) -> Response:
        """The analytics page."""
        rt = self.runtime
        sid = session_id(request)
        record = await rt.service.record(sid)
        series = await rt.service.series(sid)
        return HTMLResponse(analytics_page(rt.ctx(request), record, series))
