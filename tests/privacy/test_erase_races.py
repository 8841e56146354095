"""Erasing a user while another process creates a session for them, on every backend.

``erase_user`` lists the user's sessions, erases each, then forgets what the store keeps
about the user (indexes, counters). A session created for the user by another process
after the last listing, before the forgetting, is not erased, and must stay whole:
listed, counted against the per-user cap, readable. On Redis the forgetting used to
delete the user's index keys whatever they held, so such a session vanished from
listings and from the cap.
"""

from __future__ import annotations

import pytest

from lexigram.ai.session.exceptions import SessionCapacityError
from lexigram.ai.session.stores.base import SessionStore

from ..stores.backends import BackendSpec, all_specs
from .helpers import header

SPECS = [pytest.param(spec, id=spec.name, marks=spec.marks) for spec in all_specs()]


@pytest.mark.parametrize("spec", SPECS)
async def test_a_session_created_during_the_erasure_stays_listed_counted_and_capped(
    spec: BackendSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with spec.open() as factory:
        eraser: SessionStore = await factory()
        other: SessionStore = await factory()
        await eraser.create_session(header("old-1", "ula"))
        await eraser.create_session(header("old-2", "ula"))
        # The backend's own forget_user (an encrypting store erases through its inner store).
        backend = type(getattr(eraser, "inner", eraser))
        forget = backend.forget_user

        async def create_then_forget(self: SessionStore, user_id: str, ids: list[str]) -> None:
            # Another process creates a session for the user after the last listing.
            await other.create_session(header("new-1", "ula"), max_live_per_user=2)
            await forget(self, user_id, ids)

        monkeypatch.setattr(backend, "forget_user", create_then_forget)
        erasure = await eraser.erase_user("ula")
        monkeypatch.undo()

        assert sorted(erasure.sessions) == ["old-1", "old-2"]
        for reader in (eraser, other):
            page = await reader.list_user_sessions("ula")
            assert [s.session_id for s in page.items] == ["new-1"]
            assert await reader.count_live_sessions("ula") == 1
            record = await reader.load_record("new-1")
            assert record is not None and record.state.user_id == "ula"
        await other.create_session(header("new-2", "ula"), max_live_per_user=2)
        with pytest.raises(SessionCapacityError):
            await other.create_session(header("new-3", "ula"), max_live_per_user=2)
        assert [s.session_id for s in (await eraser.list_user_sessions("ula")).items] == [
            "new-2",
            "new-1",
        ]
