"""The built-in backends as :class:`~lexigram.ai.session.backends.SessionBackend` objects.

``memory`` (:class:`InMemorySessionStore`), ``sql`` (:class:`DatabaseSessionStore`:
SQLite, PostgreSQL, MariaDB) and ``redis`` (:class:`CacheSessionStore`). Each imports its
store (and driver) only when it builds one, so finding a backend by name costs nothing,
and a missing driver is one ``ConfigurationError`` with the ``pip install`` line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lexigram.contracts.exceptions.config import ConfigurationError

from lexigram.ai.session.config_urls import database_url_problem, redis_url_problem
from lexigram.ai.session.redaction import redact_text, redact_url
from lexigram.ai.session.stores.registry import build_store

if TYPE_CHECKING:
    from lexigram.ai.session.stores.base import SessionStore

__all__ = ["MEMORY", "REDIS", "SQL", "MemoryBackend", "RedisBackend", "SqlBackend"]


class MemoryBackend:
    """``memory``: a dict in this process; nothing survives a restart."""

    name = "memory"
    url_field: str | None = None
    persistent = False

    def url_problem(self, url: str) -> str | None:
        """No URL: always None."""
        return None

    def from_config(self, config: Any) -> SessionStore:
        """An :class:`InMemorySessionStore` with the config's TTL."""
        from lexigram.ai.session.stores.in_memory import InMemorySessionStore

        return InMemorySessionStore(session_ttl=config.session_ttl)

    async def setup(self, config: Any) -> str:
        """Nothing to create."""
        return "backend 'memory' ready (nothing to create; nothing is kept between runs)"


class SqlBackend:
    """``sql``: SQLite, PostgreSQL or MariaDB at ``database_url``."""

    name = "sql"
    url_field: str | None = "database_url"
    persistent = True

    def url_problem(self, url: str) -> str | None:
        """The SQL URL rules (schemes, host, database)."""
        return database_url_problem(url)

    def from_config(self, config: Any) -> SessionStore:
        """A :class:`DatabaseSessionStore` (``database_url``, ``table_prefix``, ...)."""

        def build() -> SessionStore:
            from sqlalchemy.exc import ArgumentError

            from lexigram.ai.session.stores.database import DatabaseSessionStore

            try:
                return DatabaseSessionStore.from_config(config)
            except ArgumentError as exc:  # a URL SQLAlchemy's dialect refuses
                reason = redact_text(str(exc), [config.database_url])
                error = ConfigurationError(
                    f"ai_session.database_url: {redact_url(config.database_url)}: {reason}"
                )
            raise error  # outside the handler: no SQLAlchemy traceback chained to it

        return build_store("database_url", build)

    async def setup(self, config: Any) -> str:
        """Create (or upgrade in place) the tables of ``table_prefix``."""
        store = self.from_config(config)
        try:
            await store.initialize()
        finally:
            await store.close()
        return f"tables {config.table_prefix}* ready at {redact_url(config.database_url)}"


class RedisBackend:
    """``redis``: Redis or Redis Cluster at ``redis_url``."""

    name = "redis"
    url_field: str | None = "redis_url"
    persistent = True

    def url_problem(self, url: str) -> str | None:
        """The Redis URL rules (scheme, host, db number)."""
        found = redis_url_problem(url, cluster=False)
        return None if found is None else found[1]

    def from_config(self, config: Any) -> SessionStore:
        """A :class:`CacheSessionStore` (``redis_url``, ``key_prefix``, ...)."""

        def build() -> SessionStore:
            from lexigram.ai.session.stores.cache import CacheSessionStore

            return CacheSessionStore.from_config(config)

        return build_store("redis_url", build)

    async def setup(self, config: Any) -> str:
        """Check that Redis answers (there is no schema to create)."""
        store = self.from_config(config)
        try:
            await store.initialize()
            await store.ping()
        finally:
            await store.close()
        return f"Redis at {redact_url(config.redis_url)} ready (no schema to create)"


MEMORY = MemoryBackend()
SQL = SqlBackend()
REDIS = RedisBackend()
