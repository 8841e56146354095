"""The session explorer: look at sessions, branches and checkpoints in a browser.

``python -m lexigram.ai.session.cli [--database-url URL | --redis-url URL] explore``
(or ``lexigram ai-session explore``) serves it; :func:`create_app` builds the ASGI
app over a running :class:`SessionManagerImpl` to embed or test it. Pages are
rendered on the server (inline SVG charts and graphs, one small script, no CDN), a
JSON API under ``/api`` returns the same data, writes are off unless enabled, and
access is limited to this machine or to holders of a token. See ``docs/explorer.md``.

Needs Starlette and uvicorn: ``pip install 'lexigram-ai-session[explorer]'``.
"""

from __future__ import annotations

try:
    import starlette as _starlette
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "lexigram.ai.session.explorer needs Starlette and uvicorn: "
        "pip install 'lexigram-ai-session[explorer]'"
    ) from exc

from lexigram.ai.session.explorer.app import create_app
from lexigram.ai.session.explorer.server import explorer_url, serve
from lexigram.ai.session.explorer.settings import ExplorerSettings

__all__ = ["ExplorerSettings", "create_app", "explorer_url", "serve"]
