"""The ``lexigram db setup`` contribution: create the session tables.

The framework CLI calls :func:`ensure_schema` with its own database provider. The
session store keeps its own SQLAlchemy engine on ``ai_session.database_url``
(from ``application.yaml`` / ``LEX_AI_SESSION__DATABASE_URL``), so the tables are
created there, where the store will look for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lexigram.contracts.cli.contributions import SchemaSetupOutcome, SchemaSetupResult

from lexigram.ai.session.backends import find_backend
from lexigram.ai.session.config import SessionConfig

if TYPE_CHECKING:
    from lexigram.ai.session.stores.database import DatabaseSessionStore

__all__ = ["ensure_schema", "schema_present", "tables_present"]


async def schema_present(config: SessionConfig) -> bool:
    """Whether the session tables of ``config.table_prefix`` exist at ``database_url``."""
    from lexigram.ai.session.stores.database import DatabaseSessionStore

    store = DatabaseSessionStore(
        config.database_url, table_prefix=config.table_prefix, pool_size=1
    )
    try:
        return await tables_present(store)
    finally:
        await store.close()


async def tables_present(store: DatabaseSessionStore) -> bool:
    """Whether ``store``'s session tables exist (read without creating anything)."""
    from lexigram.ai.session.stores.sql.schema import current_version

    async with store.engine.connect() as conn:
        version = await conn.run_sync(lambda c: current_version(c, store.schema))
    return version is not None


async def ensure_schema(
    db: Any = None, *, config: SessionConfig | None = None
) -> SchemaSetupOutcome:
    """Create (or upgrade) the session tables; ``db`` (the CLI's provider) is not used."""
    del db
    try:
        config = config or SessionConfig.from_env_profile()
        backend = find_backend(config.backend)
        if backend is None or backend.name != "sql":
            ready = await backend.setup(config) if backend is not None else "nothing to create"
            return SchemaSetupOutcome(
                status=SchemaSetupResult.ALREADY_PRESENT,
                message=f"ai_session.backend is {config.backend!r}: {ready}",
            )
        existed = await schema_present(config)
        await backend.setup(config)
    except Exception as exc:
        return SchemaSetupOutcome(status=SchemaSetupResult.FAILED, message=str(exc))
    if existed:
        return SchemaSetupOutcome(
            status=SchemaSetupResult.ALREADY_PRESENT,
            message=f"tables {config.table_prefix}* present (upgraded in place if needed)",
        )
    return SchemaSetupOutcome(
        status=SchemaSetupResult.CREATED, message=f"tables {config.table_prefix}* created"
    )
