"""Redis store: writes to damaged or quarantined sessions, damaged checkpoints (audit 47).

Found by an outside audit, each failing before its fix:

* a write to a session whose header had one field the store cannot decode (metadata
  ``{not json``) raised ``CorruptRecordError`` *after* it was applied: a close stored
  CLOSED with no close event, an append stored its turn;
* ``quarantine`` took a session out of the sweeper's indexes only: writes to it were
  still applied, and it kept its place under ``max_sessions_per_user``;
* a checkpoint whose stored seq ranges were damaged restored as no turns (the session
  was emptied); one whose document was damaged gave a raw Lua error;
* an id left in the user's index by an unfinished delete was refused as "purged
  recently" while ``id_taken`` said False.

Against the real Redis on 127.0.0.1:6379 and the local Redis Cluster. Each test
checks what is stored afterwards (every key of the session), not only the error.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import orjson
import pytest
from lexigram.contracts.ai.session import SessionStatus

from lexigram.ai.session.exceptions import (
    CorruptRecordError,
    SessionCapacityError,
    SessionValidationError,
)
from lexigram.ai.session.stores.base import SessionPatch
from lexigram.ai.session.stores.cache import CacheSessionStore
from lexigram.ai.session.testing.conformance import FakeClock, make_state, make_turn
from tests.stores.backends.redis import open_store

pytestmark = pytest.mark.redis

_A, _S, _C = SessionStatus.ACTIVE, SessionStatus.SUSPENDED, SessionStatus.CLOSED
_LIVE = frozenset({_A, _S})


@pytest.fixture
async def store(cluster: bool) -> AsyncIterator[CacheSessionStore]:
    async with open_store(cluster=cluster, session_ttl=3600, clock=FakeClock()) as factory:
        made = await factory()
        assert isinstance(made, CacheSessionStore)
        yield made


async def new_session(store: CacheSessionStore, turns: int = 2, user: str = "alice") -> str:
    state = make_state(user)
    await store.create_session(state)
    await store.append_turns(state.session_id, [make_turn(n) for n in range(turns)])
    return state.session_id


async def stored(store: CacheSessionStore, sid: str) -> dict[str, Any]:
    """Everything stored for the session (its ten data keys; not the reply records)."""
    c = store.client
    k = store.keys

    async def hash_of(suffix: str) -> dict[bytes, bytes]:
        return dict(await c.hgetall(k.session_key(sid, suffix)))

    return {
        "h": await hash_of("h"),
        "t": await c.lrange(k.turns(sid), 0, -1),
        "r": await c.lrange(k.session_key(sid, "r"), 0, -1),
        "i": await hash_of("i"),
        "a": await hash_of("a"),
        "c": await c.zrange(k.session_key(sid, "c"), 0, -1, withscores=True),
        "d": await hash_of("d"),
        "k": await hash_of("k"),
        "b": await c.zrange(k.session_key(sid, "b"), 0, -1, withscores=True),
        "p": await hash_of("p"),
    }


def writes(store: CacheSessionStore, cpid: str) -> dict[str, Callable[[str], Awaitable[Any]]]:
    """Every write a session's header can refuse, by name (``cpid``: a checkpoint of it)."""
    return {
        "append": lambda sid: store.append_turns(sid, [make_turn(9)]),
        "update": lambda sid: store.update_session(sid, SessionPatch(variables={"k": 1})),
        "suspend": lambda sid: store.transition(sid, _S, allowed_from=frozenset({_A})),
        "close": lambda sid: store.transition(sid, _C, allowed_from=_LIVE),
        "checkpoint": lambda sid: store.create_checkpoint(sid, checkpoint_id=f"{cpid}-new"),
        "pop": lambda sid: store.pop_turn(sid),
        "clear": lambda sid: store.clear_turns(sid),
        "restore": lambda sid: store.restore_checkpoint(cpid),
        "fork": lambda sid: store.fork_session(
            sid, make_state("alice", parent_session_id=sid, branch_name="b")
        ),
    }


_WRITES = ["append", "update", "suspend", "close", "checkpoint", "pop", "clear", "restore", "fork"]

# (header field, damaged value, the field the error names)
_DAMAGE = [
    ("m", "{not json", "metadata"),  # the audit's case
    ("v", "{bad}", "variables"),  # shaped like an object: found by decoding it
    ("ta", "tool", "active_tools"),
    ("sk", '[1, 2]', "active_skills"),
    ("ca", "soon", "created_at"),
    ("ua", str(2**62), "updated_at"),
    ("tc", "nan", "total_cost"),
    ("tc", "-5", "total_cost"),  # refused by the reader too (a regression audit)
    ("u", "", "user_id"),
]


#: Damage shaped like its JSON kind, which only decoding the field finds.
_FOUND_BY_DECODING = {"v", "sk"}


@pytest.mark.parametrize("op", _WRITES)
@pytest.mark.parametrize(("field", "value", "name"), _DAMAGE)
async def test_a_write_to_a_damaged_header_is_refused_with_nothing_written(
    store: CacheSessionStore, op: str, field: str, value: str, name: str
) -> None:
    sid = await new_session(store)
    made, _ = await store.create_checkpoint(sid, checkpoint_id=f"cp-{sid}")
    await store.append_turns(sid, [make_turn(5)])
    await store.client.hset(store.keys.header(sid), field, value)
    before = await stored(store, sid)
    call = writes(store, made.checkpoint_id)[op]
    if op == "append" and field in _FOUND_BY_DECODING:
        # The append, the chat path, only looks at each field (no JSON decoding):
        # damage only a decoder finds is found after the write, and said so.
        with pytest.raises(CorruptRecordError, match="was stored before this was found"):
            await call(sid)
        assert len(await store.client.lrange(store.keys.turns(sid), 0, -1)) == 4
        return
    with pytest.raises(CorruptRecordError, match=name) as err:
        await call(sid)
    assert sid in str(err.value)
    assert "was stored" not in str(err.value)
    assert await stored(store, sid) == before


async def test_a_close_of_a_damaged_session_stores_nothing_and_fires_no_event(
    store: CacheSessionStore,
) -> None:
    """Through the manager: the close was stored (status closed) while the caller got
    an error, so no close event or consolidation ever followed."""
    from lexigram.ai.session.manager.core import SessionManagerImpl

    manager = SessionManagerImpl(store, {"session_ttl": 0, "auto_checkpoint_interval": None})
    state = await manager.create("alice")
    await store.client.hset(store.keys.header(state.session_id), "m", "{not json")
    with pytest.raises(CorruptRecordError, match="metadata"):
        await manager.close(state.session_id)
    assert await store.client.hget(store.keys.header(state.session_id), "s") == b"active"


# --------------------------------------------------------------- quarantine
@pytest.mark.parametrize("op", _WRITES)
async def test_every_write_to_a_quarantined_session_is_refused_before_writing(
    store: CacheSessionStore, op: str
) -> None:
    sid = await new_session(store)
    made, _ = await store.create_checkpoint(sid, checkpoint_id=f"cp-{sid}")
    await store.quarantine(sid)
    await store.quarantine(sid)  # idempotent
    before = await stored(store, sid)
    assert before["h"][b"s"] == b"quarantined:active"  # as the SQL stores mark it
    with pytest.raises(CorruptRecordError, match="status") as err:
        await writes(store, made.checkpoint_id)[op](sid)
    assert sid in str(err.value)
    assert await stored(store, sid) == before


async def test_a_quarantined_session_reads_as_damaged_and_can_be_deleted(
    store: CacheSessionStore,
) -> None:
    kept = await new_session(store)
    sid = await new_session(store)
    await store.quarantine(sid)
    with pytest.raises(CorruptRecordError, match="status"):
        await store.load(sid)
    with pytest.raises(CorruptRecordError, match="status"):
        await store.load_record(sid)
    page = await store.list_user_sessions("alice")
    assert [s.session_id for s in page.items] == [kept]
    assert page.damaged == [sid]
    assert await store.find_expired() == []
    await store.delete(sid)
    assert await store.client.exists(store.keys.header(sid)) == 0
    assert await store.id_taken(sid) is False


@pytest.mark.parametrize("damage", ["field", "none"])
async def test_a_quarantined_session_holds_no_place_under_the_cap(
    store: CacheSessionStore, damage: str
) -> None:
    """The audit's case: a header with one damaged field, quarantined (as the sweeper
    does), still counted: count_live_sessions 2 and a create refused at a cap of 2."""
    await new_session(store)
    bad = await new_session(store)
    if damage == "field":
        await store.client.hset(store.keys.header(bad), "m", "{not json")
    with pytest.raises(SessionCapacityError):
        await store.create_session(make_state("alice"), max_live_per_user=2)
    await store.quarantine(bad)
    assert await store.count_live_sessions("alice") == 1
    await store.create_session(make_state("alice"), max_live_per_user=2)
    assert await store.count_live_sessions("alice") == 2
    assert await store.client.zscore(store.keys.user_live("alice"), bad) is None


# -------------------------------------------------------- damaged checkpoints
async def checkpointed(store: CacheSessionStore) -> tuple[str, str]:
    """A session of 3 turns checkpointed, then a 4th turn; (session id, checkpoint id)."""
    sid = await new_session(store, turns=3)
    made, _ = await store.create_checkpoint(sid, checkpoint_id=f"cp-{sid}")
    await store.append_turns(sid, [make_turn(3)])
    return sid, made.checkpoint_id


async def every_checkpoint_path_is_refused(
    store: CacheSessionStore, sid: str, cpid: str, field: str
) -> None:
    """Each read and write naming ``cpid`` raises ``CorruptRecordError`` naming the
    checkpoint and ``field``; nothing of the session changes."""
    before = await stored(store, sid)
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: store.load_checkpoint(cpid),
        lambda: store.list_checkpoints(sid),
        lambda: store.restore_checkpoint(cpid),
        lambda: store.fork_session(
            sid,
            make_state("alice", parent_session_id=sid, branch_name="b"),
            from_checkpoint=cpid,
        ),
    ]
    for call in calls:
        with pytest.raises(CorruptRecordError) as err:
            await call()
        assert f"checkpoint {cpid!r}" in str(err.value)
        assert f"field {field}" in str(err.value)
        assert await stored(store, sid) == before
    assert await store.count_live_sessions("alice") == 1  # no branch appeared


@pytest.mark.parametrize("ranges", ["garbage", "3:1", "1:2,2:3", "1:3x"])
async def test_damaged_checkpoint_ranges_are_refused_and_never_empty_the_session(
    store: CacheSessionStore, ranges: str
) -> None:
    sid, cpid = await checkpointed(store)
    await store.client.hset(store.keys.session_key(sid, "k"), cpid, ranges)
    await every_checkpoint_path_is_refused(store, sid, cpid, "ranges")
    state = await store.load(sid)
    assert state is not None and state.turn_count == 4


async def test_a_damaged_checkpoint_document_is_named_on_every_path(
    store: CacheSessionStore,
) -> None:
    sid, cpid = await checkpointed(store)
    await store.client.hset(store.keys.checkpoint_docs(sid), cpid, "{{bad")
    await every_checkpoint_path_is_refused(store, sid, cpid, "document")
    with pytest.raises(CorruptRecordError, match="field document"):
        await store.list_checkpoint_headers(sid)
    # An operator can still delete it.
    assert await store.delete_checkpoint(cpid) is True
    assert await store.list_checkpoints(sid) == []


async def test_a_damaged_field_of_a_checkpoint_header_is_never_restored(
    store: CacheSessionStore,
) -> None:
    """A restore copies the checkpoint's header fields into the session: a damaged one
    was written there, and the session could no longer be read."""
    sid, cpid = await checkpointed(store)
    key = store.keys.checkpoint_docs(sid)
    data = orjson.loads(await store.client.hget(key, cpid))
    data["h"]["m"] = "{not json"
    await store.client.hset(key, cpid, orjson.dumps(data))
    await every_checkpoint_path_is_refused(store, sid, cpid, "metadata")
    assert (await store.load(sid)) is not None


# ------------------------------------------- an id held by an unfinished delete
@pytest.mark.parametrize("live", [True, False])
async def test_an_id_held_only_by_the_index_is_refused_saying_so(
    store: CacheSessionStore, live: bool
) -> None:
    """A delete that lost Redis after its script (the session's keys gone) and before
    its index step left the id in the user's index: a create of it was refused with
    "was purged recently … (purge_after_s, at least one hour)" while ``id_taken`` said
    False. The refusal now says what holds the id, and until when."""
    from lexigram.ai.session.manager.core import SessionManagerImpl

    manager = SessionManagerImpl(store, {"session_ttl": 3600})
    sid = (await manager.create("alice", session_id="conv-held")).session_id
    await store.delete(sid)
    # What the unfinished delete leaves: the index entries, no key of the session.
    await store.client.zadd(store.keys.user_sessions("alice"), {sid: 1})
    if live:
        await store.client.zadd(store.keys.user_live("alice"), {sid: time.time_ns() // 1000})
    assert await store.id_taken(sid) is False
    with pytest.raises(SessionValidationError) as err:
        await manager.create("alice", session_id=sid)
    text = str(err.value)
    assert err.value.field == "session_id"
    assert "purged" not in text
    assert "is not stored" in text and "index still holds its id" in text
    assert ("dropped by the first create of it after" in text) is live
    assert ("ZREM" in text) is not live
    assert await store.id_taken(sid) is False


@pytest.mark.parametrize(
    ("field", "value", "name"),
    [("m", {"an": "object"}, "metadata"), ("sp", 7, "system_prompt"), ("tt", 3, "total_tokens")],
)
async def test_a_checkpoint_header_field_of_the_wrong_json_type_is_never_restored(
    store: CacheSessionStore, field: str, value: Any, name: str
) -> None:
    """A checkpoint's header is a JSON document (a header hash holds only strings): a
    value of another JSON type raised a raw Lua error, or was copied into the session."""
    sid, cpid = await checkpointed(store)
    key = store.keys.checkpoint_docs(sid)
    data = orjson.loads(await store.client.hget(key, cpid))
    data["h"][field] = value
    await store.client.hset(key, cpid, orjson.dumps(data))
    before = await stored(store, sid)
    for call in (
        lambda: store.restore_checkpoint(cpid),
        lambda: store.fork_session(
            sid, make_state("alice", parent_session_id=sid, branch_name="b"), from_checkpoint=cpid
        ),
    ):
        with pytest.raises(CorruptRecordError, match=f"checkpoint {cpid!r}: field {name}"):
            await call()
        assert await stored(store, sid) == before


async def test_a_whole_state_save_repairs_a_damaged_deadline(store: CacheSessionStore) -> None:
    """The docs name save (a whole state written over it) and delete as the repairs; a
    deadline that is no number made save fail with a raw Lua error, and delete_checkpoint
    delete the checkpoint and then raise one (a regression audit)."""
    sid = await new_session(store)
    made, _ = await store.create_checkpoint(sid, checkpoint_id=f"cp-{sid}")
    good = await store.load(sid)
    assert good is not None
    await store.client.hset(store.keys.header(sid), "ex", "x")
    assert await store.delete_checkpoint(made.checkpoint_id) is True
    await store.save(replace(good, variables={"repaired": True}))
    repaired = await store.load(sid)
    assert repaired is not None and repaired.variables == {"repaired": True}
    assert [t.turn_id for t in repaired.turns] == [t.turn_id for t in good.turns]
