"""Deciding which session, if any, a request may use.

The candidate id comes from the first of: the header ``config.header_name``, the
``session_id`` query parameter, the signed cookie ``config.cookie_name``. It is bound
only when the session exists, is live (ACTIVE or SUSPENDED) and belongs to the
request's user; otherwise the request gets no session and the reason (never the id)
is logged. A caller with no authenticated user is anonymous: with
``allow_anonymous`` it is identified by the random anonymous id in its signed cookie
(a new one when it has none), so each anonymous client owns its own sessions.

A browser may send several cookies of that name (one per Path and Domain). Each is
verified; the cookie's candidate is the first verified value whose session binds,
else the first verified value (as if it had been the only one). The extra look-ups
happen only when several values verify.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qsl

from lexigram.contracts.ai.session import SessionState, SessionStatus
from lexigram.logging import get_logger

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.manager.protocol import SessionManagerAPI
from lexigram.ai.session.middleware.cookies import (
    CookieCodec,
    CookiePayload,
    is_valid_id,
    read_cookies,
)
from lexigram.ai.session.middleware.identity import (
    ANONYMOUS_PREFIX,
    Scope,
    UserResolver,
    resolve_user,
)

__all__ = ["QUERY_PARAMETER", "Rejection", "Resolution", "resolve_request"]

logger = get_logger(__name__)

QUERY_PARAMETER = "session_id"
"""The query parameter a session id may be given in."""


class Rejection(StrEnum):
    """Why a session id given by the client was not bound."""

    MALFORMED = "malformed"
    NO_USER = "no_user"
    UNKNOWN = "unknown"
    FOREIGN = "foreign"
    CLOSED = "closed"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Resolution:
    """The outcome of resolving one request.

    ``state`` is the bound session header (None: no session); ``user_id`` the user a
    lazily created session would belong to; ``anonymous_id`` the caller's anonymous
    id (to put in the cookie); ``source`` where the candidate id came from
    (``header``, ``query``, ``cookie`` or None); ``rejection`` why it was not bound;
    ``cookie_rejected`` whether a cookie was present but no value of it verified;
    ``cookie_session_id`` the session id in the verified cookie value the request
    went by (None: no such value, or it names no session).
    """

    state: SessionState | None
    user_id: str | None
    anonymous_id: str | None
    source: str | None
    rejection: Rejection | None
    cookie_rejected: bool
    cookie_session_id: str | None = None


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            # A caller-chosen id may hold any character: clients send them as UTF-8.
            try:
                text = value.decode("utf-8")
            except UnicodeDecodeError:
                text = value.decode("latin-1")
            return text.strip(" \t") or None
    return None


def _query(scope: Scope) -> str | None:
    raw = scope.get("query_string") or b""
    if not raw:
        return None
    for key, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=False):
        if key == QUERY_PARAMETER:
            # Not stripped: a percent-encoded space is part of the id the caller sent.
            return value or None
    return None


def _explicit(scope: Scope, config: SessionConfig) -> tuple[str | None, str | None]:
    """The id given in the header or the query parameter, and which one."""
    headers = scope.get("headers") or []
    value = _header(headers, config.header_name.lower().encode("latin-1"))
    if value is not None:
        return value, "header"
    value = _query(scope)
    if value is not None:
        return value, "query"
    return None, None


def _verified(
    scope: Scope, config: SessionConfig, codec: CookieCodec | None
) -> tuple[list[CookiePayload], bool]:
    """The verified values of the session cookie in order, and whether all failed."""
    if codec is None or config.cookie_name is None:
        return [], False
    raws = read_cookies(scope.get("headers") or [], config.cookie_name)
    payloads = [p for p in (codec.decode(raw) for raw in raws) if p is not None]
    rejected = bool(raws) and not payloads
    if rejected:
        logger.debug("ai_session.web.cookie_rejected", detail="bad signature or expired")
    return payloads, rejected


def _anonymous_user(payload: CookiePayload | None) -> str | None:
    """The anonymous user id a cookie value names (None: it names none)."""
    if payload is None or payload.anonymous_id is None:
        return None
    return ANONYMOUS_PREFIX + payload.anonymous_id


async def _check(
    manager: SessionManagerAPI, session_id: str, user_id: str | None
) -> tuple[SessionState | None, Rejection | None]:
    if not is_valid_id(session_id):
        return None, Rejection.MALFORMED
    if user_id is None:
        # Nobody to check ownership against: do not even look the id up.
        return None, Rejection.NO_USER
    header = await manager.get_header(session_id)
    if header is None:
        return None, Rejection.UNKNOWN
    if header.user_id != user_id:
        return None, Rejection.FOREIGN
    if header.status == SessionStatus.CLOSED:
        return None, Rejection.CLOSED
    if header.status == SessionStatus.EXPIRED:
        return None, Rejection.EXPIRED
    return header, None


async def resolve_request(
    scope: Scope,
    *,
    manager: SessionManagerAPI,
    config: SessionConfig,
    codec: CookieCodec | None,
    user_resolver: UserResolver | None,
) -> Resolution:
    """Work out the request's user and the session it may use (see the module doc)."""
    user_id = await resolve_user(scope, user_resolver)
    payloads, cookie_rejected = _verified(scope, config, codec)
    # Anonymous callers are told apart by the id in their signed cookie only; without
    # cookies there is nothing to tie a session to the caller.
    anonymous = user_id is None and config.allow_anonymous and codec is not None
    session_id, source = _explicit(scope, config)
    payload = payloads[0] if payloads else None
    state: SessionState | None = None
    rejection: Rejection | None = None
    looked_up: dict[tuple[str, str | None], tuple[SessionState | None, Rejection | None]] = {}
    if session_id is None and len(payloads) > 1:
        # Several cookies of the name: the first whose session binds.
        for candidate in payloads:
            if candidate.session_id is None:
                continue
            owner = _anonymous_user(candidate) if anonymous else user_id
            outcome = await _check(manager, candidate.session_id, owner)
            looked_up[candidate.session_id, owner] = outcome
            if outcome[1] is None:
                payload = candidate
                break
    anonymous_id: str | None = None
    if anonymous:
        anonymous_id = (payload.anonymous_id if payload else None) or secrets.token_urlsafe(16)
        user_id = ANONYMOUS_PREFIX + anonymous_id
    if session_id is None and payload is not None and payload.session_id is not None:
        session_id, source = payload.session_id, "cookie"
    if session_id is not None:
        known = looked_up.get((session_id, user_id))
        state, rejection = known or await _check(manager, session_id, user_id)
        if rejection is not None:
            logger.debug(
                "ai_session.web.session_not_bound",
                reason=rejection.value,
                source=source,
            )
    return Resolution(
        state=state,
        user_id=user_id,
        anonymous_id=anonymous_id,
        source=source,
        rejection=rejection,
        cookie_rejected=cookie_rejected,
        cookie_session_id=payload.session_id if payload is not None else None,
    )
