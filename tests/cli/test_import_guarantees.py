"""``import`` is all or nothing and never touches what it was not given, on every backend.

Each test imports into a real store (in-memory, SQLite, PostgreSQL, Redis) through
:func:`import_document`, the function behind ``import``, and asserts what is stored
afterwards.
"""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lexigram.ai.session import SessionManagerImpl
from lexigram.ai.session.cli.importing import ImportStopped, import_document
from lexigram.ai.session.cli.transfer import dump_document, session_to_dict
from lexigram.ai.session.exceptions import (
    SessionValidationError,
    StoreUnavailableError,
    WriteOutcomeUnknownError,
)
from lexigram.ai.session.stores.base import SessionStore
from tests.stores.backends import BackendSpec, all_specs

SPECS = [s for s in all_specs() if s.name != "redis_cluster"]


@pytest.fixture(params=[pytest.param(s, id=s.name, marks=s.marks) for s in SPECS])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    spec: BackendSpec = request.param
    async with spec.open() as factory:
        yield await factory()


def _manager(store: SessionStore) -> SessionManagerImpl:
    return SessionManagerImpl(store, {"auto_checkpoint_interval": None, "session_ttl": 0})


async def _seed(store: SessionStore, user: str = "alice") -> tuple[str, str]:
    """A session with two turns, a checkpoint after them and a third turn."""
    manager = _manager(store)
    state = await manager.create(user, {"topic": "travel"})
    await manager.add_message(state.session_id, "user", "Weather in Paris?", tokens_used=5)
    await manager.add_message(state.session_id, "assistant", "Sunny.", tokens_used=7, cost=0.5)
    checkpoint = await manager.checkpoint(state.session_id, {"label": "two"})
    await manager.add_message(state.session_id, "user", "And tomorrow?", tokens_used=3)
    return state.session_id, checkpoint.checkpoint_id


async def _document(store: SessionStore, *session_ids: str) -> dict[str, Any]:
    entries = []
    for sid in session_ids:
        state = await store.load(sid)
        assert state is not None
        entries.append(session_to_dict(state, await store.list_checkpoints(sid)))
    doc: dict[str, Any] = json.loads(dump_document(entries))
    return doc


def _raw(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def _renamed(doc: dict[str, Any], new_id: str) -> dict[str, Any]:
    """The document with its (only) session under ``new_id``, checkpoints included."""
    clone = copy.deepcopy(doc)
    entry = clone["sessions"][0]
    entry["header"]["session_id"] = new_id
    for cp in entry["checkpoints"]:
        cp["header"]["session_id"] = new_id
    return clone


async def _snapshot(store: SessionStore, sid: str) -> tuple[Any, ...]:
    state = await store.load(sid)
    assert state is not None
    cps = await store.list_checkpoints(sid)
    return (
        [(t.turn_id, t.content) for t in state.turns],
        state.metadata,
        state.total_tokens,
        sorted((c.checkpoint_id, len(c.state.turns)) for c in cps),
    )


async def test_replace_with_a_repeated_turn_id_leaves_the_session_as_it_was(
    store: SessionStore,
) -> None:
    sid, _ = await _seed(store)
    before = await _snapshot(store, sid)
    doc = await _document(store, sid)
    turns = doc["sessions"][0]["turns"]
    turns[1]["turn_id"] = turns[0]["turn_id"]
    turns[1]["content"] = "changed"
    with pytest.raises(SessionValidationError) as caught:
        await import_document(store, _raw(doc), replace_existing=True)
    assert caught.value.field == "sessions[0].turns[1].turn_id"
    assert await _snapshot(store, sid) == before


@pytest.mark.parametrize(
    ("damage", "field"),
    [
        (lambda t: t.update(tokens_used=2**53), "sessions[1].turns[0].tokens_used"),
        (lambda t: t.update(tokens_used="5"), "sessions[1].turns[0].tokens_used"),
        (lambda t: t.update(tokens_used=True), "sessions[1].turns[0].tokens_used"),
        (lambda t: t.update(cost=-1), "sessions[1].turns[0].cost"),
        (lambda t: t.update(content="\ud800"), "sessions[1].turns[0].content"),
        (lambda t: t.update(colour="red"), "sessions[1].turns[0].colour"),
        (lambda t: t.update(turn_id="x" * 1000), "sessions[1].turns[0].turn_id"),
        (lambda t: t["metadata"].update(big=2**70), "sessions[1].turns[0].metadata.big"),
    ],
)
async def test_one_invalid_session_means_nothing_is_written(
    store: SessionStore, damage: Any, field: str
) -> None:
    source = _manager(store)
    first = await source.create("alice")
    await source.add_message(first.session_id, "user", "hello")
    second = await source.create("bob")
    await source.add_message(second.session_id, "user", "hi", metadata={"k": 1})
    doc = await _document(store, first.session_id, second.session_id)
    await store.delete(first.session_id)
    await store.delete(second.session_id)
    damage(doc["sessions"][1]["turns"][0])
    with pytest.raises(SessionValidationError) as caught:
        await import_document(store, _raw(doc))
    assert caught.value.field == field
    assert await store.load_record(first.session_id) is None
    assert await store.load_record(second.session_id) is None


@pytest.mark.parametrize(
    ("place", "value"),
    [
        ("header.updated_at", "9999-12-31T00:00:00+00:00"),
        ("header.created_at", "1969-12-31T23:59:59+00:00"),
        ("header.updated_at", "1969-12-31T23:59:59+00:00"),
        ("header.created_at", "9999-12-31T23:30:00-05:00"),  # past 9999 in UTC
        ("header.created_at", "0001-01-01T00:00:00+05:00"),  # before year 1 in UTC
    ],
)
async def test_an_instant_a_backend_cannot_store_is_refused_before_anything_is_written(
    store: SessionStore, place: str, value: str
) -> None:
    """Year 9999 under a TTL (every backend) and before 1970 (Redis) passed validation,
    then the import stopped half-written with a message naming no field (an outside
    audit). Year 9000 without a deadline problem is stored and imported as any time."""
    source = _manager(store)
    first = await source.create("alice")
    second = await source.create("bob")
    doc = await _document(store, first.session_id, second.session_id)
    await store.delete(first.session_id)
    await store.delete(second.session_id)
    part, name = place.split(".")
    doc["sessions"][1][part][name] = value
    store.session_ttl = 86_400  # the deadline of year 9999 + a day is what cannot be stored
    with pytest.raises(SessionValidationError) as caught:
        await import_document(store, _raw(doc))
    assert caught.value.field == f"sessions[1].{place}"
    assert await store.load_record(first.session_id) is None
    assert await store.load_record(second.session_id) is None


async def test_a_far_future_time_whose_deadline_fits_is_imported(store: SessionStore) -> None:
    """A session stamped 9000-01-01 is stored and exported by every backend: its import
    was refused (a regression audit)."""
    source = _manager(store)
    first = await source.create("alice")
    doc = await _document(store, first.session_id)
    await store.delete(first.session_id)
    doc["sessions"][0]["header"]["created_at"] = "9000-01-01T00:00:00+00:00"
    doc["sessions"][0]["header"]["updated_at"] = "9000-01-01T00:00:00+00:00"
    store.session_ttl = 86_400
    report = await import_document(store, _raw(doc))
    assert report.imported == [first.session_id]


async def test_a_recently_purged_id_is_refused_before_anything_is_written(
    store: SessionStore,
) -> None:
    # Before: the tombstone was met only when its create ran, after the sessions
    # before it in the document were stored, and the error said "already exists".
    source = _manager(store)
    first = await source.create("alice")
    await source.add_message(first.session_id, "user", "hello")
    second = await source.create("bob")
    await source.add_message(second.session_id, "user", "hi")
    doc = await _document(store, first.session_id, second.session_id)
    await store.delete(first.session_id)
    await source.close(second.session_id)
    until = datetime.now(UTC) + timedelta(hours=1)
    assert await store.purge(second.session_id, tombstone_until=until)
    with pytest.raises(SessionValidationError, match="purged recently") as caught:
        await import_document(store, _raw(doc))
    assert caught.value.field == "sessions[1].session_id"
    assert await store.load_record(first.session_id) is None
    assert await store.load_record(second.session_id) is None


async def test_a_copy_under_a_new_id_may_not_take_the_source_checkpoints(
    store: SessionStore,
) -> None:
    sid, cp = await _seed(store)
    before = await _snapshot(store, sid)
    doc = _renamed(await _document(store, sid), "copy-1")
    with pytest.raises(SessionValidationError) as caught:
        await import_document(store, _raw(doc))
    assert caught.value.field == "sessions[0].header.checkpoint_id"
    assert "belongs to session" in caught.value.problem
    assert await store.load_record("copy-1") is None
    found = await store.load_checkpoint(cp)
    assert found is not None and found.session_id == sid
    assert await _snapshot(store, sid) == before


async def test_new_checkpoint_ids_copy_a_session_and_the_source_restores_itself(
    store: SessionStore,
) -> None:
    sid, cp = await _seed(store)
    doc = _renamed(await _document(store, sid), "copy-2")
    report = await import_document(store, _raw(doc), new_checkpoint_ids=True)
    assert report.imported == ["copy-2"] and report.checkpoints == 1
    copies = await store.list_checkpoints("copy-2")
    assert len(copies) == 1 and copies[0].checkpoint_id != cp
    copy_state = await store.load("copy-2")
    assert copy_state is not None and copy_state.checkpoint_id == copies[0].checkpoint_id
    # the source's checkpoint still restores the source, the copy's the copy
    restored = await _manager(store).restore(cp)
    assert restored.session_id == sid and len(restored.turns) == 2
    restored_copy = await _manager(store).restore(copies[0].checkpoint_id)
    assert restored_copy.session_id == "copy-2"
    assert [t.content for t in restored_copy.turns] == ["Weather in Paris?", "Sunny."]
    source = await store.load(sid)
    assert source is not None and len(source.turns) == 2


async def test_replace_swaps_header_and_turns_and_keeps_checkpoints_it_was_not_given(
    store: SessionStore,
) -> None:
    sid, cp = await _seed(store)
    doc = await _document(store, sid)
    entry = doc["sessions"][0]
    entry["checkpoints"] = []
    entry["header"]["checkpoint_id"] = None
    entry["header"]["metadata"] = {"topic": "food"}
    entry["header"]["total_tokens"] = 999  # counters are recomputed from the turns
    entry["turns"] = entry["turns"][:1]
    report = await import_document(store, _raw(doc), replace_existing=True)
    assert report.replaced == [sid]
    state = await store.load(sid)
    assert state is not None
    assert [t.content for t in state.turns] == ["Weather in Paris?"]
    assert state.metadata == {"topic": "food"}
    assert (state.turn_count, state.total_tokens) == (1, 5)
    # the checkpoint the document did not carry is still there and restorable
    restored = await _manager(store).restore(cp)
    assert [t.content for t in restored.turns] == ["Weather in Paris?", "Sunny."]


async def test_without_replace_an_existing_session_is_skipped_untouched(
    store: SessionStore,
) -> None:
    sid, _ = await _seed(store)
    before = await _snapshot(store, sid)
    doc = await _document(store, sid)
    doc["sessions"][0]["turns"][0]["content"] = "changed"
    report = await import_document(store, _raw(doc))
    assert report.skipped == [sid] and report.imported == []
    assert await _snapshot(store, sid) == before


class _FailingCheckpoints:
    """A real store whose ``save_checkpoint`` fails from the ``fail_at``-th call on."""

    def __init__(self, store: SessionStore, fail_at: int) -> None:
        self._store = store
        self._calls = 0
        self._fail_at = fail_at

    async def save_checkpoint(self, checkpoint: Any) -> None:
        self._calls += 1
        if self._calls >= self._fail_at:
            raise StoreUnavailableError("connection lost (injected)")
        await self._store.save_checkpoint(checkpoint)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def test_a_new_session_whose_checkpoints_fail_is_not_left_half_written(
    store: SessionStore,
) -> None:
    manager = _manager(store)
    first = await manager.create("alice")
    await manager.checkpoint(first.session_id)
    sid, _ = await _seed(store, "bob")
    await manager.checkpoint(sid)
    doc = await _document(store, first.session_id, sid)
    await store.delete(first.session_id)
    await store.delete(sid)
    failing: Any = _FailingCheckpoints(store, fail_at=2)
    with pytest.raises(ImportStopped) as caught:
        await import_document(failing, _raw(doc))
    assert caught.value.session_id == sid
    assert caught.value.report.imported == [first.session_id]
    assert await store.load_record(first.session_id) is not None
    assert len(await store.list_checkpoints(first.session_id)) == 1
    assert await store.load_record(sid) is None
    assert await store.list_checkpoints(sid) == []


async def test_a_replace_whose_checkpoints_fail_keeps_the_old_header_and_turns(
    store: SessionStore,
) -> None:
    sid, _ = await _seed(store)
    await _manager(store).checkpoint(sid)
    state = await store.load(sid)
    assert state is not None
    doc = await _document(store, sid)
    doc["sessions"][0]["turns"] = []
    failing: Any = _FailingCheckpoints(store, fail_at=2)
    with pytest.raises(ImportStopped):
        await import_document(failing, _raw(doc), replace_existing=True)
    after = await store.load(sid)
    assert after is not None and [t.turn_id for t in after.turns] == [
        t.turn_id for t in state.turns
    ]
    assert len(await store.list_checkpoints(sid)) == 2


def _two_with_checkpoints(doc: dict[str, Any]) -> None:
    """Make the second session's checkpoint reuse the first session's checkpoint id."""
    first, second = doc["sessions"]
    second["checkpoints"][0]["checkpoint_id"] = first["checkpoints"][0]["checkpoint_id"]


def _foreign_parent(doc: dict[str, Any]) -> None:
    first, second = doc["sessions"]
    second["checkpoints"][0]["parent_checkpoint_id"] = first["checkpoints"][0]["checkpoint_id"]


@pytest.mark.parametrize(
    ("damage", "field"),
    [
        (_two_with_checkpoints, "sessions[1].checkpoints[0].checkpoint_id"),
        (_foreign_parent, "sessions[1].checkpoints[0].parent_checkpoint_id"),
        (lambda d: d.update(extra=1), "extra"),
        (lambda d: d.update(version=0), "version"),
        (lambda d: d.update(exported_at=5), "exported_at"),
        (lambda d: d["sessions"][0]["header"].update(total_cost=float("nan")),
         "sessions[0].header.total_cost"),
        (lambda d: d["sessions"][0]["header"].update(status="paused"),
         "sessions[0].header.status"),
        (lambda d: d["sessions"][0]["header"].update(user_id="bob\x00"),
         "sessions[0].header.user_id"),
        (lambda d: d["sessions"][0]["checkpoints"][0]["header"].update(session_id="other"),
         "sessions[0].checkpoints[0].header.session_id"),
        (lambda d: d["sessions"][0]["checkpoints"][0]["turns"].append(
            d["sessions"][0]["checkpoints"][0]["turns"][0]),
         "sessions[0].checkpoints[0].turns[2].turn_id"),
    ],
)
async def test_document_level_mistakes_are_named_and_nothing_is_written(
    damage: Any, field: str
) -> None:
    from lexigram.ai.session.stores.in_memory import InMemorySessionStore

    source = InMemorySessionStore()
    first, _ = await _seed(source, "alice")
    second, _ = await _seed(source, "bob")
    doc = await _document(source, first, second)
    damage(doc)
    target = InMemorySessionStore()
    with pytest.raises(SessionValidationError) as caught:
        await import_document(target, _raw(doc))
    assert caught.value.field == field
    assert await target.load_record(first) is None and await target.load_record(second) is None


@pytest.mark.parametrize(
    ("tail", "field"),
    [
        (', "sessions": []}', "sessions"),  # the last "sessions" won: nothing imported, exit 0
        (None, "sessions[1].turns[0].content"),
    ],
)
async def test_a_repeated_key_is_refused_naming_its_place(
    tail: str | None, field: str
) -> None:
    # Before: JSON's last-one-wins kept the second value silently.
    from lexigram.ai.session.stores.in_memory import InMemorySessionStore

    source = InMemorySessionStore()
    first, _ = await _seed(source, "alice")
    second, _ = await _seed(source, "bob")
    text = json.dumps(await _document(source, first, second))
    if tail is not None:
        text = text[:-1] + tail
    else:  # the second session's first turn says its content twice
        at = text.index('"content"', text.index('"bob"'))
        text = text[:at] + '"content": "x", ' + text[at:]
    target = InMemorySessionStore()
    with pytest.raises(SessionValidationError, match="appears twice") as caught:
        await import_document(target, text.encode())
    assert caught.value.field == field
    assert await target.load_record(first) is None and await target.load_record(second) is None


class _UnconfirmedSave:
    """A real store whose ``save`` is applied but its confirmation lost."""

    def __init__(self, store: SessionStore) -> None:
        self._store = store

    async def save(self, state: Any) -> None:
        await self._store.save(state)
        raise WriteOutcomeUnknownError("reply lost (injected)")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def test_an_unconfirmed_replace_is_reported_as_such_and_is_never_a_mix(
    store: SessionStore,
) -> None:
    sid, _ = await _seed(store)
    doc = await _document(store, sid)
    doc["sessions"][0]["turns"] = doc["sessions"][0]["turns"][:1]
    wrapped: Any = _UnconfirmedSave(store)
    with pytest.raises(ImportStopped) as caught:
        await import_document(wrapped, _raw(doc), replace_existing=True)
    assert caught.value.outcome_unknown and caught.value.session_id == sid
    state = await store.load(sid)
    assert state is not None and [t.content for t in state.turns] == ["Weather in Paris?"]
    assert (state.turn_count, state.total_tokens) == (1, 5)


async def test_replace_never_makes_an_ended_session_live_again(store: SessionStore) -> None:
    """A live copy of a session closed since is refused before anything is written."""
    sid, _ = await _seed(store)
    doc = await _document(store, sid)  # taken while the session was active
    doc["sessions"][0]["checkpoints"][0]["checkpoint_id"] = "cp-new-in-doc"
    await _manager(store).close(sid)
    before = await _snapshot(store, sid)
    with pytest.raises(SessionValidationError) as info:
        await import_document(store, _raw(doc), replace_existing=True)
    assert info.value.field == "sessions[0].status" and "closed" in str(info.value)
    assert await _snapshot(store, sid) == before


async def test_a_create_cancelled_after_it_was_stored_leaves_nothing_and_a_rerun_finishes(
) -> None:
    """SQLite may commit a create whose caller was cancelled: the session was left without
    its checkpoints and the re-run skipped it as present (an outside audit)."""
    import asyncio

    from lexigram.contracts.ai.session import SessionState

    from lexigram.ai.session import InMemorySessionStore

    class CancelledAfterCommit(InMemorySessionStore):
        """The real in-memory store; the first create is cancelled once it is stored."""

        armed = True

        async def create_session(self, state: SessionState, **kwargs: Any) -> Any:
            result = await super().create_session(state, **kwargs)
            if self.armed:
                self.armed = False
                raise asyncio.CancelledError
            return result

    source = InMemorySessionStore()
    sid, checkpoint_id = await _seed(source)
    raw = json.dumps(await _document(source, sid))
    target = CancelledAfterCommit()
    with pytest.raises(asyncio.CancelledError):
        await import_document(target, raw)
    assert await target.load_record(sid) is None
    report = await import_document(target, raw)
    assert report.imported == [sid]
    assert [c.checkpoint_id for c in await target.list_checkpoint_headers(sid)] == [checkpoint_id]


async def test_a_turn_time_of_year_one_round_trips(store: SessionStore) -> None:
    """A turn stamped 0001-01-01+05:00 is stored by every backend: the reader refused it
    as "past year 9999" (a regression audit)."""
    from datetime import datetime, timedelta, timezone

    from lexigram.contracts.ai.session import SessionTurn

    source = _manager(store)
    first = await source.create("alice")
    stamp = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=5)))
    await source.add_turn(
        first.session_id, SessionTurn(turn_id="t", role="user", content="x", timestamp=stamp)
    )
    doc = await _document(store, first.session_id)
    await store.delete(first.session_id)
    report = await import_document(store, _raw(doc))
    assert report.imported == [first.session_id]
