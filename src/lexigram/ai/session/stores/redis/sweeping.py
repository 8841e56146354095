"""Sweeping operations of the Redis store: expiry through the deadline index, purge."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from lexigram.ai.session.stores.base import SessionRecord
from lexigram.ai.session.stores.redis.base import RedisStoreBase, new_op
from lexigram.ai.session.stores.redis.wire import to_us

__all__ = ["SweepOps"]

_SCAN_BATCH = 200
_LIVE = ("active", "suspended")
_TOMBSTONE_SAFETY_S = 86_400


class SweepOps(RedisStoreBase):
    """Finding and marking expired sessions, finding and purging ended ones."""

    async def find_expired(self, *, limit: int = 1000) -> list[str]:
        _, now_us = self._clock()
        found: list[str] = []
        seen: set[str] = set()
        key = self.keys.deadlines
        while len(found) < limit:
            page = await self._scripts.command(
                "zrangebyscore", key, "-inf", now_us, start=len(found), num=_SCAN_BATCH
            )
            ids = [m.decode() for m in page if m.decode() not in seen]
            if not ids:
                break
            seen.update(ids)
            probes = await self._index.probe(ids, ("s", "ex", "ua"))
            fixes: list[tuple[str, tuple[Any, ...]]] = []
            # Every entry leaves the range [-inf, now] unless it is reported: the next
            # page therefore starts right after the ones found so far.
            for sid, probe in zip(ids, probes, strict=True):
                status, expires, updated = probe or (None, None, None)
                deadline = int(expires) if expires is not None and expires.isdigit() else None
                if probe is not None and status is None:
                    fixes.append(("zrem", (key, sid)))  # the session is gone
                elif status in ("closed", "expired"):
                    fixes.append(("zrem", (key, sid)))
                    if updated is not None and updated.isdigit():
                        fixes.append(("zadd", (self.keys.ended, {sid: int(updated)})))
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
            await self._index.pipe(fixes)
            if len(page) < _SCAN_BATCH:
                break
        return found

    async def mark_expired(self, session_id: str) -> SessionRecord | None:
        now, now_us = self._clock()
        reply = await self._run("mark_expired", session_id, [now_us], op=new_op())
        if "e" in reply:
            self._refuse(reply, session_id)
        if "h" not in reply:
            return None
        record = self._record(reply["h"], session_id, now)
        await self._index.ended(session_id, record.state.user_id, to_us(record.state.updated_at))
        return record

    async def quarantine(self, session_id: str) -> None:
        """Remove the id from the deadline and purge indexes, reading nothing of the session."""
        await self._index.quarantine(session_id)

    async def find_purgeable(self, *, older_than: datetime, limit: int = 1000) -> list[str]:
        cutoff = to_us(older_than)
        found: list[str] = []
        seen: set[str] = set()
        key = self.keys.ended
        while len(found) < limit:
            page = await self._scripts.command(
                "zrangebyscore", key, "-inf", f"({cutoff}", start=len(found), num=_SCAN_BATCH
            )
            ids = [m.decode() for m in page if m.decode() not in seen]
            if not ids:
                break
            seen.update(ids)
            probes = await self._index.probe(ids, ("s", "ua"))
            fixes: list[tuple[str, tuple[Any, ...]]] = []
            for sid, probe in zip(ids, probes, strict=True):
                if probe is None:
                    if len(found) < limit:
                        found.append(sid)
                    continue
                status, updated = probe
                if status not in ("closed", "expired") or updated is None or not updated.isdigit():
                    fixes.append(("zrem", (key, sid)))
                elif int(updated) < cutoff:
                    if len(found) < limit:
                        found.append(sid)
                else:
                    fixes.append(("zadd", (key, {sid: int(updated)}, False, True)))
            await self._index.pipe(fixes)
            if len(page) < _SCAN_BATCH:
                break
        return found

    async def purge(self, session_id: str, *, tombstone_until: datetime) -> bool:
        now, now_us = self._clock()
        until_us = to_us(tombstone_until)
        safety = max(int((tombstone_until - now) / timedelta(seconds=1)), 1) + _TOMBSTONE_SAFETY_S
        reply = await self._run("purge", session_id, [now_us, until_us, safety], op=new_op())
        if "e" in reply:
            self._refuse(reply, session_id)
        if "u" not in reply:
            return False
        await self._index.forget(
            session_id, user_id=reply["u"], parent_id=reply.get("ps"), checkpoint_ids=reply["c"]
        )
        return True
