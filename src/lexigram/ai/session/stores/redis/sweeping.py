"""Sweeping operations of the Redis store: expiry through the deadline index, purge.

A component of the store facade (``store.py``), working through its :class:`RedisCore`.
A batch is cut into chunks handled at once, so that one chunk's replies are decoded
while Redis runs the next; a chunk is one script call on a single server
(:func:`batch_scripts.run_session_chunk`), a script per session on Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import orjson
from redis.asyncio.cluster import RedisCluster

from lexigram.ai.session.exceptions import CorruptRecordError, SessionStoreError
from lexigram.ai.session.stores.base import BATCH_CONCURRENCY, BatchOutcome, SessionRecord
from lexigram.ai.session.stores.gc_pause import paused_gc
from lexigram.ai.session.stores.redis.batch_scripts import chunked, run_session_chunk
from lexigram.ai.session.stores.redis.core import (
    KEY_EXPIRY_MARGIN_S,
    RedisCore,
    new_op,
    record_name,
)
from lexigram.ai.session.stores.redis.wire import to_us

__all__ = ["SweepOps"]

_SCAN_BATCH = 200
#: The most index entries one page reads (and probes) at once.
_MAX_PAGE = 1000
_LIVE = ("active", "suspended")
_TOMBSTONE_SAFETY_S = 86_400
#: Ended sessions whose key expiry one ``find_purgeable`` call moves at most: pages of
#: ``_KEEP_PAGE`` (one pipelined round trip each), ``_KEEP_PAGES`` of them.
_KEEP_PAGE = 500
_KEEP_PAGES = 4
_HOUR_MS = 3_600_000

T = TypeVar("T")


class SweepOps:
    """Finding and marking expired sessions, finding and purging ended ones."""

    def __init__(self, core: RedisCore) -> None:
        self._core = core

    async def find_expired(self, *, limit: int = 1000) -> list[str]:
        _, now_us = self._core.clock()
        found: list[str] = []
        seen: set[str] = set()
        key = self._core.keys.deadlines
        while len(found) < limit:
            size = _page_size(limit - len(found))
            page = await self._core.scripts.command(
                "zrangebyscore", key, "-inf", now_us, start=len(found), num=size
            )
            ids = [sid for sid in (m.decode() for m in page) if sid not in seen]
            if not ids:
                break
            seen.update(ids)
            probes = await self._core.index.probe(ids, ("s", "ex", "ua"))
            fixes: list[tuple[str, tuple[Any, ...]]] = []
            # Every entry leaves the range [-inf, now] unless it is reported: the next
            # page therefore starts right after the ones found so far.
            for sid, probe in zip(ids, probes, strict=True):
                status, expires, updated = probe or (None, None, None)
                deadline = int(expires) if expires is not None and expires.isdecimal() else None
                if probe is not None and status is None:
                    fixes.append(("zrem", (key, sid)))  # the session is gone
                elif status in ("closed", "expired"):
                    fixes.append(("zrem", (key, sid)))
                    if updated is not None and updated.isdecimal():
                        fixes.append(("zadd", (self._core.keys.ended, {sid: int(updated)})))
                elif status in _LIVE and expires is None:
                    fixes.append(("zrem", (key, sid)))  # no deadline any more
                elif status not in _LIVE or deadline is None or deadline <= now_us:
                    # Due, or damaged (not a hash, unknown status, bad deadline): a
                    # damaged one is reported so that mark_expired names it
                    # (CorruptRecordError) and the sweeper quarantines it.
                    if len(found) < limit:
                        found.append(sid)
                else:
                    # Extended since indexed: move the lower bound up to the deadline seen.
                    fixes.append(("zadd", (key, {sid: deadline}, False, True)))
            await self._core.index.pipe(fixes)
            if len(page) < size:
                break
        return found

    async def mark_expired(self, session_id: str) -> SessionRecord | None:
        now, now_us = self._core.clock()
        reply = await self._core.run("mark_expired", session_id, [now_us], op=new_op())
        if "e" in reply:
            self._core.refuse(reply, session_id)
        if "h" not in reply:
            return None
        record = self._core.record(reply["h"], session_id, now)
        await self._core.index.ended(
            session_id, record.state.user_id, to_us(record.state.updated_at), reply["h"].get("o")
        )
        return record

    async def mark_expired_batch(
        self, session_ids: Sequence[str], *, concurrency: int = BATCH_CONCURRENCY
    ) -> BatchOutcome[SessionRecord]:
        """``mark_expired`` for every id, then the indexes, chunk by chunk (all at once)."""
        now, now_us = self._core.clock()

        async def expire(chunk: Sequence[str]) -> BatchOutcome[SessionRecord]:
            part: BatchOutcome[SessionRecord] = BatchOutcome()
            replies = await self._replies("mark_expired", chunk, [now_us])
            ended: list[tuple[str, str, int, str | None]] = []
            # The records are new objects that all stay reachable: without the pause
            # their allocation sets off collections that walk the heap again and again.
            with paused_gc():
                for sid, reply in zip(chunk, replies, strict=True):
                    try:
                        data = self._settled_reply(sid, reply)
                        if "h" not in data:
                            continue
                        record = self._core.record(data["h"], sid, now)
                    except CorruptRecordError as exc:
                        part.damaged.append((sid, exc))
                        continue
                    except Exception as exc:
                        part.failed.append((sid, exc))
                        continue
                    part.done.append(record)
                    updated = to_us(record.state.updated_at)
                    ended.append((sid, record.state.user_id, updated, data["h"].get("o")))
            await self._core.index.ended_many(ended)
            return part

        return await _by_chunks(list(dict.fromkeys(session_ids)), expire)

    async def _replies(self, name: str, chunk: Sequence[str], args: Sequence[Any]) -> list[Any]:
        """Write script ``name`` for every id of ``chunk``: one reply (or error) per id.

        A single server runs ``<name>_many`` once for the chunk; Redis Cluster spreads
        the sessions over slots, so there each runs its own script.
        """
        core = self._core
        argv = core.argv(args)
        if isinstance(core.scripts.client(), RedisCluster):
            calls = [(core.script_keys(sid, name, new_op()), argv) for sid in chunk]
            replies = await core.scripts.many_settled(name, calls)
            if name == "purge":  # recorded outside the (removed) session's reply index
                await core.drop_records([keys[-1] for keys, _ in calls])
            return replies
        return await run_session_chunk(
            core.scripts, core.keys, name, chunk, argv, new_op=new_op, drop=core.drop_records
        )

    def _settled_reply(self, session_id: str, reply: Any) -> Any:
        """One reply of :meth:`ScriptRunner.many_settled` as a document, or its error raised."""
        if isinstance(reply, Exception):
            raise reply
        try:
            data = orjson.loads(reply)
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise CorruptRecordError(
                record_name(session_id), f"stored data is not valid JSON/UTF-8: {exc}"
            ) from exc
        if "e" in data:
            self._core.refuse(data, session_id)
        return data

    async def quarantine(self, session_id: str) -> None:
        """Mark the session ``quarantined:<status>`` and take it out of every index.

        As on the SQL stores: every write then refuses it (``CorruptRecordError`` naming
        the status) before writing, reads keep raising, and it leaves the deadline and
        purge indexes and the user's live set (the per-user cap). Only the status, user
        and ordinal fields are read (a header that is not a hash is only taken out of the
        indexes). Idempotent.
        """
        _, now_us = self._core.clock()
        reply = await self._core.raw("quarantine", session_id, [now_us])
        user, ordinal = reply if isinstance(reply, list) else (None, None)
        try:
            user_id = user.decode() if isinstance(user, bytes) else None
            seen = ordinal.decode() if isinstance(ordinal, bytes) else None
        except UnicodeDecodeError:
            user_id = seen = None  # no user's key can be named by it
        await self._core.index.quarantine(session_id, user_id or None, seen)

    async def find_purgeable(self, *, older_than: datetime, limit: int = 1000) -> list[str]:
        cutoff = to_us(older_than)
        await self._keep_ended(cutoff)
        found: list[str] = []
        seen: set[str] = set()
        key = self._core.keys.ended
        while len(found) < limit:
            size = _page_size(limit - len(found))
            page = await self._core.scripts.command(
                "zrangebyscore", key, "-inf", f"({cutoff}", start=len(found), num=size
            )
            ids = [sid for sid in (m.decode() for m in page) if sid not in seen]
            if not ids:
                break
            seen.update(ids)
            probes = await self._core.index.probe(ids, ("s", "ua"))
            fixes: list[tuple[str, tuple[Any, ...]]] = []
            for sid, probe in zip(ids, probes, strict=True):
                if probe is None:
                    if len(found) < limit:
                        found.append(sid)
                    continue
                status, updated = probe
                ended = status in ("closed", "expired")
                if not ended or updated is None or not updated.isdecimal():
                    fixes.append(("zrem", (key, sid)))
                elif int(updated) < cutoff:
                    if len(found) < limit:
                        found.append(sid)
                else:
                    fixes.append(("zadd", (key, {sid: int(updated)}, False, True)))
            await self._core.index.pipe(fixes)
            if len(page) < size:
                break
        return found

    async def note_grace(self) -> None:
        """At start: record this store's key expiry of ended sessions, when none is
        recorded yet (a new key prefix, the first start of this version), as the one
        the ended sessions have, so that a later store keeping them longer knows to
        walk them (see :meth:`_keep_ended`). Best effort: without the record, the
        first sweep walks the ended sessions it keeps once.
        """
        core = self._core
        _, now_us = core.clock()
        mark = core.keys.ended_grace
        own = core.purge_grace_ms
        with contextlib.suppress(SessionStoreError):
            if await core.scripts.command("hsetnx", mark, "g", own):
                await core.scripts.command("hset", mark, mapping={"w": now_us, "k": 0, "c": 1})
                return
            # A shorter retention than the recorded one: the sessions this store ends get
            # the shorter expiry, so the record comes down with it, and a later store
            # keeping them longer again walks them (30 d -> 1 h -> 30 d left the ones
            # ended under 1 h to expire after 25 h; a regression audit).
            recorded = _digits((await core.scripts.command("hmget", mark, "g"))[0])
            if recorded is not None and recorded > own:
                await core.scripts.command(
                    "hset", mark, mapping={"g": own, "w": now_us, "k": 0, "c": 1}
                )

    async def _keep_ended(self, cutoff: int) -> None:
        """Keep the keys of the ended sessions the sweeper keeps (those that ended at
        ``cutoff`` or later) until their purge time plus the margin.

        Their keys were given an expiry of ``purge_after_s`` + 1 day after their end
        by the store that ended them. When the sweeper keeps them longer (a raised
        ``purge_after_s``, a sweep's own ``--purge-after``), the ended index is walked
        once for that retention, ``_KEEP_PAGES`` pages per call, and each session's
        ``keep_ended`` script moves the expiry of its keys (never shortens it, never
        gives one to keys without). Where the walk stands is kept in
        ``P:g:{index}:g`` (first written by :meth:`note_grace`); once through, a sweep
        whose retention this store's own expiry covers costs one ``HMGET``.
        """
        core = self._core
        _, now_us = core.clock()
        own = core.purge_grace_ms
        needed = (now_us - cutoff) // 1000 + KEY_EXPIRY_MARGIN_S * 1000
        if needed <= own + _HOUR_MS:
            needed = own  # this store's own expiry covers the retention
        mark = core.keys.ended_grace
        raw = await core.scripts.command("hmget", mark, "g", "w", "k", "c")
        done, where, skip_at, through = (_digits(v) for v in raw)
        # within an hour of it (the cutoff is "now - retention", read a moment earlier)
        covered = done is not None and done + _HOUR_MS >= needed
        if covered and through == 1 and needed == own:
            return
        if covered and done is not None and where is not None and where >= cutoff:
            target, low, skip = done, where, skip_at or 0  # go on where the walk stands
        else:
            # a new retention: from the first session kept
            target = needed if needed == own else -(-needed // _HOUR_MS) * _HOUR_MS
            if covered and done is not None:
                target = max(target, done)
            low, skip = cutoff, 0
            await core.scripts.command("hset", mark, mapping={"g": target, "c": 0})
        needed = target
        finished = False
        for _ in range(_KEEP_PAGES):
            page = await core.scripts.command(
                "zrangebyscore",
                core.keys.ended,
                low,
                "+inf",
                start=skip,
                num=_KEEP_PAGE,
                withscores=True,
            )
            if page:
                calls = [
                    (core.script_keys(member.decode(), "keep_ended", None), [now_us, needed])
                    for member, _ in page
                ]
                # a damaged session's refusal is its own: the others are kept
                await core.scripts.many_settled("keep_ended", calls)
                last = int(page[-1][1])
                ties = sum(1 for _, score in page if int(score) == last)
                low, skip = (low, skip + ties) if last == low else (last, ties)
            if len(page) < _KEEP_PAGE:
                finished = True
                break
        await core.scripts.command(
            "hset", mark, mapping={"g": needed, "w": low, "k": skip, "c": int(finished)}
        )

    async def purge_batch(
        self,
        session_ids: Sequence[str],
        *,
        tombstone_until: datetime,
        concurrency: int = BATCH_CONCURRENCY,
    ) -> BatchOutcome[str]:
        """``purge`` for every id, then the indexes, chunk by chunk (all at once)."""
        now, now_us = self._core.clock()
        until_us = to_us(tombstone_until)
        safety = max(int((tombstone_until - now) / timedelta(seconds=1)), 1) + _TOMBSTONE_SAFETY_S

        async def purge(chunk: Sequence[str]) -> BatchOutcome[str]:
            part: BatchOutcome[str] = BatchOutcome()
            replies = await self._replies("purge", chunk, [now_us, until_us, safety])
            gone: list[tuple[str, str | None, str | None, Sequence[str], str | None]] = []
            for sid, reply in zip(chunk, replies, strict=True):
                try:
                    data = self._settled_reply(sid, reply)
                except CorruptRecordError as exc:
                    part.damaged.append((sid, exc))
                    continue
                except Exception as exc:
                    part.failed.append((sid, exc))
                    continue
                if "u" in data:
                    part.done.append(sid)
                    gone.append((sid, data["u"], data.get("ps"), data["c"], data.get("o")))
            await self._core.index.forget_many(gone)
            return part

        return await _by_chunks(list(dict.fromkeys(session_ids)), purge)

    async def purge(self, session_id: str, *, tombstone_until: datetime) -> bool:
        now, now_us = self._core.clock()
        until_us = to_us(tombstone_until)
        safety = max(int((tombstone_until - now) / timedelta(seconds=1)), 1) + _TOMBSTONE_SAFETY_S
        op = new_op()
        reply = await self._core.run("purge", session_id, [now_us, until_us, safety], op=op)
        if "e" in reply:
            self._core.refuse(reply, session_id)
        if "u" not in reply:
            return False
        await self._core.index.forget(
            session_id,
            user_id=reply["u"],
            parent_id=reply.get("ps"),
            checkpoint_ids=reply["c"],
            ordinal=reply.get("o"),
        )
        await self._core.drop_records([self._core.keys.op(session_id, op, "purge")])
        return True


def _digits(raw: Any) -> int | None:
    """A stored decimal integer, or None (missing or not one)."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    return int(text) if isinstance(text, str) and text.isdecimal() else None


def _page_size(wanted: int) -> int:
    """How many index entries to read next when ``wanted`` more ids are sought."""
    return min(max(wanted, _SCAN_BATCH), _MAX_PAGE)


async def _by_chunks(
    ids: Sequence[str], work: Callable[[Sequence[str]], Awaitable[BatchOutcome[T]]]
) -> BatchOutcome[T]:
    """``work`` on every chunk of ``ids`` at once; their outcomes joined in order.

    A chunk whose work failed (Redis unreachable, an index update refused) counts
    its ids as failed; the other chunks are reported as they are.
    """
    outcome: BatchOutcome[T] = BatchOutcome()
    chunks = chunked(ids)
    parts = await asyncio.gather(*(work(chunk) for chunk in chunks), return_exceptions=True)
    for chunk, part in zip(chunks, parts, strict=True):
        if isinstance(part, BaseException):
            if not isinstance(part, Exception):
                raise part
            outcome.failed.extend((sid, part) for sid in chunk)
            continue
        outcome.done.extend(part.done)
        outcome.damaged.extend(part.damaged)
        outcome.failed.extend(part.failed)
    return outcome
