"""Who is making the request: the user a session must belong to to be bound.

By default the user is read from ``scope["user"]``, Starlette's authentication
convention (``AuthenticationMiddleware`` puts a ``BaseUser`` there): an object whose
``identity`` (else ``id``, else ``username``) names the user, unless its
``is_authenticated`` is false (a method, Django's old style, is called); an object
without ``is_authenticated`` counts as logged in. A plain non-empty string is taken
as the user id. An application with its own authentication passes a *user resolver*
instead: a callable that takes the ASGI scope and returns the user id (or None),
synchronously or as an awaitable. A user id of whitespace only is no user, as ``""``
is (with a warning).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from lexigram.logging import get_logger

from lexigram.ai.session.exceptions import SessionValidationError

__all__ = ["ANONYMOUS_PREFIX", "Scope", "UserResolver", "resolve_user", "user_from_scope"]

logger = get_logger(__name__)

Scope = MutableMapping[str, Any]
UserResolver = Callable[[Scope], "str | Awaitable[str | None] | None"]
"""Returns the request's user id (None: not authenticated) from the ASGI scope."""

ANONYMOUS_PREFIX = "anonymous:"
"""Prefix of the user id of an anonymous caller's sessions (``anonymous:<random>``)."""

_MISSING = object()


def _attribute(user: object, name: str) -> object:
    try:
        return getattr(user, name, _MISSING)
    except NotImplementedError:
        return _MISSING


def user_from_scope(scope: Scope) -> str | None:
    """The authenticated user id in ``scope["user"]`` (Starlette's convention), or None."""
    user = scope.get("user")
    if user is None:
        return None
    if isinstance(user, str):
        return _checked(user) if user else None
    authenticated = _attribute(user, "is_authenticated")
    if callable(authenticated):
        # Django's old style: a method (a bound method itself is always true).
        try:
            authenticated = authenticated()
        except NotImplementedError:
            authenticated = _MISSING
    if authenticated is not _MISSING and not authenticated:
        return None
    for name in ("identity", "id", "username"):
        value = _attribute(user, name)
        if value is _MISSING or value is None or value == "":
            continue
        if isinstance(value, str | int) and not isinstance(value, bool):
            return _checked(str(value))
    logger.warning(
        "ai_session.web.unidentified_user",
        user_type=type(user).__name__,
        detail="scope['user'] has no identity/id/username; pass user_resolver=",
    )
    return None


def _checked(user_id: str) -> str | None:
    if not user_id.strip():
        # No user, as "" is: a blank id would otherwise fail every request when bound.
        logger.warning("ai_session.web.blank_user_id", detail="user id is whitespace only")
        return None
    if user_id.startswith(ANONYMOUS_PREFIX):
        # Reserved for anonymous callers: an account named like that must not be able
        # to claim their sessions.
        logger.warning(
            "ai_session.web.reserved_user_id", detail="user id uses the anonymous prefix"
        )
        return None
    return user_id


async def resolve_user(scope: Scope, resolver: UserResolver | None) -> str | None:
    """The request's user id from ``resolver`` (when given) or from ``scope["user"]``."""
    if resolver is None:
        return user_from_scope(scope)
    result = resolver(scope)
    if inspect.isawaitable(result):
        result = await result
    if result is None:
        return None
    if not isinstance(result, str):
        raise SessionValidationError(
            "user_resolver", f"must return a string or None, got {type(result).__name__}"
        )
    return _checked(result) if result else None
