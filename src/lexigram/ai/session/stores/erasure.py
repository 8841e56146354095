"""Erasing a user: every session with its branches, then what the backend keeps besides.

:func:`erase_user_sessions` is the default of ``SessionStore.erase_user``, built
from the listing primitives and ``erase_session`` (one atomic step per session,
branches before their source), so it runs on every backend and a second run
finishes an interrupted one. :func:`forget_redis_user` and :func:`compact_sqlite`
are the backend parts of ``forget_user``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from functools import cache
from typing import Any

import orjson
from lexigram.logging import get_logger

from lexigram.ai.session.exceptions import (
    CorruptRecordError,
    SessionNotFoundError,
    SessionStoreError,
)
from lexigram.ai.session.stores.base import SessionStore, UserErasure
from lexigram.ai.session.validation import check_count, check_id

__all__ = ["compact_sqlite", "erase_user_sessions", "forget_redis_user"]

logger = get_logger(__name__)


class _Tally:
    """What one erasure removed so far."""

    def __init__(self) -> None:
        self.sessions: list[str] = []
        self.checkpoints = 0
        self.turns = 0
        self.damaged: list[str] = []
        self.seen: set[str] = set()


async def _erase_tree(store: SessionStore, session_id: str, tally: _Tally) -> None:
    """Erase ``session_id`` after its branches (depth first)."""
    if session_id in tally.seen:
        return
    tally.seen.add(session_id)
    try:
        branches = [r.state.session_id for r in await store.list_branches(session_id)]
    except (CorruptRecordError, SessionNotFoundError):
        branches = []
    for branch_id in branches:
        await _erase_tree(store, branch_id, tally)
    checkpoints = turns = 0
    damaged = False
    record = None
    try:
        record = await store.load_record(session_id)
        turns = record.state.turn_count if record is not None else 0
    except CorruptRecordError:
        damaged = True
    # Counted apart: a damaged header leaves its checkpoints and turns to count (the
    # report is the audit record of what was removed).
    try:
        checkpoints = len(await store.list_checkpoint_headers(session_id))
    except CorruptRecordError:
        damaged = True
    if damaged and record is None:
        with contextlib.suppress(CorruptRecordError, SessionNotFoundError):
            turns = len(await store.get_turns(session_id))
    if await store.erase_session(session_id):
        tally.sessions.append(session_id)
        tally.checkpoints += checkpoints
        tally.turns += turns
        if damaged:
            tally.damaged.append(session_id)


async def _listed(store: SessionStore, user_id: str, batch: int) -> list[str]:
    page = await store.list_user_sessions(user_id, limit=batch)
    return [s.session_id for s in page.items] + list(page.damaged)


async def erase_user_sessions(
    store: SessionStore, user_id: str, *, batch: int = 100
) -> UserErasure:
    """Erase every session of ``user_id`` and its branches; see ``SessionStore.erase_user``."""
    check_id(user_id, "user_id")
    check_count(batch, "batch", minimum=1)
    tally = _Tally()
    while True:
        fresh = [sid for sid in await _listed(store, user_id, batch) if sid not in tally.seen]
        if not fresh:
            break
        for session_id in fresh:
            await _erase_tree(store, session_id, tally)
    await store.forget_user(user_id, list(tally.sessions))
    left = await _listed(store, user_id, 1)
    return UserErasure(
        user_id=user_id,
        sessions=tally.sessions,
        checkpoints=tally.checkpoints,
        turns=tally.turns,
        damaged=tally.damaged,
        complete=not left,
    )


def names_user(session_id: str, user_id: str) -> bool:
    """Whether ``session_id`` names ``user_id``: equal to it, or holding it as a whole
    word (not next to a letter or digit): ``alice``, ``chat:alice:3``, ``alice-2`` name
    ``alice``; ``malice`` and ``alice2`` do not."""
    if session_id == user_id:
        return True
    pattern = rf"(?<![^\W_]){re.escape(user_id)}(?![^\W_])"
    return re.search(pattern, session_id) is not None


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


async def forget_redis_user(store: Any, user_id: str, session_ids: Sequence[str]) -> int:
    """Delete the user's keys (ordinal counter, indexes, create replies), the retry
    replies of the erased sessions (kept 5 minutes), recorded delete replies naming the
    user and the tombstones whose session id names the user; one SCAN of the key space.

    The user's keys go only while the user has no session left and no create in
    progress: another process may create a session for the user while the erasure
    runs, and deleting its index entries would hide it from listings and from the
    per-user cap. The check and the deletion are one script on the user's slot
    (``lua/forget_user.lua``), repeated when a session appeared in between.

    Returns how many keys it deleted.
    """
    from lexigram.ai.session.stores.redis.indexes import RESERVATION_GRACE_US, wall_us
    from lexigram.ai.session.stores.redis.keys import tag

    prefix = store.keys.prefix
    user_base = f"{prefix}:u:{{{tag(user_id)}}}:"
    session_bases = tuple(f"{prefix}:s:{{{tag(sid)}}}:o:" for sid in session_ids)
    # Under the store's gate, errors as the store's own (``guarded`` for the scan, which
    # redis-py gives as an iterator; ``command`` for the rest).
    scripts = store._core.scripts
    user_keys: list[Any] = []
    replies: list[Any] = []
    deletions: list[Any] = []  # other sessions' delete replies: a killed run's may name the user
    head, tail = f"{prefix}:s:{{", "}:x"  # a tombstone: P:s:{sid}:x
    async with scripts.guarded("SCAN") as client:
        async for raw in client.scan_iter(match=_glob_escape(prefix) + ":*", count=1000):
            key = raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else str(raw)
            if key.startswith(user_base):
                user_keys.append(raw)
            elif session_bases and key.startswith(session_bases):
                replies.append(raw)
            elif key.endswith(":delete") and ":o:" in key:
                deletions.append(raw)
            elif key.startswith(head) and key.endswith(tail):
                session_id = _untag(key[len(head) : -len(tail)])
                if session_id is not None and names_user(session_id, user_id):
                    replies.append(raw)  # deleted with the replies below
    for key in deletions:
        if _names_in_reply(await scripts.command("get", key), user_id):
            replies.append(key)
    for key in replies:
        await scripts.command("unlink", key)
    all_key, live_key, counter = store.keys.user(user_id)
    index = store._core.index
    erased = set(session_ids)
    for attempt in range(_FORGET_ATTEMPTS):
        everyone = await scripts.command("zrange", all_key, 0, -1)
        live = await scripts.command("zrange", live_key, 0, -1, withscores=True)
        members = list(dict.fromkeys([*everyone, *(m for m, _ in live)]))
        headers = await index.probe([_text(m) for m in members], ("u",))
        recent = wall_us() - RESERVATION_GRACE_US
        if any(h is not None and h[0] == user_id for h in headers) or any(
            score >= recent and _text(m) not in erased for m, score in live
        ):
            return len(replies)  # the user has a session again, or one being created
        # An entry with no session of the user behind it is an erased session's own (a
        # damaged header, erased without the user's index entries, which name it
        # still), an entry left behind, or a create of that id that has reserved and not
        # yet written (deleting it would hide the new session from every index; a
        # CLOSED one reserves in the sessions index only): the create writes within
        # milliseconds, so look again a little later first.
        unbacked = any(h is not None and h[0] is None for h in headers)
        if attempt + 1 < _FORGET_ATTEMPTS and (
            unbacked or any(score >= recent for _, score in live)
        ):
            await asyncio.sleep(_CREATE_SETTLE_S)
            continue
        keys = list(dict.fromkeys([all_key, live_key, counter, *user_keys]))
        args = [len(everyone), *everyone, *(m for m, _ in live)]
        if await scripts.command("eval", _forget_user_script(), len(keys), *keys, *args):
            return len(replies) + len(user_keys)
    return len(replies)


def _text(member: Any) -> str:
    return member.decode() if isinstance(member, bytes) else str(member)


def _names_in_reply(value: Any, user_id: str) -> bool:
    """Whether a recorded delete reply (``{"u": user, ...}``) is of ``user_id``'s session."""
    if value is None:
        return False
    try:
        reply = orjson.loads(value)
    except orjson.JSONDecodeError:
        return False
    return isinstance(reply, dict) and reply.get("u") == user_id


def _untag(body: str) -> str | None:
    """The id a key's hash tag stands for (see ``redis.keys.tag``), or None."""
    if not body.startswith("="):
        return body
    try:
        return bytes.fromhex(body[1:]).decode("utf-8")
    except ValueError:
        return None


#: How often the forgetting of a user's keys is tried while sessions keep appearing.
_FORGET_ATTEMPTS = 5
#: How long ``forget_redis_user`` waits for a create it may have caught between its
#: reservation and its write before it looks again.
_CREATE_SETTLE_S = 0.05


@cache
def _forget_user_script() -> str:
    from lexigram.ai.session.stores.redis.scripts import lua_source

    return lua_source("forget_user")


#: Attempts (and the pause between them) at truncating the WAL while another
#: connection still reads from it.
_CHECKPOINT_ATTEMPTS = 50
_CHECKPOINT_PAUSE_S = 0.05
#: The busy timeout of one checkpoint attempt, in milliseconds.
_CHECKPOINT_BUSY_MS = 50


async def compact_sqlite(store: Any) -> None:
    """Rewrite a SQLite database so that freed pages keep no copy of erased rows.

    ``VACUUM`` rebuilds the file from the live rows; the WAL is then checkpointed and
    truncated. Costs time proportional to the database file. A cancellation waits for
    the rewrite to end (a connection left mid-VACUUM stayed checked out and kept the
    WAL, with the erased text, from being truncated by the next run) and is raised
    after. ``SessionStoreError`` when the WAL stays in use by another reader (5 s):
    the erasure is then not complete, and running it again finishes it.
    """
    task = asyncio.ensure_future(_compact_sqlite(store))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({task})
        if not task.cancelled() and task.exception() is not None:
            logger.warning("ai_session.erasure.compact_failed", error=str(task.exception()))
        raise


async def _compact_sqlite(store: Any) -> None:
    async with store.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        # execute_fetchall steps each statement to its end and drops its cursor in the
        # driver's thread. A cursor left there (``execute``) keeps the checkpoint's row
        # pending on this pooled connection, and the next VACUUM on it (the next erasure
        # in the process) fails with "SQL statements in progress".
        await driver.execute_fetchall("VACUUM")
        # Each checkpoint waits up to the connection's busy timeout (30 s) for a reader:
        # with a short one the attempts below are what bounds the wait (about 5 s; a
        # reader holding a snapshot for minutes held the erasure that long).
        (before,) = (await driver.execute_fetchall("PRAGMA busy_timeout"))[0]
        await driver.execute_fetchall(f"PRAGMA busy_timeout={_CHECKPOINT_BUSY_MS}")
        try:
            for _ in range(_CHECKPOINT_ATTEMPTS):
                # (busy, WAL frames, frames checkpointed): busy while another connection
                # reads an older snapshot; the erased text stays in the WAL until then.
                rows = await driver.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
                busy = any(int(row[0]) != 0 for row in rows)
                if not busy:
                    return
                await asyncio.sleep(_CHECKPOINT_PAUSE_S)
        finally:
            await driver.execute_fetchall(f"PRAGMA busy_timeout={int(before)}")
        raise SessionStoreError(
            "erasure: the SQLite write-ahead log is still read by another connection and "
            "could not be truncated; run the erasure again"
        )
