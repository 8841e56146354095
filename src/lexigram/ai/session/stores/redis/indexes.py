"""Cross-slot indexes of the Redis store: a user's sessions, deadlines, ended sessions.

On Redis Cluster these keys live in other slots than a session's keys, so they
cannot change in the session's own script. They are therefore kept as *hints*:

* the per-user cap is a **reservation** made atomically on the user's slot
  (count the live set, add when below the cap) *before* the session is written,
  and removed again when the write fails;
* entries that stopped being true (a session that closed, expired, was deleted,
  or a reservation whose writer died) are found by re-reading the session header
  and removed; nothing is ever answered from an index without that re-check;
* the deadline index holds a *lower bound* of each live session's deadline; appends
  do not touch it (that would cost a second round trip per turn), the sweeper
  re-scores an entry whose session turned out to be extended.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson
from redis.asyncio.cluster import RedisCluster

from lexigram.ai.session.exceptions import CorruptRecordError, SessionCapacityError
from lexigram.ai.session.stores.redis.batch_scripts import run_index_commands, scriptable
from lexigram.ai.session.stores.redis.client import ScriptRunner
from lexigram.ai.session.stores.redis.keys import KeySpace

__all__ = ["RESERVATION_GRACE_US", "Indexes", "wall_us"]

#: A reservation whose session header has not appeared after this long belongs to
#: a writer that died between the two steps of a create; it no longer counts.
RESERVATION_GRACE_US = 30_000_000

_LIVE = ("active", "suspended")


def wall_us() -> int:
    """Real time in microseconds (reservations age in real time, not the store clock)."""
    return time.time_ns() // 1000


class Indexes:
    """Reads and writes the cross-slot index keys of one store."""

    def __init__(self, keys: KeySpace, scripts: ScriptRunner) -> None:
        self._keys = keys
        self._scripts = scripts

    # ------------------------------------------------------------------ helpers
    async def pipe(self, commands: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Run independent commands (possibly on several slots) in one pipeline.

        Many of them on a single server go as one script call (one reply to read).
        """
        if scriptable(commands) and not isinstance(self._scripts.client(), RedisCluster):
            return await run_index_commands(self._scripts, commands)
        return await self._scripts.pipeline(commands)

    async def probe(
        self, session_ids: Sequence[str], fields: Sequence[str]
    ) -> list[list[Any] | None]:
        """``HMGET`` of ``fields`` of each session's header (Nones when missing).

        A header Redis cannot read as a hash (``WRONGTYPE``) gives ``None`` instead
        of a list: one damaged key never fails the others.
        """
        headers = [self._keys.header(sid) for sid in session_ids]
        if headers and not isinstance(self._scripts.client(), RedisCluster):
            # A single server: one script reads every header (one reply to parse
            # instead of one per session); Cluster spreads them over slots.
            rows = await self._scripts.raw("probe_many", headers, list(fields))
            return [
                None
                if not isinstance(row, list)
                else [None if v is None else v.decode("utf-8", "replace") for v in row]
                for row in rows
            ]
        commands = [("hmget", (key, *fields)) for key in headers]
        replies = await self._scripts.pipeline(commands, raise_on_error=False)
        return [
            None
            if isinstance(reply, Exception)
            else [None if v is None else v.decode("utf-8", "replace") for v in reply]
            for reply in replies
        ]

    async def headers(
        self, session_ids: Sequence[str], *, damaged: list[str] | None = None
    ) -> list[dict[str, str] | None]:
        """Every field of each session's header (None when missing), one round trip.

        Each header comes back as one JSON document from the ``record`` script,
        which is far cheaper to parse than the field-by-field ``HGETALL`` reply.
        A header that cannot be read raises :class:`CorruptRecordError`, unless
        ``damaged`` is given: its id is then appended there and None returned.
        """
        calls = [(self._keys.session(sid), ["0"]) for sid in session_ids]
        out: list[dict[str, str] | None] = []
        for sid, reply in zip(session_ids, await self._scripts.many("record", calls), strict=True):
            try:
                doc = orjson.loads(reply)
            except (orjson.JSONDecodeError, TypeError) as exc:
                doc = {"e": "CORRUPT", "a": "header", "b": str(exc)}
            if "e" in doc:  # not JSON, or the script found the key is not a hash
                if damaged is None:
                    raise CorruptRecordError(f"session {sid!r}", f"unreadable header: {doc}")
                damaged.append(sid)
                out.append(None)
                continue
            header = doc.get("h")
            out.append(header if isinstance(header, dict) else None)
        return out

    # ----------------------------------------------------------------- per user
    async def reserve(
        self,
        user_id: str,
        session_id: str,
        *,
        cap: int | None,
        live: bool,
        now_us: int,
        op: str | None = None,
    ) -> int | None:
        """Reserve a place for ``session_id``; its per-user ordinal, or None if indexed.

        Raises :class:`SessionCapacityError` when ``user_id`` already has ``cap``
        live sessions after stale entries have been re-checked and dropped. With an
        operation id ``op``, a reservation re-sent by the client (reply lost)
        answers the ordinal it made instead of "already indexed".
        """
        keys = self._keys.user(user_id)
        if op is not None:
            keys.append(self._keys.user_op(user_id, op))
        args = ["", session_id, "" if cap is None else str(cap), "1" if live else "0"]
        for attempt in range(2):
            args[0] = str(wall_us())
            reply = await self._scripts.raw("reserve", keys, args)
            text = reply.decode() if isinstance(reply, bytes) else str(reply)
            if text == "DUP":
                return None
            if text != "CAP":
                return int(text)
            if attempt == 0 and await self.prune_live(user_id, now_us=now_us) == 0:
                break
        raise SessionCapacityError(
            f"user {user_id!r} already has {cap} live sessions (max_sessions_per_user={cap})"
        )

    async def live_members(self, user_id: str) -> list[tuple[str, int]]:
        """The user's live-set entries with their reservation times (µs)."""
        raw = await self._scripts.command(
            "zrange", self._keys.user_live(user_id), 0, -1, withscores=True
        )
        return [(m.decode(), int(score)) for m, score in raw]

    async def live_status(self, user_id: str, now_us: int) -> tuple[list[str], list[str]]:
        """Split the user's live-set entries into (live session ids, dead entries)."""
        return await self._split_live(user_id, await self.live_members(user_id), now_us)

    async def _split_live(
        self, user_id: str, members: Sequence[tuple[str, int]], now_us: int
    ) -> tuple[list[str], list[str]]:
        """:meth:`live_status` of the entries ``members`` (id, reservation time)."""
        probes = await self.probe([m for m, _ in members], ("u", "s", "ex"))
        alive: list[str] = []
        dead: list[str] = []
        wall = wall_us()
        for (sid, reserved), probe in zip(members, probes, strict=True):
            if probe is None:
                dead.append(sid)  # a damaged header never holds a place under the cap
                continue
            owner, status, expires = probe
            if status is None:
                # No header yet: a create in progress, or a writer that died.
                if reserved < wall - RESERVATION_GRACE_US:
                    dead.append(sid)
                continue
            if (
                owner != user_id
                or status not in _LIVE
                or (expires is not None and expires.isdecimal() and int(expires) <= now_us)
            ):
                dead.append(sid)
            else:
                alive.append(sid)
        return alive, dead

    async def prune_live(self, user_id: str, *, now_us: int) -> int:
        """Drop the user's live-set entries that are no longer live; how many were dropped."""
        members = dict(await self.live_members(user_id))
        _, dead = await self._split_live(user_id, list(members.items()), now_us)
        if not dead:
            return 0
        # Each only while its entry is the one read: a create or resume of the id
        # since then wrote a new reservation time, and that entry stays.
        args: list[Any] = ["r", "0"]
        for sid in dead:
            args += [sid, members[sid]]
        return int(await self._scripts.raw("user_unlive", self._keys.user(user_id)[:2], args))

    async def release(
        self,
        user_id: str,
        session_id: str,
        ordinal: int | str | None,
        *,
        reserved: int | None = None,
    ) -> None:
        """Undo a reservation (the session write failed): only while the user's index
        holds the id under ``ordinal``, the one reserved (or, given ``reserved``, while
        its live entry has that reservation time); None takes whatever entry is there.

        Another process may have indexed the id anew meanwhile (a ``save`` that found
        it gone, a create after a dead writer's entry was dropped): its entries stay.
        """
        if reserved is not None:
            args: list[Any] = ["r", "1", session_id, reserved]
        else:
            args = ["o", "1", session_id, "" if ordinal is None else str(ordinal)]
        await self._scripts.raw("user_unlive", self._keys.user(user_id)[:2], args)

    async def mark_live(self, user_id: str, session_id: str) -> None:
        """Count ``session_id`` among the user's live sessions (it became live again)."""
        await self.pipe(
            [
                ("zadd", (self._keys.user_live(user_id), {session_id: wall_us()})),
                ("zrem", (self._keys.ended, session_id)),
            ]
        )

    # ----------------------------------------------------------- global indexes
    async def add_deadline(
        self, session_id: str, deadline_us: int, *, only_new: bool = False
    ) -> bool:
        """Record a live session's deadline for the sweeper; True when the entry is new.

        ``only_new`` leaves an existing entry alone (a create that may still fail
        because the id is taken must not move another session's deadline).
        """
        (added,) = await self.pipe(
            [("zadd", (self._keys.deadlines, {session_id: deadline_us}, only_new))]
        )
        return bool(added)

    async def quarantine(self, session_id: str, user_id: str | None, ordinal: str | None) -> None:
        """Take a session out of the sweeper's indexes and its user's live set (its
        header cannot be decoded; its user's listing names it as damaged); ``ordinal``
        is the header's, as for :meth:`unlive`."""
        await self.pipe(
            [
                ("zrem", (self._keys.deadlines, session_id)),
                ("zrem", (self._keys.ended, session_id)),
            ]
        )
        if user_id is not None:
            await self.unlive([(session_id, user_id, ordinal)])

    async def drop_deadline(self, session_id: str) -> None:
        """Forget a deadline entry this store added (the create it belonged to failed)."""
        await self.pipe([("zrem", (self._keys.deadlines, session_id))])

    async def ended(
        self, session_id: str, user_id: str, updated_us: int, ordinal: str | None
    ) -> None:
        """A session became CLOSED/EXPIRED: out of the live indexes, into the ended one.

        ``ordinal`` is the ended header's (``o``): the user's live entry goes only while
        the id is still indexed under it (see :meth:`unlive`).
        """
        await self.ended_many([(session_id, user_id, updated_us, ordinal)])

    async def ended_many(self, entries: Sequence[tuple[str, str, int, str | None]]) -> None:
        """:meth:`ended` for many ``(session_id, user_id, updated_us, ordinal)``."""
        if not entries:
            return
        await self.pipe(
            [
                ("zrem", (self._keys.deadlines, *(sid for sid, _, _, _ in entries))),
                ("zadd", (self._keys.ended, {sid: us for sid, _, us, _ in entries})),
            ]
        )
        await self.unlive([(sid, user_id, ordinal) for sid, user_id, _, ordinal in entries])

    async def unlive(self, entries: Sequence[tuple[str, str, str | None]]) -> None:
        """Take ended sessions ``(session_id, user_id, ordinal)`` out of their users'
        live sets, one script per user.

        The end was written in the session's slot, the live set is in the user's: a
        process may delete the ended session and create it again under its id (live,
        with a new ordinal) before this runs, and the new session's entry must stay
        (it was lost from the per-user count and cap). The id's entry goes only while
        the user's index holds it under the ended header's ordinal.
        """
        await self._unlive(entries, forget=False)

    async def _unlive(
        self, entries: Sequence[tuple[str, str, str | None]], *, forget: bool
    ) -> None:
        """:meth:`unlive`; with ``forget``, out of the users' sessions indexes too."""
        by_user: dict[str, list[Any]] = {}
        for sid, user_id, ordinal in entries:
            by_user.setdefault(user_id, ["o", "1" if forget else "0"]).extend((sid, ordinal or ""))
        calls = [(self._keys.user(u)[:2], args) for u, args in by_user.items()]
        for failure in await self._scripts.many_settled("user_unlive", calls):
            if isinstance(failure, Exception):
                raise failure

    async def forget_many(
        self, entries: Sequence[tuple[str, str | None, str | None, Sequence[str], str | None]]
    ) -> None:
        """:meth:`forget` for many ``(session_id, user_id, parent_id, checkpoint_ids,
        ordinal)``.

        One pipeline for the global index entries and checkpoint keys, one script per
        user, one for the parents' branch lists.
        """
        if not entries:
            return
        sids = [e[0] for e in entries]
        commands: list[tuple[str, tuple[Any, ...]]] = [
            ("zrem", (self._keys.deadlines, *sids)),
            ("zrem", (self._keys.ended, *sids)),
        ]
        commands += [
            ("delete", (self._keys.checkpoint(cp),)) for _, _, _, cps, _ in entries for cp in cps
        ]
        await self.pipe(commands)
        owned = [(sid, user, o) for sid, user, _, _, o in entries if user is not None]
        await self._unlive(owned, forget=True)
        drops = [
            (self._keys.session(parent), [str(wall_us()), sid])
            for sid, _, parent, _, _ in entries
            if parent is not None
        ]
        for failure in await self._scripts.many_settled("branch_drop", drops):
            if isinstance(failure, Exception):
                raise failure
        await self.forget_empty_users(list(dict.fromkeys(user for _, user, _ in owned)))

    async def forget(
        self,
        session_id: str,
        *,
        user_id: str | None,
        parent_id: str | None,
        checkpoint_ids: Sequence[str],
        ordinal: str | None,
    ) -> None:
        """Remove every index entry of a deleted/purged session; its user's only while
        the user's index holds the id under ``ordinal`` (the removed header's, see
        :meth:`unlive`): a session saved again under the id meanwhile stays listed."""
        await self.forget_many([(session_id, user_id, parent_id, checkpoint_ids, ordinal)])

    async def forget_empty_users(self, user_ids: Sequence[str]) -> None:
        """Drop the ordinal counter of each of ``user_ids`` left with no session."""
        calls: list[tuple[Sequence[str], Sequence[Any]]] = [
            (self._keys.user(user_id), []) for user_id in user_ids
        ]
        for failure in await self._scripts.many_settled("user_gc", calls):
            if isinstance(failure, Exception):
                raise failure
