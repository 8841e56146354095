"""Every backend again, behind ``EncryptedSessionStore`` (encryption at rest on).

The specs are named ``<backend>+enc``; the store factory wraps each store the plain
spec makes in an encrypting store over one keyring shared by the whole test (so two
instances read each other's sessions, as two processes configured alike do).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from lexigram.ai.session.encryption.keyring import Keyring, new_key_text, parse_keys
from lexigram.ai.session.stores.base import SessionStore
from lexigram.ai.session.stores.encrypted.store import EncryptedSessionStore

from . import BackendSpec, StoreFactory
from .memory import SPECS as MEMORY
from .redis import SPECS as REDIS
from .sql import SPECS as SQL


def _encrypted(
    plain: Callable[[], AbstractAsyncContextManager[StoreFactory]],
) -> Callable[[], AbstractAsyncContextManager[StoreFactory]]:
    @asynccontextmanager
    async def open_() -> AsyncIterator[StoreFactory]:
        keyring = Keyring(parse_keys(new_key_text("test-key")))
        async with plain() as make_plain:

            async def make() -> SessionStore:
                return EncryptedSessionStore(await make_plain(), keyring)

            yield make

    return open_


def _corrupt_inner(spec: BackendSpec) -> object:
    corrupt = spec.corrupt
    if corrupt is None:
        return None

    async def damage(store: SessionStore, session_id: str) -> None:
        inner = store.inner if isinstance(store, EncryptedSessionStore) else store
        await corrupt(inner, session_id)

    return damage


SPECS = [
    BackendSpec(
        name=f"{spec.name}+enc",
        open=_encrypted(spec.open),
        marks=spec.marks,
        corrupt=_corrupt_inner(spec),  # type: ignore[arg-type]
        extra=dict(spec.extra),
    )
    for spec in (*MEMORY, *SQL, *REDIS)
]
