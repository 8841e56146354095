"""``AccessGuard``: the ASGI middleware that decides who may use the explorer.

In this order, on every HTTP request:

1. Bound to a loopback address, a client whose address is not loopback is refused
   (403), and so is a ``Host`` header naming another machine (403; this stops DNS
   rebinding, where a web page re-points its own name at 127.0.0.1).
2. With a token, the request must carry it: ``Authorization: Bearer <token>``,
   ``X-Explorer-Token: <token>`` or the ``lexigram_explorer_token`` cookie. A page
   opened with ``?token=<token>`` gets the cookie and is redirected to the same URL
   without the token. A missing or wrong token gets 401.
3. Every answer carries headers that keep the pages to themselves: a Content
   Security Policy allowing only the explorer's own scripts and styles, no framing,
   no referrer sent to other sites, no MIME sniffing. (``same-origin``, not
   ``no-referrer``: under ``no-referrer`` browsers post forms with ``Origin: null``,
   which the write check must refuse.)
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, urlencode

from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lexigram.ai.session.explorer.settings import ExplorerSettings, is_loopback_address

__all__ = ["TOKEN_COOKIE", "AccessGuard", "SECURITY_HEADERS"]

TOKEN_COOKIE = "lexigram_explorer_token"

SECURITY_HEADERS: dict[str, str] = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def _host_name(host_header: str) -> str:
    """The name part of a ``Host`` header (``[::1]:8765`` -> ``::1``)."""
    if host_header.startswith("["):
        return host_header[1 : host_header.find("]")] if "]" in host_header else host_header
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class AccessGuard:
    """Refuses requests from outside the bind address or without the token (see module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        settings: ExplorerSettings,
        closer: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self._closer = closer

    async def aclose(self) -> None:
        """Close the store the app opened from a config (mounted apps: no lifespan does)."""
        if self._closer is not None:
            await self._closer()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the request, then pass it on with the security headers added."""
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await _secured(refusal)(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for key, value in SECURITY_HEADERS.items():
                    if key.encode() not in present:
                        headers.append((key.encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_secured)

    def _refusal(self, scope: Scope) -> Response | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.settings.loopback:
            client = scope.get("client")
            if not client or not is_loopback_address(str(client[0])):
                return PlainTextResponse(
                    "403 Forbidden: the explorer is bound to a loopback address and only "
                    "answers this machine",
                    status_code=403,
                )
            if not is_loopback_address(_host_name(headers.get("host", ""))):
                return PlainTextResponse(
                    "403 Forbidden: Host header names another machine", status_code=403
                )
        token = self.settings.token
        if token is None:
            return None
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        offered = query.get("token")
        if offered is not None and _same(offered, token):
            rest = [(k, v) for k, v in parse_qsl(scope["query_string"].decode("latin-1"))
                    if k != "token"]
            root, target = scope.get("root_path", ""), scope["path"]
            if not target.startswith(root):  # servers that strip the mount prefix
                target = root + target
            # "//host/..." (or "/\\host") in Location is another site to a browser.
            target = "/" + target.lstrip("/\\")
            if rest:
                target += "?" + urlencode(rest)
            response = RedirectResponse(target, status_code=303)
            # Under the mount path only: with "/" the token went with every request to
            # the host application's other routes, into its logs (an outside audit).
            cookie_path = root.rstrip("/").replace(";", "") or "/"
            response.set_cookie(
                TOKEN_COOKIE, token, httponly=True, samesite="strict", path=cookie_path
            )
            return response
        if any(_same(c, token) for c in _presented(headers)):
            return None
        return PlainTextResponse(
            "401 Unauthorized: this explorer needs its access token "
            "(open it once with ?token=..., or send Authorization: Bearer ...)",
            status_code=401,
            headers={"www-authenticate": 'Bearer realm="session-explorer"'},
        )


def _presented(headers: dict[str, str]) -> list[str]:
    """The tokens a request carries (header, bearer, cookie)."""
    found: list[str] = []
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        found.append(auth[7:].strip())
    if "x-explorer-token" in headers:
        found.append(headers["x-explorer-token"].strip())
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == TOKEN_COOKIE:
            found.append(value.strip('"'))
    return found


def _same(offered: str, token: str) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(offered.encode("utf-8", "replace"), token.encode("utf-8"))


def _secured(response: Response) -> Response:
    for key, value in SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    return response
