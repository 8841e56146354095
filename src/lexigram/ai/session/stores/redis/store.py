"""``CacheSessionStore``: the session store on Redis (single server or Redis Cluster).

Every write to a session is one Lua script on the session's hash slot (see
``scripts.py``), so it is atomic across any number of processes. The layout is in
``keys.py``; the cross-slot indexes, and why they are re-checked, in ``indexes.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, ClassVar

from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.exceptions import (
    CheckpointNotFoundError,
    CorruptRecordError,
    SessionCapacityError,
    SessionNotFoundError,
    SessionStoreError,
    SessionValidationError,
    StoreUnavailableError,
)
from lexigram.ai.session.stores._common import (
    branch_header,
    check_append,
    check_batch_ids,
    parse_cursor,
)
from lexigram.ai.session.stores.base import (
    LIVE_STATUSES,
    AppendResult,
    SessionPage,
    SessionPatch,
    SessionRecord,
)
from lexigram.ai.session.stores.redis.base import new_op, record_name, text_map
from lexigram.ai.session.stores.redis.checkpoints import CheckpointOps
from lexigram.ai.session.stores.redis.indexes import wall_us
from lexigram.ai.session.stores.redis.sweeping import SweepOps
from lexigram.ai.session.stores.redis.wire import decode_header, decode_turns, to_us
from lexigram.ai.session.validation import check_patch, check_state, check_turns

__all__ = ["CacheSessionStore"]

_ENDED = frozenset({SessionStatus.CLOSED, SessionStatus.EXPIRED})
_SCAN_BATCH = 200
_GATHER = 32


class CacheSessionStore(CheckpointOps, SweepOps):
    """Sessions in Redis through ``redis.asyncio``; works on Redis Cluster (``cluster=True``).

    ``url`` is a ``redis://``/``rediss://``/``unix://`` URL (for a cluster, any node);
    ``client`` an existing ``Redis``/``RedisCluster`` to use instead (not closed by
    :meth:`close`). Keys start with ``key_prefix``. Deadlines are logical
    (``session_ttl`` seconds after the last update, compared with this store's
    clock); Redis key expiry never ends a session. With a TTL it is only a safety
    net: every key of a session expires ``purge_after_s`` plus one day after the
    session's deadline or end, long after the sweeper would have purged it.

    Every write is applied exactly once however often the client re-sends it
    (an operation id per call, see ``docs/backend-redis.md``).
    """

    backend_name: ClassVar[str] = "redis"

    # ----------------------------------------------------- contract (whole state)
    async def save(self, state: SessionState) -> None:
        _, now_us = self._clock()
        state = check_state(state)
        sid = state.session_id
        check_batch_ids(sid, state.turns)
        pairs, _, _ = self._encode_batch(state.turns)
        live = state.status in LIVE_STATUSES
        op = new_op()
        ordinal = await self._index.reserve(
            state.user_id, sid, cap=None, live=live, now_us=now_us, op=op
        )
        header = self._header_json(state, last_seq=len(state.turns), ordinal=ordinal)
        try:
            reply = await self._run("save", sid, [now_us, header, len(state.turns), *pairs], op=op)
        except StoreUnavailableError:
            raise  # outcome unknown: keep the reservation
        except BaseException:
            if ordinal is not None:
                await self._index.release(state.user_id, sid)
            raise
        if "e" in reply:
            if ordinal is not None:
                await self._index.release(state.user_id, sid)
            self._refuse(reply, sid)
        old_user = reply.get("u")
        if old_user is not None and old_user != state.user_id:
            await self._index.forget(sid, user_id=old_user, parent_id=None, checkpoint_ids=())
        if reply.get("new") and state.parent_session_id:
            await self._raw("branch_add", state.parent_session_id, [now_us, sid, wall_us()])
        await self._reindex(state, live=live)

    async def _reindex(self, state: SessionState, *, live: bool) -> None:
        """Make the indexes agree with a header just written whole."""
        sid = state.session_id
        if live:
            await self._index.mark_live(state.user_id, sid)
            deadline = self.deadline_for(state.updated_at)
            if deadline is not None:
                await self._index.add_deadline(sid, to_us(deadline))
        else:
            await self._index.ended(sid, state.user_id, to_us(state.updated_at))

    async def load(self, session_id: str) -> SessionState | None:
        # A MULTI of HGETALL + LRANGE: atomic like a script, and the cheapest way for
        # Redis to hand out a long list (a script copying it costs the server more).
        now, _ = self._clock()
        try:
            header, items = await self._scripts.pipeline(
                [
                    ("hgetall", (self.keys.header(session_id),)),
                    ("lrange", (self.keys.turns(session_id), 0, -1)),
                ],
                transaction=True,
            )
        except SessionStoreError as exc:
            if "WRONGTYPE" in str(exc):
                raise CorruptRecordError(
                    record_name(session_id), "a key of the session has the wrong Redis type"
                ) from None
            raise
        if not header:
            return None
        record = self._record(text_map(header, session_id), session_id, now)
        return replace(record.state, turns=self._turns(items, session_id))

    async def delete(self, session_id: str) -> None:
        _, now_us = self._clock()
        reply = await self._run("delete", session_id, [now_us], op=new_op())
        if "u" in reply:
            await self._index.forget(
                session_id, user_id=reply["u"], parent_id=reply.get("ps"), checkpoint_ids=reply["c"]
            )

    async def forget_user(self, user_id: str, session_ids: Sequence[str]) -> None:
        """Delete the user's counter and index keys and the erased sessions' retry replies."""
        from lexigram.ai.session.stores.erasure import forget_redis_user

        await forget_redis_user(self, user_id, session_ids)

    async def list_sessions(self, user_id: str) -> list[SessionState]:
        members = await self._scripts.command("zrange", self.keys.user_sessions(user_id), 0, -1)
        out: list[SessionState] = []
        ids = [m.decode() for m in members]
        for start in range(0, len(ids), _GATHER):
            chunk = ids[start : start + _GATHER]
            states = await asyncio.gather(*(self.load(sid) for sid in chunk))
            out.extend(s for s in states if s is not None and s.user_id == user_id)
        return out

    # ------------------------------------------------------------------- create
    async def create_session(
        self, state: SessionState, *, max_live_per_user: int | None = None
    ) -> SessionRecord:
        now, now_us = self._clock()
        state = check_state(state)
        sid = state.session_id
        check_batch_ids(sid, state.turns)
        pairs, _, _ = self._encode_batch(state.turns)
        self._header_json(state, last_seq=len(state.turns))  # refuse bad values before reserving
        # No separate existence check on the way: the create script refuses a taken
        # id atomically (and _insert says "exists" rather than "cap" when both apply).
        return await self._insert(
            state, pairs, now=now, now_us=now_us, cap=max_live_per_user, fork_seq=None, op=new_op()
        )

    # -------------------------------------------------------------------- reads
    async def load_record(self, session_id: str) -> SessionRecord | None:
        now, now_us = self._clock()
        reply = await self._run("record", session_id, [now_us])
        if "e" in reply:
            self._refuse(reply, session_id)
        return self._record(reply["h"], session_id, now) if "h" in reply else None

    async def get_turns(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after_seq: int | None = None,
        limit: int | None = None,
    ) -> list[SessionTurn]:
        if last is not None:
            # The chat path: a light script of two keys (no prelude, no clock).
            keys = [self.keys.header(session_id), self.keys.turns(session_id)]
            raw = await self._scripts.raw("turns_last", keys, [int(last)])
            reply = self._meta(raw[0] if isinstance(raw, list) else raw, session_id)
            if "e" in reply:
                self._refuse(reply, session_id)
            return self._turns(raw[1:] if isinstance(raw, list) else [], session_id)
        _, now_us = self._clock()
        args = self._after_args(now_us, after_seq, limit)
        reply, items = await self._run_turns("turns", session_id, args)
        if "e" in reply:
            self._refuse(reply, session_id)
        return self._turns(items, session_id)

    @staticmethod
    def _after_args(now_us: int, after_seq: int | None, limit: int | None) -> list[Any]:
        return [
            now_us,
            "after",
            "" if after_seq is None else str(int(after_seq)),
            "" if limit is None else str(max(int(limit), 0)),
        ]

    async def get_turn_seqs(
        self, session_id: str, *, after_seq: int | None = None, limit: int | None = None
    ) -> list[tuple[int, SessionTurn]]:
        _, now_us = self._clock()
        reply, items = await self._run_turns(
            "turns", session_id, self._after_args(now_us, after_seq, limit)
        )
        if "e" in reply:
            self._refuse(reply, session_id)
        turns = self._turns(items, session_id)
        seqs = _seqs_at(reply.get("r", ""), int(reply.get("i", 0)), len(turns))
        return list(zip(seqs, turns, strict=True))

    async def list_user_sessions(
        self,
        user_id: str,
        *,
        status: SessionStatus | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> SessionPage:
        now, _ = self._clock()
        below = parse_cursor(cursor)
        key = self.keys.user_sessions(user_id)
        top: str = "+inf" if below is None else f"({below}"
        batch = max(min(limit + 1, _SCAN_BATCH), 16)
        items: list[SessionState] = []
        damaged: list[str] = []
        last_ordinal: int | None = None
        while True:
            page = await self._scripts.command(
                "zrevrangebyscore", key, top, "-inf", start=0, num=batch, withscores=True
            )
            if not page:
                break
            ids = [m.decode() for m, _ in page]
            bad: list[str] = []
            headers = await self._index.headers(ids, damaged=bad)
            scores = [int(s) for _, s in page]
            for sid, score, data in zip(ids, scores, headers, strict=True):
                if sid in bad:
                    record = None
                elif data is None or data.get("u") != user_id:
                    continue  # a stale index entry
                else:
                    record = self._readable(data, sid, now)
                if record is None:
                    # A damaged session takes no place on the page: it is only named.
                    damaged.append(sid)
                    last_ordinal = score
                    continue
                if status is not None and record.state.status != status:
                    continue
                if len(items) == limit:
                    return SessionPage(items=items, next_cursor=str(last_ordinal), damaged=damaged)
                items.append(record.state)
                last_ordinal = score
            if len(page) < batch:
                break
            top = f"({int(page[-1][1])}"
        return SessionPage(items=items, next_cursor=None, damaged=damaged)

    async def count_live_sessions(self, user_id: str) -> int:
        _, now_us = self._clock()
        alive, _ = await self._index.live_status(user_id, now_us)
        return len(alive)

    # ------------------------------------------------------------------- writes
    async def append_turns(
        self,
        session_id: str,
        turns: Sequence[SessionTurn],
        *,
        max_turns: int | None = None,
        patch: SessionPatch | None = None,
    ) -> AppendResult:
        now, now_us = self._clock()
        batch = check_turns(turns, "turns")
        if patch is not None:
            check_patch(patch)
        pairs, tokens, costs = self._encode_batch(batch)
        args = [
            now_us,
            self._deadline_arg(now),
            "" if max_turns is None else str(max_turns),
            len(batch),
            tokens,
            costs,
            self._patch_json(patch),
            *pairs,
        ]
        reply = await self._run("append", session_id, args, op=new_op())
        if "e" in reply:
            if reply["e"] == "CHK":
                check_append(
                    session_id, SessionStatus(reply["a"]), int(reply["b"]), len(batch), max_turns
                )
            self._refuse(reply, session_id)
        record = self._record(reply["h"], session_id, now)
        closed = bool(reply["c"])
        if closed:
            await self._index.ended(session_id, record.state.user_id, now_us)
        return AppendResult(record=record, closed_by_cap=closed, first_seq=int(reply["f"]))

    async def update_session(self, session_id: str, patch: SessionPatch) -> SessionRecord:
        now, now_us = self._clock()
        check_patch(patch)
        reply = await self._run(
            "update",
            session_id,
            [now_us, self._deadline_arg(now), self._patch_json(patch)],
            op=new_op(),
        )
        if "e" in reply:
            self._refuse(reply, session_id)
        return self._record(reply["h"], session_id, now)

    async def transition(
        self,
        session_id: str,
        to_status: SessionStatus,
        *,
        allowed_from: frozenset[SessionStatus],
    ) -> SessionRecord:
        now, now_us = self._clock()
        target = SessionStatus(to_status)
        allowed = ",".join(SessionStatus(s).value for s in allowed_from)
        reply = await self._run(
            "transition",
            session_id,
            [now_us, self._deadline_arg(now), target.value, allowed],
            op=new_op(),
        )
        if "e" in reply:
            self._refuse(reply, session_id)
        record = self._record(reply["h"], session_id, now)
        if target in _ENDED:
            await self._index.ended(session_id, record.state.user_id, now_us)
        return record

    async def pop_turn(self, session_id: str) -> SessionTurn | None:
        now, now_us = self._clock()
        reply = await self._run("pop", session_id, [now_us, self._deadline_arg(now)], op=new_op())
        if "e" in reply:
            self._refuse(reply, session_id)
        if reply.get("t") is None:
            return None
        return decode_turns([reply["t"]], record=f"{record_name(session_id)} turn")[0]

    async def clear_turns(self, session_id: str) -> int:
        now, now_us = self._clock()
        reply = await self._run("clear", session_id, [now_us, self._deadline_arg(now)], op=new_op())
        if "e" in reply:
            self._refuse(reply, session_id)
        return int(reply["n"])

    # ----------------------------------------------------------------- branches
    async def fork_session(
        self,
        source_id: str,
        branch: SessionState,
        *,
        from_checkpoint: str | None = None,
        max_branches: int | None = None,
        max_live_per_user: int | None = None,
    ) -> SessionRecord:
        now, now_us = self._clock()
        branch = check_state(branch, "branch")
        bid = branch.session_id
        source_exists = await self._scripts.command("exists", self.keys.header(source_id))
        if not source_exists:
            raise SessionNotFoundError(source_id)
        if await self._exists(bid, now_us):
            raise SessionValidationError("session_id", f"session {bid!r} already exists")
        # fork_source is re-entrant (a re-sent call finds its own reservation and
        # skips the branch cap); the branch's create is exactly-once through ``op``.
        op = new_op()
        reply, raw_turns = await self._run_turns(
            "fork_source",
            source_id,
            [
                now_us,
                bid,
                "" if max_branches is None else str(max_branches),
                from_checkpoint or "",
                wall_us(),
            ],
        )
        if "e" in reply:
            if reply["e"] == "CAPB":
                raise SessionCapacityError(
                    f"session {source_id!r} already has {max_branches} branches "
                    f"(max_branches_per_session={max_branches})"
                )
            if reply["e"] == "CPNF":
                raise CheckpointNotFoundError(str(from_checkpoint))
            self._refuse(reply, source_id)
        try:
            point, _ = decode_header(reply["h"], record=record_name(source_id))
            turns = self._turns(raw_turns, source_id)
            state = branch_header(
                point,
                branch,
                source_id,
                turns=turns,
                turn_count=len(turns),
                total_tokens=sum(t.tokens_used for t in turns),
                total_cost=sum(t.cost for t in turns),
            )
            pairs, _, _ = self._encode_batch(turns)
            record = await self._insert(
                state,
                pairs,
                now=now,
                now_us=now_us,
                cap=max_live_per_user,
                fork_seq=len(turns),
                op=op,
            )
        except StoreUnavailableError:
            raise  # outcome unknown: the branch may exist, keep its place
        except BaseException:
            await self._raw("branch_drop", source_id, [now_us, bid])
            raise
        parent = state.parent_session_id
        if parent is not None and parent != source_id:
            # Both steps are idempotent: re-sent, they leave the same indexes.
            await self._raw("branch_drop", source_id, [now_us, bid])
            await self._raw("branch_add", parent, [now_us, bid, wall_us()])
        return record

    async def list_branches(self, session_id: str) -> list[SessionRecord]:
        now, _ = self._clock()
        members = await self._scripts.command("zrange", self.keys.branches(session_id), 0, -1)
        ids = [m.decode() for m in members]
        out: list[SessionRecord] = []
        damaged: list[str] = []  # an unreadable branch is left out of the listing
        for sid, data in zip(ids, await self._index.headers(ids, damaged=damaged), strict=True):
            if data is not None and data.get("ps") == session_id:
                record = self._readable(data, sid, now)
                if record is not None:
                    out.append(record)
        return out

    def _readable(self, data: Any, session_id: str, now: datetime) -> SessionRecord | None:
        """The record of a stored header, or None when it cannot be decoded."""
        try:
            return self._record(data, session_id, now)
        except CorruptRecordError:
            return None


def _seqs_at(ranges: str, start: int, count: int) -> list[int]:
    """The ``count`` seqs from live position ``start`` of the live ranges ``"a:b,c:d"``."""
    out: list[int] = []
    skip = start
    for part in ranges.split(",") if ranges else []:
        first_s, _, last_s = part.partition(":")
        first, last = int(first_s), int(last_s)
        size = last - first + 1
        if skip >= size:
            skip -= size
            continue
        take = min(size - skip, count - len(out))
        out.extend(range(first + skip, first + skip + take))
        skip = 0
        if len(out) == count:
            break
    if len(out) != count:
        raise SessionStoreError(f"live ranges {ranges!r} do not cover {count} turns from {start}")
    return out
