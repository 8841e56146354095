"""Helpers of the explorer tests: an HTTP client on the app (no network), the CSRF token."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from lexigram.ai.session.explorer import ExplorerSettings, create_app
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.stores.base import SessionStore
from tests.explorer.seed import CONFIG

BASE_URL = "http://127.0.0.1:8765"


@asynccontextmanager
async def client_for(
    store: SessionStore,
    settings: ExplorerSettings | None = None,
    *,
    client: tuple[str, int] = ("127.0.0.1", 50000),
    base_url: str = BASE_URL,
) -> AsyncIterator[httpx.AsyncClient]:
    """An ``httpx`` client calling the explorer over ``store`` in-process.

    ``client`` is the address the ASGI scope reports for the caller.
    """
    app = create_app(SessionManagerImpl(store, CONFIG), settings or ExplorerSettings())
    transport = httpx.ASGITransport(app=app, client=client)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
        yield http


def csrf_of(page: str) -> str:
    """The CSRF token of a confirmation page."""
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, "no CSRF field on the page"
    return found.group(1)
