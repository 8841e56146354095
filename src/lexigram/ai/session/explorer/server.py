"""``serve``: run the explorer with uvicorn until interrupted."""

from __future__ import annotations

from typing import TextIO

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.explorer.app import create_app
from lexigram.ai.session.explorer.settings import ExplorerSettings
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.manager.standalone import open_manager

__all__ = ["check_store", "explorer_url", "serve"]


def explorer_url(settings: ExplorerSettings, port: int | None = None) -> str:
    """The address to open in a browser (the token is not included)."""
    host = settings.host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{settings.port if port is None else port}/"


async def check_store(config: SessionConfig) -> None:
    """Open the store ``config`` names and ping it, so a bad URL fails before serving."""
    async with open_manager(
        config, manager_class=SessionManagerImpl, warn_layered=False
    ) as manager:
        await manager.health_check()


def serve(config: SessionConfig, settings: ExplorerSettings, *, err: TextIO) -> None:
    """Open the store ``config`` names and serve the explorer on ``settings.host:port``.

    Blocks until the server stops (Ctrl-C). Needs uvicorn (extra ``explorer``). The
    store is checked first (:func:`check_store`): an unreachable one raises its
    ``SessionError`` here instead of failing inside the server's startup.
    """
    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the explorer needs uvicorn and starlette: pip install 'lexigram-ai-session[explorer]'"
        ) from exc
    import asyncio

    asyncio.run(check_store(config))
    app = create_app(config, settings)
    mode = "writes enabled" if settings.allow_writes else "read-only"
    access = "token required" if settings.token else "this machine only"
    err.write(f"Session explorer on {explorer_url(settings)} ({mode}, {access}); Ctrl-C stops\n")
    if settings.token:
        err.write("open it once with ?token=<your token> (a cookie keeps it)\n")
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=settings.host, port=settings.port, log_level="warning",
            access_log=False, lifespan="on", proxy_headers=False,
        )
    )
    server.run()
