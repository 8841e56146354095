"""``ExplorerSettings``: where the explorer listens, who may use it, whether it may write."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from lexigram.ai.session.exceptions import SessionValidationError

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "MIN_TOKEN_LENGTH",
    "TOKEN_ENV",
    "ExplorerSettings",
    "is_loopback_address",
]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MIN_TOKEN_LENGTH = 12
TOKEN_ENV = "AI_SESSION_EXPLORER_TOKEN"
"""Environment variable read for the token when ``--token`` is not given."""

_LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


def is_loopback_address(host: str | None) -> bool:
    """Whether ``host`` (an IP address or ``localhost``) is this machine's loopback."""
    if not host:
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise SessionValidationError(name, f"must be an integer in {low}..{high}, got {value!r}")
    return value


@dataclass(frozen=True)
class ExplorerSettings:
    """How the explorer runs.

    * ``host``/``port`` — the bind address (loopback by default). Any other host
      requires ``token``.
    * ``token`` — when set, every request must carry it (``Authorization: Bearer``,
      ``X-Explorer-Token``, or the cookie set by opening a page with ``?token=``).
    * ``allow_writes`` — enables close, restore and fork (each behind a confirmation).
    * ``page_size`` / ``turns_per_page`` — rows of the session list / turns of a
      transcript page.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    allow_writes: bool = False
    page_size: int = 50
    turns_per_page: int = 200

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host.strip():
            raise SessionValidationError("host", "must be a non-empty host name or address")
        _check_int("port", self.port, 1, 65535)
        _check_int("page_size", self.page_size, 1, 1000)
        _check_int("turns_per_page", self.turns_per_page, 1, 5000)
        if self.token is not None:
            if not isinstance(self.token, str) or len(self.token) < MIN_TOKEN_LENGTH:
                raise SessionValidationError(
                    "token", f"must be a string of at least {MIN_TOKEN_LENGTH} characters"
                )
            if any(ord(c) < 33 or ord(c) == 127 for c in self.token):
                raise SessionValidationError(
                    "token", "must not contain spaces or control characters"
                )
        if not self.loopback and self.token is None:
            raise SessionValidationError(
                "token",
                f"host {self.host!r} is not a loopback address: an access token is required "
                f"(--token or {TOKEN_ENV}; e.g. python -c \"import secrets; "
                "print(secrets.token_urlsafe(24))\")",
            )

    @property
    def loopback(self) -> bool:
        """Whether the explorer is bound to a loopback address (then only local clients)."""
        return is_loopback_address(self.host)

    @classmethod
    def from_options(
        cls,
        *,
        host: str | None = None,
        port: int | None = None,
        token: str | None = None,
        allow_writes: bool = False,
    ) -> ExplorerSettings:
        """Settings from command-line options (token default: ``$AI_SESSION_EXPLORER_TOKEN``)."""
        chosen = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
        return cls(
            host=host or DEFAULT_HOST,
            port=DEFAULT_PORT if port is None else port,
            token=chosen,
            allow_writes=allow_writes,
        )
