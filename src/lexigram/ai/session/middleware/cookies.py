"""The session cookie: a value signed with itsdangerous, and its ``Set-Cookie`` header.

The cookie carries ``{"sid": <session id>}`` plus, for an anonymous caller, its
anonymous id (``"anon"``), serialised and signed by
:class:`itsdangerous.URLSafeTimedSerializer` with the configured ``cookie_secret``
(the newest, when it is a list; values signed with an older one still verify). A
value whose signature does not verify (forged, tampered, signed with a secret not in
the list) or that is older than ``session_ttl`` decodes to None and is ignored.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from itsdangerous import BadData, URLSafeTimedSerializer
from lexigram.contracts.exceptions.config import ConfigurationError
from lexigram.logging import get_logger

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.validation import is_valid_id as _id_ok

__all__ = [
    "CookieCodec",
    "CookiePayload",
    "cookie_secret",
    "delete_cookie_header",
    "is_valid_id",
    "read_cookie",
    "read_cookies",
    "set_cookie_header",
]

logger = get_logger(__name__)

_SALT = "lexigram.ai.session.cookie"
_process_secret: str | None = None


def is_valid_id(value: object) -> bool:
    """Whether ``value`` is an id the manager accepts (see :func:`validation.check_id`).

    A caller-chosen id (``create(session_id=...)``) is bound like an issued one.
    """
    return _id_ok(value)


@dataclass(frozen=True)
class CookiePayload:
    """The verified content of a session cookie."""

    session_id: str | None
    anonymous_id: str | None = None


class CookieCodec:
    """Signs cookie values with the newest secret and verifies them with any of them.

    ``secret`` is one secret or a list, newest first: a value signed with an older
    secret still verifies (and the middleware re-signs it with the newest when it
    renews the cookie), so a secret can be rotated without logging anyone out.
    """

    def __init__(self, secret: str | Sequence[str], *, max_age: int | None) -> None:
        secrets_ = [secret] if isinstance(secret, str) else list(secret)
        if not secrets_ or not all(isinstance(s, str) and s for s in secrets_):
            raise ConfigurationError(
                "ai_session.cookie_secret: must be a non-empty string or list of strings"
            )
        # itsdangerous signs with the last key and verifies with all of them.
        self._serializer = URLSafeTimedSerializer(list(reversed(secrets_)), salt=_SALT)
        self._max_age = max_age

    def encode(self, session_id: str | None, anonymous_id: str | None = None) -> str:
        """The signed cookie value for ``session_id`` (and the caller's anonymous id)."""
        data: dict[str, str] = {}
        if session_id is not None:
            data["sid"] = session_id
        if anonymous_id is not None:
            data["anon"] = anonymous_id
        value = self._serializer.dumps(data)
        return value if isinstance(value, str) else value.decode("ascii")

    def decode(self, value: str) -> CookiePayload | None:
        """The payload of a genuine, unexpired value; None for anything else."""
        if not value or len(value) > 4096:
            return None
        try:
            data = self._serializer.loads(value, max_age=self._max_age)
        except BadData:
            return None
        if not isinstance(data, dict):
            return None
        sid = data.get("sid")
        anon = data.get("anon")
        for item in (sid, anon):
            if item is not None and not is_valid_id(item):
                return None
        return CookiePayload(session_id=sid, anonymous_id=anon)


def cookie_secret(config: SessionConfig) -> str | list[str]:
    """The secret cookies are signed with (or the list of secrets, newest first).

    ``config.cookie_secret`` when set. Without one, production refuses
    (:meth:`SessionConfig.require_cookie_secret` raises :class:`ConfigurationError`
    naming ``ai_session.cookie_secret``); any other environment gets a random
    per-process secret and a warning: cookies then stop verifying after a restart and
    differ between worker processes. Called when ``SessionMiddleware`` is built, so
    an application that never builds it (a worker) needs no secret.
    """
    global _process_secret
    secret = config.require_cookie_secret()
    if secret:
        newest = secret if isinstance(secret, str) else secret[0]
        if len(newest) < 32:
            logger.warning("ai_session.web.short_cookie_secret", length=len(newest))
        return secret
    if _process_secret is None:
        _process_secret = secrets.token_urlsafe(32)
        logger.warning(
            "ai_session.web.ephemeral_cookie_secret",
            detail="no ai_session.cookie_secret: cookies are signed with a per-process "
            "random secret and will not survive a restart",
        )
    return _process_secret


def read_cookies(headers: Iterable[tuple[bytes, bytes]], name: str) -> list[str]:
    """Every value of cookie ``name`` in the request headers, in the order sent.

    A browser sends one cookie per Path and Domain under the same name (an old one
    left at another Path after ``cookie_path`` changed, say), longest Path first.
    """
    values: list[str] = []
    for key, raw in headers:
        if key.lower() != b"cookie":
            continue
        for part in raw.decode("latin-1").split(";"):
            cookie_name, sep, value = part.strip().partition("=")
            if sep and cookie_name.strip() == name:
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                values.append(value)
    return values


def read_cookie(headers: Iterable[tuple[bytes, bytes]], name: str) -> str | None:
    """The value of cookie ``name`` in the request headers (first occurrence), or None."""
    values = read_cookies(headers, name)
    return values[0] if values else None


def _attributes(config: SessionConfig, *, secure: bool) -> list[str]:
    samesite = config.cookie_samesite.capitalize()
    attrs = [f"Path={config.cookie_path}"]
    if config.cookie_domain:
        attrs.append(f"Domain={config.cookie_domain}")
    attrs += ["HttpOnly", f"SameSite={samesite}"]
    # Browsers drop SameSite=None cookies that are not Secure.
    if secure or samesite == "None":
        attrs.append("Secure")
    return attrs


def set_cookie_header(config: SessionConfig, value: str, *, secure: bool) -> tuple[bytes, bytes]:
    """The ``Set-Cookie`` header carrying ``value`` (Max-Age = session_ttl when > 0)."""
    if config.cookie_name is None:
        raise ConfigurationError("ai_session.cookie_name: cookies are disabled")
    parts = [f"{config.cookie_name}={value}"]
    if config.session_ttl > 0:
        parts.append(f"Max-Age={config.session_ttl}")
    parts += _attributes(config, secure=secure)
    return b"set-cookie", "; ".join(parts).encode("latin-1")


def delete_cookie_header(config: SessionConfig, *, secure: bool) -> tuple[bytes, bytes]:
    """A ``Set-Cookie`` header that removes the session cookie."""
    if config.cookie_name is None:
        raise ConfigurationError("ai_session.cookie_name: cookies are disabled")
    parts = [f'{config.cookie_name}=""', "Max-Age=0", "Expires=Thu, 01 Jan 1970 00:00:00 GMT"]
    parts += _attributes(config, secure=secure)
    return b"set-cookie", "; ".join(parts).encode("latin-1")
