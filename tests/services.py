"""Reaching the real Redis and PostgreSQL servers from tests.

Outside CI a missing server skips the tests that need it; with ``CI=true`` it fails
them, so a green CI always means the real servers were exercised.
"""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlsplit

import pytest

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
MARIADB_URL = os.environ.get("TEST_MARIADB_URL", "mysql+asyncmy://root@127.0.0.1:3306/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def require_server(name: str, host: str, port: int) -> None:
    """Skip (or, in CI, fail) the calling test when ``host:port`` does not answer."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if IN_CI:
        pytest.fail(message + " (CI=true: tests of real backends must not skip)")
    pytest.skip(message)


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def require_redis() -> None:
    """Redis at ``TEST_REDIS_URL`` (default 127.0.0.1:6379)."""
    require_server("Redis", *_host_port(REDIS_URL, 6379))


def require_postgres() -> None:
    """PostgreSQL at ``TEST_POSTGRES_URL`` (default 127.0.0.1:5432)."""
    require_server("PostgreSQL", *_host_port(POSTGRES_URL, 5432))


def require_mariadb() -> None:
    """MariaDB at ``TEST_MARIADB_URL`` (default 127.0.0.1:3306)."""
    require_server("MariaDB", *_host_port(MARIADB_URL, 3306))


async def drop_redis_keys(client: Any, prefix: str) -> None:
    """Delete every key under ``prefix`` (a test's own namespace) through ``client``."""
    keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
