"""A whole state whose deadline would pass year 9999 is refused naming ``state.updated_at``,
the same on every backend (an outside audit: memory and Redis raised a bare
``OverflowError``, the SQL stores a ``CorruptRecordError`` for a record never stored)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from lexigram.contracts.ai.session import SessionStatus

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.testing import make_state

from .backends import BackendSpec, all_specs


@pytest.mark.parametrize("spec", [pytest.param(s, id=s.name, marks=s.marks) for s in all_specs()])
async def test_a_saved_state_whose_deadline_passes_year_9999_is_refused(
    spec: BackendSpec,
) -> None:
    far = datetime(9999, 12, 31, tzinfo=UTC)
    async with spec.open() as factory:
        store = await factory()
        store.session_ttl = 86_400
        state = make_state(
            session_id="far-1", user_id="u", status=SessionStatus.ACTIVE,
            created_at=far, updated_at=far,
        )
        with pytest.raises(SessionValidationError) as info:
            await store.save(state)
        assert info.value.field == "state.updated_at"
        assert await store.load_record("far-1") is None
