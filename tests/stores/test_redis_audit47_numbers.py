"""A Redis header whose count holds a character ``str.isdigit`` takes for a digit (``²``)
raised a bare ``ValueError`` from ``int()`` and broke the user's whole listing; a negative
``total_cost`` read as healthy where the SQL stores refuse it (a regression audit)."""

from __future__ import annotations

import pytest

from lexigram.ai.session.exceptions import CorruptRecordError
from lexigram.ai.session.manager.core import SessionManagerImpl
from lexigram.ai.session.stores.cache import CacheSessionStore

from .backends.redis import SPECS


@pytest.mark.parametrize(("field", "value"), [("tt", "²"), ("n", "²"), ("tc", "-5")])
@pytest.mark.parametrize(
    "spec", [pytest.param(s, id=s.name, marks=s.marks) for s in SPECS if "enc" not in s.name]
)
async def test_a_damaged_number_is_a_damaged_record_not_a_crash(
    spec: object, field: str, value: str
) -> None:
    async with spec.open() as factory:  # type: ignore[attr-defined]
        store = await factory()
        assert isinstance(store, CacheSessionStore)
        manager = SessionManagerImpl(store, {"auto_checkpoint_interval": None})
        healthy = (await manager.create("ula")).session_id
        damaged = (await manager.create("ula")).session_id
        await store.client.hset(store.keys.header(damaged), field, value)
        with pytest.raises(CorruptRecordError):
            await manager.get_state(damaged)
        page = await manager.list_sessions("ula")
        assert [s.session_id for s in page.items] == [healthy]
        assert page.damaged == [damaged]
