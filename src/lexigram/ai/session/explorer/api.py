"""The JSON API under ``/api`` (read-only; shapes in :mod:`.jsonable`, docs/explorer.md)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from lexigram.ai.session.explorer.jsonable import (
    checkpoint_json,
    page_json,
    record_json,
    tree_json,
    turns_json,
)
from lexigram.ai.session.explorer.params import (
    int_param,
    paging,
    required,
    session_id,
    text_param,
    user_param,
)
from lexigram.ai.session.explorer.runtime import ExplorerRuntime, json_response

__all__ = ["ApiViews"]


def _version() -> str:
    """The installed distribution's version (empty when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lexigram-ai-session")
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        return ""


class ApiViews:
    """Handlers of ``/api/...``."""

    def __init__(self, runtime: ExplorerRuntime) -> None:
        self.runtime = runtime

    async def info(self, request: Request) -> Response:
        """Backend, mode, version, page sizes."""
        rt = self.runtime
        return json_response({
            "backend": rt.service.backend,
            "allow_writes": rt.settings.allow_writes,
            "version": _version(),
            "turns_per_page": rt.settings.turns_per_page,
            "page_size": rt.settings.page_size,
        })

    async def sessions(self, request: Request) -> Response:
        """A page of a user's sessions."""
        rt = self.runtime
        user_id = required(user_param(request), "user")
        limit = int_param(request, "limit", low=1, high=1000, default=rt.settings.page_size)
        page = await rt.service.sessions(
            user_id, status=text_param(request, "status"),
            cursor=request.query_params.get("cursor") or None, limit=limit or 1,
        )
        return json_response(page_json(page, await rt.service.locked(page)))

    async def session(self, request: Request) -> Response:
        """A session's header."""
        return json_response(record_json(await self.runtime.service.record(session_id(request))))

    async def turns(self, request: Request) -> Response:
        """A page of a session's turns."""
        rt = self.runtime
        sid = session_id(request)
        after, position = paging(request)
        limit = int_param(request, "limit", low=1, high=1000, default=rt.settings.turns_per_page)
        record = await rt.service.record(sid)
        page = await rt.service.turns(
            record, after=after, position=position, limit=limit or 1,
            newest=request.query_params.get("view") == "newest",
        )
        return json_response(turns_json(page))

    async def checkpoints(self, request: Request) -> Response:
        """A session's checkpoint headers."""
        record = await self.runtime.service.record(session_id(request))
        found = await self.runtime.service.checkpoints(record.state.session_id)
        return json_response({"checkpoints": [checkpoint_json(c) for c in found]})

    async def tree(self, request: Request) -> Response:
        """A session's branch family."""
        return json_response(tree_json(await self.runtime.service.tree(session_id(request))))

    async def analytics(self, request: Request) -> Response:
        """A session's usage series."""
        series = await self.runtime.service.series(session_id(request))
        return json_response(series.to_dict())
