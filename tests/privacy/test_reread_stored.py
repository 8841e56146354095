"""A re-read answered from the stored texts of the last ``load`` (``reread_stored``).

On the backends that show their stored texts (SQL and Redis, each on its real
server): an unchanged session is re-read without opening or decoding a sealed turn,
and any change made to a stored text after a read, by whatever writes to the
database, reads exactly as a first read does (or fails as one does).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from lexigram.contracts.ai.session import SessionState, SessionTurn
from sqlalchemy import text

from lexigram.ai.session.encryption.cipher import new_data_key
from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.stores.base import SessionStore, StoredTurns
from lexigram.ai.session.stores.cache import CacheSessionStore
from lexigram.ai.session.stores.codec import turns_from_texts
from lexigram.ai.session.stores.database import DatabaseSessionStore
from lexigram.ai.session.stores.encrypted import sealing
from lexigram.ai.session.stores.encrypted.opened import OpenedTurns
from lexigram.ai.session.stores.encrypted.reread_stored import (
    new_stored_run,
    stored_prefix,
    stored_tail,
)
from lexigram.ai.session.stores.encrypted.sealing import open_turns, seal_turn
from lexigram.ai.session.stores.encrypted.store import EncryptedSessionStore
from lexigram.ai.session.stores.sql.rows import encode_turn_json
from lexigram.ai.session.testing import make_state, make_turn
from lexigram.ai.session.validation import check_turns

from ..stores.backends import BackendSpec
from .helpers import PLAIN, keyring
from .helpers import mixed_turn as _turn

LONG = 300  # above gc_pause.MIN_PAUSE: the paused path too

#: The backends whose whole read shows its stored texts (all but the in-memory store).
SHOWING = [p for p in PLAIN if p.values[0].name != "in_memory"]


async def _session(store: EncryptedSessionStore, count: int, session_id: str = "rs") -> str:
    await store.create_session(make_state("erin", session_id=session_id))
    for start in range(0, count, 100):
        batch = [_turn(n) for n in range(start, min(count, start + 100))]
        await store.append_turns(session_id, batch)
    return session_id


async def _cold(store: EncryptedSessionStore, session_id: str) -> SessionState | None:
    """The session as a process reading it for the first time sees it."""
    cold = EncryptedSessionStore(store.inner, store.keyring, turn_cache_bytes=0)
    return await cold.load(session_id)


async def _read_until_kept(store: EncryptedSessionStore, session_id: str) -> SessionState:
    """Whole reads of the session until it has a stored run (its second read keeps one)."""
    first = await store.load(session_id)
    assert first is not None and store._opened.stored_run(session_id) is None
    assert await store.load(session_id) == first
    assert store._opened.stored_run(session_id) is not None
    return first


# ------------------------------------------------------- raw access to storage
def _live_rows(inner: DatabaseSessionStore) -> Any:
    return text(
        f"SELECT seq, data FROM {inner.table_prefix}turns WHERE session_id = :sid "
        "AND live = 1 ORDER BY seq"
    )


async def _stored_texts(inner: SessionStore, session_id: str) -> list[Any]:
    if isinstance(inner, DatabaseSessionStore):
        async with inner.engine.connect() as conn:
            rows = await conn.execute(_live_rows(inner), {"sid": session_id})
            return [r[1] for r in rows]
    assert isinstance(inner, CacheSessionStore)
    return list(await inner.client.lrange(inner.keys.turns(session_id), 0, -1))


async def _rewrite(inner: SessionStore, session_id: str, index: int, data: Any) -> None:
    """Replace the stored text of the ``index``-th live turn (what a stray writer does)."""
    if isinstance(inner, DatabaseSessionStore):
        async with inner.engine.begin() as conn:
            rows = await conn.execute(_live_rows(inner), {"sid": session_id})
            seq = [r[0] for r in rows][index]
            await conn.execute(
                text(
                    f"UPDATE {inner.table_prefix}turns SET data = :d WHERE session_id = :sid "
                    "AND seq = :seq"
                ),
                {"d": data, "sid": session_id, "seq": seq},
            )
        return
    assert isinstance(inner, CacheSessionStore)
    await inner.client.lset(inner.keys.turns(session_id), index, data)


async def _edited_after_a_read(
    store: EncryptedSessionStore, index: int, edit: Any
) -> str:
    """A session of 6 turns, read once; then ``edit`` applied to the stored JSON of one."""
    session_id = await _session(store, 6)
    await _read_until_kept(store, session_id)
    doc = orjson.loads((await _stored_texts(store.inner, session_id))[index])
    edit(doc)
    await _rewrite(store.inner, session_id, index, orjson.dumps(doc).decode())
    return session_id


def _as_text(data: Any) -> str:
    return data.decode() if isinstance(data, bytes) else str(data)


# ----------------------------------------------------------------------- tests
@pytest.mark.parametrize("spec", SHOWING)
@pytest.mark.parametrize("count", [7, LONG])
async def test_an_unchanged_session_is_reread_without_opening_a_turn(
    spec: BackendSpec, count: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with spec.open() as factory:
        store = EncryptedSessionStore(await factory(), keyring("k1"))
        assert store._reuse
        session_id = await _session(store, count)
        first = await _read_until_kept(store, session_id)

        def no_opening(*_args: Any, **_kw: Any) -> Any:
            raise AssertionError("a sealed turn was opened again")

        monkeypatch.setattr(sealing, "open_turns", no_opening)
        again = await store.load(session_id)
        monkeypatch.undo()
        assert again == first == await _cold(store, session_id)
        assert again is not None and again.turns[0] is not first.turns[0]
        assert again.turns[0].tool_calls is not first.turns[0].tool_calls


@pytest.mark.parametrize("spec", SHOWING)
async def test_turns_appended_elsewhere_are_opened_alone_and_the_run_grows(
    spec: BackendSpec,
) -> None:
    async with spec.open() as factory:  # two processes: a store each, one namespace
        reader = EncryptedSessionStore(await factory(), keyring("k1"))
        writer = EncryptedSessionStore(await factory(), reader.keyring)
        session_id = await _session(reader, LONG)
        await _read_until_kept(reader, session_id)
        await writer.append_turns(session_id, [_turn(n, "w") for n in range(LONG, LONG + 5)])
        again = await reader.load(session_id)
        assert again is not None and len(again.turns) == LONG + 5
        assert again == await _cold(reader, session_id)
        run = reader._opened.stored_run(session_id)
        assert run is not None and run.count == LONG + 5
        assert await reader.load(session_id) == again


@pytest.mark.parametrize("spec", SHOWING)
async def test_a_value_planted_in_clear_after_a_read_reads_as_on_a_first_read(
    spec: BackendSpec,
) -> None:
    async with spec.open() as factory:
        store = EncryptedSessionStore(await factory(), keyring("k1"))

        def plant(doc: dict[str, Any]) -> None:  # a text-only turn: empty containers
            doc["metadata"], doc["tool_calls"] = {"planted": True}, [{"name": "planted"}]

        session_id = await _edited_after_a_read(store, 1, plant)
        again = await store.load(session_id)
        assert again is not None and again == await _cold(store, session_id)
        assert again.turns[1].content == "text 1"
        assert again.turns[1].metadata == {} and again.turns[1].tool_calls == []


@pytest.mark.parametrize("spec", SHOWING)
async def test_a_sealed_text_changed_after_a_read_fails_as_on_a_first_read(
    spec: BackendSpec,
) -> None:
    async with spec.open() as factory:
        store = EncryptedSessionStore(await factory(), keyring("k1"))

        def tamper(doc: dict[str, Any]) -> None:  # one character of the sealed text
            sealed = doc["content"]
            doc["content"] = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]

        session_id = await _edited_after_a_read(store, 2, tamper)
        with pytest.raises(Exception) as first_read:
            await _cold(store, session_id)
        with pytest.raises(type(first_read.value)):
            await store.load(session_id)


@pytest.mark.parametrize("spec", SHOWING)
async def test_a_stored_text_moved_to_another_place_is_not_taken_for_the_turn(
    spec: BackendSpec,
) -> None:
    """Two stored turns swapped: same texts, other order; read as on a first read."""
    async with spec.open() as factory:
        store = EncryptedSessionStore(await factory(), keyring("k1"))
        session_id = await _session(store, 4)
        before = await _read_until_kept(store, session_id)
        stored = await _stored_texts(store.inner, session_id)
        await _rewrite(store.inner, session_id, 0, _as_text(stored[1]))
        await _rewrite(store.inner, session_id, 1, _as_text(stored[0]))
        again = await store.load(session_id)
        assert again is not None and before is not None
        assert [t.turn_id for t in again.turns] == ["t1", "t0", "t2", "t3"]
        assert again == await _cold(store, session_id)


# ------------------------------------------------------------------ the pieces
def _run_of(texts: list[str]) -> Any:
    turns = [make_turn(n, turn_id=f"t{n}") for n in range(len(texts))]
    return new_stored_run(b"k" * 32, StoredTurns(len(texts), texts=texts), turns)


def test_a_prefix_is_the_runs_texts_in_order_and_no_fewer() -> None:
    run = _run_of(["a", "b"])
    assert run is not None
    assert stored_prefix(run, StoredTurns(2, texts=["a", "b"]))
    assert stored_prefix(run, StoredTurns(3, texts=["a", "b", "c"]))
    assert stored_prefix(run, StoredTurns(2, texts=("a", "b")))
    assert not stored_prefix(run, StoredTurns(2, texts=["b", "a"]))
    assert not stored_prefix(run, StoredTurns(1, texts=["a"]))
    assert not stored_prefix(run, StoredTurns(2, array='["a","b"]'))


def test_a_joined_array_prefix_ends_at_a_separator() -> None:
    turns = [make_turn(n, turn_id=f"t{n}") for n in range(2)]
    array = "[" + ",".join(orjson.dumps(t).decode() for t in turns) + "]"
    run = new_stored_run(b"k" * 32, StoredTurns(2, array=array), turns)
    assert run is not None and run.texts is None
    assert stored_prefix(run, StoredTurns(2, array=array))
    longer = array[:-1] + "," + orjson.dumps(make_turn(2, turn_id="t2")).decode() + "]"
    assert stored_prefix(run, StoredTurns(3, array=longer))
    tail = stored_tail(run, StoredTurns(3, array=longer))
    assert tail is not None and [t.turn_id for t in tail] == ["t2"]
    assert not stored_prefix(run, StoredTurns(2, array=array.encode()))
    assert not stored_prefix(run, StoredTurns(3, array=array[:-1] + " ]"))
    # A tail that does not hold exactly the turns counted is not decoded.
    assert stored_tail(run, StoredTurns(4, array=longer)) is None


def test_stored_runs_count_in_the_budget_and_go_with_their_session() -> None:
    run = _run_of(["x" * 200 for _ in range(10)])
    assert run is not None and run.size > 2000
    cache = OpenedTurns(10 * run.size)
    entries = cache.of("s")
    assert entries is not None
    cache.keep_stored_run("s", entries, run)
    assert cache.stored_run("s") is run and cache._total == run.size
    cache.keep_stored_run("s", entries, run)  # kept again: counted once
    assert cache._total == run.size
    cache.drop("s")
    assert cache.stored_run("s") is None and cache._total == 0
    small = OpenedTurns(run.size)  # a run over half the budget is not kept
    entries = small.of("s")
    assert entries is not None
    small.keep_stored_run("s", entries, run)
    assert small.stored_run("s") is None and small._total == 0


# ------------------------------------------------- the plaintext array, any turn
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
_TURNS = st.lists(
    st.builds(
        SessionTurn,
        turn_id=st.uuids().map(str),
        role=st.sampled_from(["user", "assistant", "tool"]),
        content=st.text(max_size=40),
        timestamp=st.datetimes(
            min_value=datetime(1990, 1, 1),
            max_value=datetime(2090, 1, 1),
            timezones=st.sampled_from(
                [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
            ),
        ),
        tool_calls=st.lists(st.dictionaries(st.text(max_size=6), _JSON, max_size=3), max_size=2),
        skill_results=st.lists(
            st.dictionaries(st.text(max_size=6), _JSON, max_size=2), max_size=1
        ),
        metadata=st.dictionaries(st.text(max_size=6), _JSON, max_size=3),
        tokens_used=st.integers(min_value=0, max_value=10**6),
        cost=st.floats(min_value=0, max_value=1e6, allow_nan=False),
        model=st.none() | st.text(max_size=8),
        provider=st.none() | st.text(max_size=8),
    ),
    min_size=1,
    max_size=6,
    unique_by=lambda t: t.turn_id,
)


@settings(max_examples=60, deadline=None)
@given(_TURNS)
def test_the_plaintext_array_decodes_to_exactly_the_opened_turns(
    turns: list[SessionTurn],
) -> None:
    """What a stored run answers equals what opening the stored texts gives, for any turn."""
    try:
        checked = check_turns(turns)
    except SessionValidationError:
        assume(False)
    key = new_data_key("s", keyring("k1"))
    texts = [encode_turn_json(seal_turn(t, key)) for t in checked]  # as the SQL store stores
    sealed = turns_from_texts(texts)
    assert sealed is not None
    opened = open_turns(sealed, key, record="session 's'")
    assert opened == list(checked)
    run = new_stored_run(key.raw, StoredTurns(len(texts), texts=texts), opened)
    assert run is not None
    again = run.turns()
    assert again == opened
    assert [t.timestamp.utcoffset() for t in again] == [t.timestamp.utcoffset() for t in opened]


async def test_a_subclass_that_changes_load_alone_is_read_through_its_load(
    tmp_path: Path,
) -> None:
    """A wrapper of a backend overriding ``load`` only keeps being called for ``get_state``."""
    calls: list[str] = []

    class Counting(DatabaseSessionStore):
        async def load(self, session_id: str) -> SessionState | None:
            calls.append(session_id)
            return await super().load(session_id)

    inner = Counting(f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}")
    await inner.initialize()
    try:
        store = EncryptedSessionStore(inner, keyring("k1"))
        assert not store._reuse
        session_id = await _session(store, 3)
        assert (await store.load(session_id)) is not None
        assert (await store.load(session_id)) is not None
        assert calls == [session_id, session_id]
    finally:
        await inner.close()
