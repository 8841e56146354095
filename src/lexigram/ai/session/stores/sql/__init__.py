"""The SQL session store: schema, statements, transaction runner and the store itself.

Import the store from :mod:`lexigram.ai.session.stores.database`.
"""

from __future__ import annotations

from lexigram.ai.session.stores.sql.schema import SCHEMA_VERSION, Schema
from lexigram.ai.session.stores.sql.store import DEFAULT_URL, DatabaseSessionStore
from lexigram.ai.session.stores.sql.urls import DatabaseURL, mask_url, normalise_url

__all__ = [
    "DEFAULT_URL",
    "SCHEMA_VERSION",
    "DatabaseSessionStore",
    "DatabaseURL",
    "Schema",
    "mask_url",
    "normalise_url",
]
