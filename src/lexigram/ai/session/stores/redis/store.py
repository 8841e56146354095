"""``CacheSessionStore``: the session store on Redis (single server or Redis Cluster).

Every write to a session is one Lua script on the session's hash slot (see
``scripts.py``), so it is atomic across any number of processes. The layout is in
``keys.py``; the cross-slot indexes, and why they are re-checked, in ``indexes.py``.

The store is a facade: sessions, turns and branches are here; it holds a
:class:`RedisCore` (client, keys, scripts, clock, replies) and hands it to its
components :class:`CheckpointOps` (``checkpoints.py``) and :class:`SweepOps`
(``sweeping.py``); the arguments scripts receive are encoded in ``inputs.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Self

from lexigram.contracts.ai.session import (
    SessionCheckpoint,
    SessionState,
    SessionStatus,
    SessionTurn,
)
from lexigram.logging import get_logger

from lexigram.ai.session.exceptions import (
    CheckpointNotFoundError,
    CorruptRecordError,
    DuplicateTurnError,
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
    BATCH_CONCURRENCY,
    LIVE_STATUSES,
    AppendResult,
    BatchOutcome,
    Clock,
    SessionPage,
    SessionPatch,
    SessionRecord,
    SessionStore,
    StoredTurns,
    TurnReuse,
    check_fork_seq,
)
from lexigram.ai.session.stores.redis.checkpoints import CheckpointOps
from lexigram.ai.session.stores.redis.client import AnyRedis
from lexigram.ai.session.stores.redis.core import (
    DEFAULT_PURGE_AFTER_S,
    RedisCore,
    check_options,
    new_op,
    record_name,
    text_map,
    wrong_type_is_damage,
)
from lexigram.ai.session.stores.redis.indexes import RESERVATION_GRACE_US, wall_us
from lexigram.ai.session.stores.redis.inputs import header_json, patch_json, turn_args
from lexigram.ai.session.stores.redis.keys import own_keys
from lexigram.ai.session.stores.redis.sweeping import SweepOps
from lexigram.ai.session.stores.redis.wire import decode_header, decode_turns, to_us
from lexigram.ai.session.validation import (
    check_caps,
    check_count,
    check_id,
    check_instant,
    check_mapping,
    check_optional_count,
    check_optional_guard,
    check_patch,
    check_state,
    check_status,
    check_status_filter,
    check_statuses,
    check_turn_range,
    check_turns,
    new_totals,
)

if TYPE_CHECKING:
    from lexigram.ai.session.config import SessionConfig


_log = get_logger(__name__)

__all__ = ["CacheSessionStore"]

_ENDED = frozenset({SessionStatus.CLOSED, SessionStatus.EXPIRED})
_SCAN_BATCH = 200
_STATUS_VALUES = frozenset(s.value for s in SessionStatus)
_GATHER = 32


#: How old a reservation without its session must be to be taken for a fork or create
#: that died (10 minutes): one still writing would otherwise lose its place (under
#: ``max_branches``, or in the user's index) and end up unlisted.
DEAD_FORK_US = 600_000_000


class CacheSessionStore(SessionStore):
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
    supports_key_guard: ClassVar[bool] = True
    supports_owner_guard = True

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        client: AnyRedis | None = None,
        key_prefix: str = "lexigram:session",
        pool_size: int = 50,
        cluster: bool = False,
        session_ttl: int = 0,
        purge_after_s: int = DEFAULT_PURGE_AFTER_S,
        clock: Clock | None = None,
    ) -> None:
        check_options(
            session_ttl=session_ttl,
            key_prefix=key_prefix,
            pool_size=pool_size,
            purge_after_s=purge_after_s,
            cluster=cluster,
        )
        super().__init__(session_ttl=session_ttl, clock=clock)
        self._core = RedisCore(
            url,
            client=client,
            key_prefix=key_prefix,
            pool_size=pool_size,
            cluster=cluster,
            session_ttl=lambda: self.session_ttl,
            purge_after_s=purge_after_s,
            now=self.now,
            deadline_for=self.deadline_for,
        )
        self.url = url
        self.cluster = self._core.cluster
        self.keys = self._core.keys
        self._checkpoints = CheckpointOps(self._core)
        self._sweep = SweepOps(self._core)
        self._closed = False

    @classmethod
    def from_config(cls, config: SessionConfig) -> Self:
        """Build the store from ``SessionConfig`` (``redis_url``, ``redis_cluster``, ...)."""
        return cls(
            config.redis_url,
            key_prefix=config.key_prefix,
            pool_size=config.redis_pool_size,
            cluster=config.redis_cluster,
            session_ttl=config.session_ttl,
            purge_after_s=config.purge_after_s,
        )

    @property
    def client(self) -> AnyRedis:
        """The ``redis.asyncio`` client of the running event loop (one per loop)."""
        return self._core.client

    # ---------------------------------------------------------------- lifecycle
    async def initialize(self) -> None:
        """Check the connection and the server's mode, load the scripts, and record the
        key expiry of ended sessions when none is recorded (``SweepOps.note_grace``).

        ``StoreUnavailableError`` when unreachable; ``SessionStoreError`` naming
        ``redis_cluster`` when the server is a Cluster node and the store is not set for one.
        """
        await self.ping()
        await self._core.check_mode()
        await self._core.scripts.load_all()
        await self._sweep.note_grace()

    async def ping(self) -> None:
        """Round-trip to Redis; ``StoreUnavailableError`` (password masked) when it fails."""
        await self._core.ping()

    async def holds_data(self) -> bool:
        """Whether a store was ever opened or anything of one is stored under this key
        prefix: its global indexes or retention record, else (one SCAN of the key space,
        every primary of a cluster) a session header or a user index. The CLI's
        commands that only read, erase or rotate keys refuse a prefix holding nothing:
        on Redis a mistyped ``--key-prefix`` would otherwise pass for an empty store
        whose records "need no key"."""
        keys = self._core.keys
        async with self._core.scripts.guarded("EXISTS") as client:
            # The retention record (g:{index}:g) too: initialize() writes it, so it tells a
            # store emptied by erasure (listing it must answer "nothing") from a prefix
            # nothing ever opened; one that a command opened under a typo passes as well.
            if await client.exists(keys.deadlines, keys.ended, keys.ended_grace):
                return True
        escaped = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in keys.prefix)
        async with self._core.scripts.guarded("SCAN") as client:
            for kind, suffix in (("s", "h"), ("u", "s")):
                mine = own_keys(keys.prefix, kind, suffix)
                match = f"{escaped}:{kind}:{{*}}:{suffix}"
                async for key in client.scan_iter(match=match, count=1000):
                    if mine(key):
                        return True
        return False

    async def close(self) -> None:
        """Close the connection pool (once; later calls do nothing)."""
        if self._closed:
            return
        self._closed = True
        await self._core.scripts.close()  # every event loop's client the store made

    # ----------------------------------------------------- contract (whole state)
    async def save(self, state: SessionState) -> None:
        _, now_us = self._core.clock()
        state = check_state(state)
        sid = state.session_id
        try:
            check_batch_ids(sid, state.turns)
        except DuplicateTurnError:
            # A purged id still under its tombstone is refused first, as elsewhere.
            tomb = await self._core.scripts.command("get", self._core.keys.tombstone(sid))
            if tomb is not None and int(tomb) > now_us:
                raise SessionNotFoundError(sid) from None
            raise
        pairs, _, _ = turn_args(state.turns)
        live = state.status in LIVE_STATUSES
        for _attempt in range(3):  # again only when a delete came between the two steps
            op = new_op()
            ordinal = await self._core.index.reserve(
                state.user_id, sid, cap=None, live=live, now_us=now_us, op=op
            )
            header = self._header_json(state, last_seq=len(state.turns), ordinal=ordinal)
            try:
                reply = await self._core.run(
                    "save", sid, [now_us, header, len(state.turns), *pairs], op=op
                )
            except (StoreUnavailableError, asyncio.CancelledError):
                raise  # outcome unknown (a cancelled call may have run): keep the reservation
            except BaseException:
                if ordinal is not None:
                    await self._core.index.release(state.user_id, sid, ordinal)
                raise
            if reply.get("e") not in ("GONE", "HELD"):
                break
            if reply["e"] == "GONE":
                # Indexed but not stored: deleted meanwhile (its index step to come), a
                # create in progress, or one that died after its reservation. Drop the
                # entry and index the session anew: the late step of a delete or the undo
                # of the refused create goes by its own ordinal and leaves the new one.
                await self._core.index.release(state.user_id, sid, None)
            else:
                # HELD: stored for another user, and this user's index holds the id
                # already (a create in progress, or an entry left behind).
                await self._drop_left_entry(state.user_id, sid)
        if "e" in reply:
            if ordinal is not None:
                await self._core.index.release(state.user_id, sid, ordinal)
            if reply["e"] in ("GONE", "HELD"):
                raise SessionValidationError(
                    "session_id",
                    f"user {state.user_id!r}'s index entry of session {sid!r} changed under "
                    "each of 3 attempts (creates or deletes of the id by other processes); "
                    "nothing was saved",
                )
            self._core.refuse(reply, sid)
        old_user = reply.get("u")
        if old_user is not None and old_user != state.user_id:
            await self._core.index.forget(
                sid, user_id=old_user, parent_id=None, checkpoint_ids=(), ordinal=reply.get("oo")
            )
        old_parent = reply.get("ps")
        if old_parent and old_parent != state.parent_session_id:
            # Re-parented by the save: no longer one of the old parent's branches.
            await self._core.raw("branch_drop", old_parent, [now_us, sid])
        if state.parent_session_id and (reply.get("new") or old_parent != state.parent_session_id):
            await self._core.raw("branch_add", state.parent_session_id, [now_us, sid, wall_us()])
        await self._reindex(state, live=live, ordinal=reply.get("o"))

    async def _reindex(self, state: SessionState, *, live: bool, ordinal: str | None) -> None:
        """Make the indexes agree with a header just written whole (``ordinal``: its
        ``o``)."""
        sid = state.session_id
        if live:
            await self._core.index.mark_live(state.user_id, sid)
            deadline = self.deadline_for(state.updated_at)
            if deadline is not None:
                await self._core.index.add_deadline(sid, to_us(deadline))
        else:
            await self._core.index.ended(sid, state.user_id, to_us(state.updated_at), ordinal)

    async def load(self, session_id: str) -> SessionState | None:
        return await self._load(session_id, None)

    async def load_reusing(self, session_id: str, reuse: TurnReuse) -> SessionState | None:
        """:meth:`load`, showing ``reuse`` the live turns' stored texts first."""
        return await self._load(session_id, reuse)

    async def _load(self, session_id: str, reuse: TurnReuse | None) -> SessionState | None:
        session_id = check_id(session_id, "session_id")
        # A MULTI of HGETALL + LRANGE: atomic like a script, and the cheapest way for
        # Redis to hand out a long list (a script copying it costs the server more).
        now, _ = self._core.clock()
        keys = self._core.keys
        with wrong_type_is_damage(session_id):
            header, items = await self._core.scripts.atomic_read(
                ("HGETALL", keys.header(session_id)), ("LRANGE", keys.turns(session_id), 0, -1)
            )
        if not header:
            return None
        record = self._core.record(text_map(header, session_id), session_id, now)
        turns = None
        if reuse is not None and items:
            turns = reuse(record.state, StoredTurns(len(items), texts=items))
        if turns is None:
            turns = self._core.turns(items, session_id)
        return replace(record.state, turns=turns)

    async def delete(self, session_id: str) -> None:
        session_id = check_id(session_id, "session_id")
        _, now_us = self._core.clock()
        op = new_op()
        reply = await self._core.run("delete", session_id, [now_us], op=op)
        if "u" in reply:
            forgotten = await _late_index_step(
                self._core.index.forget(
                    session_id,
                    user_id=reply["u"],
                    parent_id=reply.get("ps"),
                    checkpoint_ids=reply["c"],
                    ordinal=reply.get("o"),
                ),
                "delete",
                session_id,
            )
            if forgotten:
                await self._core.drop_records([self._core.keys.op(session_id, op, "delete")])

    async def forget_user(self, user_id: str, session_ids: Sequence[str]) -> None:
        """Delete the user's counter and index keys, the erased sessions' retry replies and
        the tombstones naming the user (one SCAN)."""
        user_id = check_id(user_id, "user_id")
        from lexigram.ai.session.stores.erasure import forget_redis_user

        await forget_redis_user(self, user_id, session_ids)

    async def list_sessions(self, user_id: str) -> list[SessionState]:
        user_id = check_id(user_id, "user_id")
        members = await self._core.scripts.command(
            "zrange", self._core.keys.user_sessions(user_id), 0, -1
        )
        out: list[SessionState] = []
        ids = [m.decode() for m in members]
        for start in range(0, len(ids), _GATHER):
            chunk = ids[start : start + _GATHER]
            states = await asyncio.gather(*(self._load_healthy(sid) for sid in chunk))
            out.extend(s for s in states if s is not None and s.user_id == user_id)
        return out

    async def _load_healthy(self, session_id: str) -> SessionState | None:
        """``load``, with a damaged session left out as ``list_user_sessions`` leaves it."""
        try:
            return await self.load(session_id)
        except CorruptRecordError:
            return None

    # ------------------------------------------------------------------- create
    async def create_session(
        self,
        state: SessionState,
        *,
        max_live_per_user: int | None = None,
        fork_seq: int | None = None,
    ) -> SessionRecord:
        check_caps(max_live_per_user=max_live_per_user)
        now, now_us = self._core.clock()
        state = check_state(state)
        fork_seq = check_fork_seq(fork_seq, state)
        sid = state.session_id
        check_batch_ids(sid, state.turns)
        pairs, _, _ = turn_args(state.turns)
        # Refuse bad values before reserving.
        self._header_json(state, last_seq=len(state.turns), fork_seq=fork_seq)
        # No separate existence check on the way: the create script refuses a taken
        # id atomically (and _insert says "exists" rather than "cap" when both apply).
        record = await self._insert(
            state,
            pairs,
            now=now,
            now_us=now_us,
            cap=max_live_per_user,
            fork_seq=fork_seq,
            op=new_op(),
        )
        if state.parent_session_id:
            # A branch written whole (an import) is one of its parent's, as after a fork.
            await self._core.raw("branch_add", state.parent_session_id, [now_us, sid, wall_us()])
        return record

    # -------------------------------------------------------------------- reads
    async def load_record(self, session_id: str) -> SessionRecord | None:
        session_id = check_id(session_id, "session_id")
        now, now_us = self._core.clock()
        reply = await self._core.run("record", session_id, [now_us])
        if "e" in reply:
            self._core.refuse(reply, session_id)
        return self._core.record(reply["h"], session_id, now) if "h" in reply else None

    async def get_turns(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after_seq: int | None = None,
        limit: int | None = None,
    ) -> list[SessionTurn]:
        session_id = check_id(session_id, "session_id")
        check_turn_range(last, after_seq, limit)
        if last is not None:
            return await self._last_turns(session_id, last)
        _, now_us = self._core.clock()
        args = self._after_args(now_us, after_seq, limit)
        reply, items = await self._core.run_turns("turns", session_id, args)
        if "e" in reply:
            self._core.refuse(reply, session_id)
        return self._core.turns(items, session_id)

    async def _last_turns(self, session_id: str, last: int) -> list[SessionTurn]:
        """The chat path: one LRANGE, as a plain client would send it.

        Turns exist only while their session does, so a non-empty answer needs no
        other check; an empty one is told apart from a missing session by its header.
        """
        core = self._core
        items: list[Any] = []
        with wrong_type_is_damage(session_id):
            if last > 0:
                items = await core.scripts.fast("LRANGE", core.keys.turns(session_id), -last, -1)
            if not items and not await core.scripts.fast("EXISTS", core.keys.header(session_id)):
                raise SessionNotFoundError(session_id)
        return core.turns(items, session_id)

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
        session_id = check_id(session_id, "session_id")
        check_turn_range(None, after_seq, limit)
        _, now_us = self._core.clock()
        reply, items = await self._core.run_turns(
            "turns", session_id, self._after_args(now_us, after_seq, limit)
        )
        if "e" in reply:
            self._core.refuse(reply, session_id)
        turns = self._core.turns(items, session_id)
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
        user_id = check_id(user_id, "user_id")
        status = check_status_filter(status)
        check_count(limit, "limit", minimum=1)
        now, now_us = self._core.clock()
        below = parse_cursor(cursor)
        key = self._core.keys.user_sessions(user_id)
        top: str = "+inf" if below is None else f"({below}"
        # A status filter may pass over many sessions: larger pages, and only the
        # status fields read of those it leaves out (10,000 sessions, a status none
        # has: 1.6-2.6 s before, reading every header whole 51 at a time).
        batch = _SCAN_BATCH if status is not None else max(min(limit + 1, _SCAN_BATCH), 16)
        items: list[SessionState] = []
        damaged: list[str] = []
        last_ordinal: int | None = None
        while True:
            page = await self._core.scripts.command(
                "zrevrangebyscore", key, top, "-inf", start=0, num=batch, withscores=True
            )
            if not page:
                break
            ids = [m.decode() for m, _ in page]
            scores = [int(s) for _, s in page]
            if status is not None:
                ids, scores = await self._maybe(ids, scores, user_id, status, now_us)
            bad: list[str] = []
            headers = await self._core.index.headers(ids, damaged=bad)
            for sid, score, data in zip(ids, scores, headers, strict=True):
                if sid in bad:
                    record = None
                elif data is None or (data.get("u") and data["u"] != user_id):
                    continue  # a stale index entry (a header without its user is damaged)
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

    async def _maybe(
        self,
        ids: list[str],
        scores: list[int],
        user_id: str,
        status: SessionStatus,
        now_us: int,
    ) -> tuple[list[str], list[int]]:
        """The ids (and scores) whose stored status fields may give ``status``: a
        well-formed header of this user with another effective status is left out; any
        other is kept, to be read whole (and named when damaged)."""
        probes = await self._core.index.probe(ids, ("s", "ex", "u"))
        wanted = status.value
        kept: list[str] = []
        kept_scores: list[int] = []
        for sid, score, probe in zip(ids, scores, probes, strict=True):
            if probe is not None:
                stored, expires, owner = probe
                if owner == user_id and stored in _STATUS_VALUES:
                    effective = stored
                    if stored in ("active", "suspended") and expires is not None:
                        if not expires.isdecimal():
                            effective = None  # damaged: read whole, named
                        elif int(expires) <= now_us:
                            effective = "expired"
                    if effective is not None and effective != wanted:
                        continue
            kept.append(sid)
            kept_scores.append(score)
        return kept, kept_scores

    async def count_live_sessions(self, user_id: str) -> int:
        user_id = check_id(user_id, "user_id")
        _, now_us = self._core.clock()
        alive, _ = await self._core.index.live_status(user_id, now_us)
        return len(alive)

    async def id_taken(self, session_id: str) -> bool:
        session_id = check_id(session_id, "session_id")
        _, now_us = self._core.clock()
        return await self._core.exists(session_id, now_us)

    # ------------------------------------------------------------------- writes
    async def append_turns(
        self,
        session_id: str,
        turns: Sequence[SessionTurn],
        *,
        max_turns: int | None = None,
        patch: SessionPatch | None = None,
        key_guard: str | None = None,
        owner: str | None = None,
    ) -> AppendResult:
        session_id = check_id(session_id, "session_id")
        check_optional_count(max_turns, "max_turns", minimum=1)
        check_optional_guard(key_guard)
        if owner is not None:
            check_id(owner, "owner")
        now, now_us = self._core.clock()
        batch = check_turns(turns, "turns")
        if patch is not None:
            check_patch(patch)
        pairs, tokens, costs = turn_args(batch)
        args = [
            now_us,
            self._core.deadline_arg(now),
            "" if max_turns is None else str(max_turns),
            len(batch),
            tokens,
            costs,
            patch_json(patch, key_guard, owner),
            *pairs,
        ]
        reply = await self._core.run("append", session_id, args, op=new_op())
        if "e" in reply:
            if reply["e"] == "CHK":
                check_append(
                    session_id, SessionStatus(reply["a"]), int(reply["b"]), len(batch), max_turns
                )
            if reply["e"] == "DUP":
                # A repeat inside the batch is named before an id the session holds,
                # as on the other backends (the script names the first in batch order).
                check_batch_ids(session_id, batch)
            if reply["e"] == "TOT":
                # Totals past their limits: worded from the stored totals, as elsewhere.
                new_totals(int(reply["a"]), float(reply["b"]), batch)
                raise SessionValidationError("total_tokens", "past the limits of the totals")
            self._core.refuse(reply, session_id)
        record = self._core.written(reply["h"], session_id, now, "append")
        closed = bool(reply["c"])
        if closed:
            await _late_index_step(
                self._core.index.ended(
                    session_id, record.state.user_id, now_us, reply["h"].get("o")
                ),
                "append",
                session_id,
            )
        return AppendResult(record=record, closed_by_cap=closed, first_seq=int(reply["f"]))

    async def update_session(
        self,
        session_id: str,
        patch: SessionPatch,
        *,
        key_guard: str | None = None,
        owner: str | None = None,
    ) -> SessionRecord:
        session_id = check_id(session_id, "session_id")
        check_optional_guard(key_guard)
        if owner is not None:
            check_id(owner, "owner")
        now, now_us = self._core.clock()
        check_patch(patch)
        reply = await self._core.run(
            "update",
            session_id,
            [now_us, self._core.deadline_arg(now), patch_json(patch, key_guard, owner)],
            op=new_op(),
        )
        if "e" in reply:
            self._core.refuse(reply, session_id)
        return self._core.written(reply["h"], session_id, now, "update")

    async def transition(
        self,
        session_id: str,
        to_status: SessionStatus,
        *,
        allowed_from: frozenset[SessionStatus],
    ) -> SessionRecord:
        session_id = check_id(session_id, "session_id")
        target = check_status(to_status, "to_status")
        allowed = ",".join(s.value for s in check_statuses(allowed_from, "allowed_from"))
        now, now_us = self._core.clock()
        reply = await self._core.run(
            "transition",
            session_id,
            [now_us, self._core.deadline_arg(now), target.value, allowed],
            op=new_op(),
        )
        if "e" in reply:
            self._core.refuse(reply, session_id)
        record = self._core.written(reply["h"], session_id, now, "transition")
        if target in _ENDED:
            await _late_index_step(
                self._core.index.ended(
                    session_id, record.state.user_id, now_us, reply["h"].get("o")
                ),
                "transition",
                session_id,
            )
        elif _ENDED.intersection(map(SessionStatus, allowed_from)):
            # A CLOSED or EXPIRED session may have been made live again (the store
            # allows what ``allowed_from`` allows): live indexes again, as after a save.
            await self._reindex(record.state, live=True, ordinal=None)
        return record

    async def pop_turn(self, session_id: str) -> SessionTurn | None:
        session_id = check_id(session_id, "session_id")
        now, now_us = self._core.clock()
        reply = await self._core.run(
            "pop", session_id, [now_us, self._core.deadline_arg(now)], op=new_op()
        )
        if "e" in reply:
            self._core.refuse(reply, session_id)
        if reply.get("t") is None:
            return None
        return decode_turns([reply["t"]], record=f"{record_name(session_id)} turn")[0]

    async def clear_turns(self, session_id: str) -> int:
        session_id = check_id(session_id, "session_id")
        now, now_us = self._core.clock()
        reply = await self._core.run(
            "clear", session_id, [now_us, self._core.deadline_arg(now)], op=new_op()
        )
        if "e" in reply:
            self._core.refuse(reply, session_id)
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
        owner: str | None = None,
    ) -> SessionRecord:
        source_id = check_id(source_id, "source_id")
        if from_checkpoint is not None:
            check_id(from_checkpoint, "from_checkpoint")
        if owner is not None:
            check_id(owner, "owner")
        check_caps(max_branches=max_branches, max_live_per_user=max_live_per_user)
        now, now_us = self._core.clock()
        branch = check_state(branch, "branch")
        bid = branch.session_id
        source_exists = await self._core.scripts.command(
            "exists", self._core.keys.header(source_id)
        )
        if not source_exists:
            raise SessionNotFoundError(source_id)
        if await self._core.exists(bid, now_us):
            raise SessionValidationError("session_id", f"session {bid!r} already exists")
        # fork_source is re-entrant (a re-sent call finds its own reservation and
        # skips the branch cap); the branch's create is exactly-once through ``op``.
        op = new_op()
        args: list[Any] = [
            now_us,
            bid,
            "" if max_branches is None else str(max_branches),
            from_checkpoint or "",
            wall_us(),
            op,
            RESERVATION_GRACE_US,
        ]
        reply, raw_turns = await self._core.run_turns("fork_source", source_id, args)
        if reply.get("e") == "CAPB" and await self._drop_dead_branch_reservations(source_id):
            args[4] = wall_us()
            reply, raw_turns = await self._core.run_turns("fork_source", source_id, args)
        if "e" in reply:
            if reply["e"] == "RESERVED":  # another fork is creating this id right now
                raise SessionValidationError("session_id", f"session {bid!r} already exists")
            if reply["e"] == "CAPB":
                raise SessionCapacityError(
                    f"session {source_id!r} has reached max_branches_per_session={max_branches}"
                )
            if reply["e"] == "CPNF":
                # The user's cap is judged before the checkpoint on the other backends.
                if (
                    max_live_per_user is not None
                    and await self.count_live_sessions(branch.user_id) >= max_live_per_user
                ):
                    raise SessionCapacityError(
                        f"user {branch.user_id!r} already has {max_live_per_user} live "
                        f"sessions (max_sessions_per_user={max_live_per_user})"
                    )
                raise CheckpointNotFoundError(str(from_checkpoint))
            self._core.refuse(reply, source_id)
        try:
            point, _ = decode_header(reply["h"], record=record_name(source_id))
            if owner is not None and point.user_id != owner:
                # Read in the same script as the turns: the id now holds another
                # user's session (the reservation is dropped below).
                raise SessionNotFoundError(source_id)
            turns = self._core.turns(raw_turns, source_id)
            state = branch_header(
                point,
                branch,
                source_id,
                turns=turns,
                turn_count=len(turns),
                total_tokens=sum(t.tokens_used for t in turns),
                total_cost=sum((t.cost for t in turns), 0.0),
            )
            pairs, _, _ = turn_args(turns)
            record = await self._insert(
                state,
                pairs,
                now=now,
                now_us=now_us,
                cap=max_live_per_user,
                fork_seq=len(turns),
                op=op,
            )
        except (StoreUnavailableError, asyncio.CancelledError):
            raise  # outcome unknown (a cancelled call may have run): the branch may exist
        except BaseException:
            await self._core.raw("branch_drop", source_id, [now_us, bid, op])
            raise
        parent = state.parent_session_id
        if parent is not None and parent != source_id:
            # Both steps are idempotent: re-sent, they leave the same indexes.
            await self._core.raw("branch_drop", source_id, [now_us, bid, op])
            await self._core.raw("branch_add", parent, [now_us, bid, wall_us()])
        return record

    async def _drop_dead_branch_reservations(self, source_id: str) -> int:
        """Release the source's branch reservations whose fork never wrote its branch.

        A fork whose branch write failed with its outcome unknown (Redis unreachable,
        a slot being resharded) keeps its place under ``max_branches`` in case the
        branch was written. One older than ``DEAD_FORK_US`` (far beyond the longest a
        fork's calls take with their retries, about six socket timeouts) whose branch
        does not exist is released here (only that fork's own reservation, by its
        operation id); how many were released.
        """
        core = self._core
        pending = await core.scripts.command("hgetall", core.keys.session_key(source_id, "p"))
        oldest = wall_us() - DEAD_FORK_US
        stale: list[tuple[str, str]] = []
        for raw_id, raw_mark in (pending or {}).items():
            at, _, op = raw_mark.decode("utf-8", "replace").partition("|")
            if op and at.isdecimal() and int(at) < oldest:
                stale.append((raw_id.decode("utf-8", "replace"), op))
        if not stale:
            return 0
        probes = await core.index.probe([bid for bid, _ in stale], ("u",))
        _, now_us = core.clock()
        dropped = 0
        for (bid, op), probe in zip(stale, probes, strict=True):
            if probe is not None and probe[0] is None:  # no header: the branch never appeared
                await core.raw("branch_drop", source_id, [now_us, bid, op])
                dropped += 1
        return dropped

    async def list_branches(self, session_id: str) -> list[SessionRecord]:
        session_id = check_id(session_id, "session_id")
        now, _ = self._core.clock()
        members = await self._core.scripts.command(
            "zrange", self._core.keys.branches(session_id), 0, -1
        )
        if members and not await self._core.scripts.command(
            "exists", self._core.keys.header(session_id)
        ):
            return []  # a missing session has no branches, whatever names it as parent
        ids = [m.decode() for m in members]
        out: list[SessionRecord] = []
        damaged: list[str] = []  # an unreadable branch is left out of the listing
        for sid, data in zip(
            ids, await self._core.index.headers(ids, damaged=damaged), strict=True
        ):
            if data is not None and data.get("ps") == session_id:
                record = self._readable(data, sid, now)
                if record is not None:
                    out.append(record)
        return out

    def _readable(self, data: Any, session_id: str, now: datetime) -> SessionRecord | None:
        """The record of a stored header, or None when it cannot be decoded."""
        try:
            return self._core.record(data, session_id, now)
        except CorruptRecordError:
            return None

    # ------------------------------------------------------------------- insert
    def _header_json(
        self,
        state: SessionState,
        *,
        last_seq: int,
        fork_seq: int | None = None,
        ordinal: int | None = None,
    ) -> bytes:
        expires_at = self.deadline_for(state.updated_at) if state.status in LIVE_STATUSES else None
        return header_json(
            state, expires_at=expires_at, last_seq=last_seq, fork_seq=fork_seq, ordinal=ordinal
        )

    async def _insert(
        self,
        state: SessionState,
        pairs: list[Any],
        *,
        now: datetime,
        now_us: int,
        cap: int | None,
        fork_seq: int | None,
        op: str,
    ) -> SessionRecord:
        """Reserve the user's place, then write the session; undo the reservation on failure.

        Every step is keyed by the operation id ``op``: a step the client re-sends
        (its reply was lost) answers its first result again, so a create is applied
        once and reports what really happened. When the outcome of the write is
        unknown (Redis unreachable) the reservation is kept: it stops counting
        after ``RESERVATION_GRACE_US`` if the session never appeared.
        """
        core = self._core
        sid = state.session_id
        live = state.status in LIVE_STATUSES
        try:
            ordinal = await core.index.reserve(
                state.user_id, sid, cap=cap, live=live, now_us=now_us, op=op
            )
        except SessionCapacityError:
            # The contract checks the id before the cap: a taken id wins.
            if await core.exists(sid, now_us):
                raise SessionValidationError(
                    "session_id", f"session {sid!r} already exists"
                ) from None
            raise
        if ordinal is None and await self._drop_dead_create(state.user_id, sid, now_us):
            ordinal = await core.index.reserve(
                state.user_id, sid, cap=cap, live=live, now_us=now_us, op=op
            )
        if ordinal is None:
            raise await self._id_held(state.user_id, sid, now_us)
        k = len(pairs) // 2
        header = self._header_json(state, last_seq=k, fork_seq=fork_seq, ordinal=ordinal)
        deadline = self.deadline_for(state.updated_at) if live else None
        added = False
        try:
            # The deadline is indexed before the session exists: a writer dying in
            # between leaves an entry the sweeper drops, never an unindexed session.
            if deadline is not None:
                added = await core.index.add_deadline(sid, to_us(deadline), only_new=True)
            reply = await core.run("create", sid, [now_us, header, k, *pairs], op=op)
        except (StoreUnavailableError, asyncio.CancelledError):
            # Outcome unknown: a call cancelled after its script was sent may have run.
            # Undone, such a session was left in no index: past the per-user cap, never
            # expired, missed by erase_user (found by an outside cancellation audit).
            # The reservation and the deadline entry stay (dropped later if unused).
            raise
        except BaseException:
            await self._undo_insert(state.user_id, sid, ordinal, added)
            raise
        if "e" in reply:
            await self._undo_insert(state.user_id, sid, ordinal, added)
            core.refuse(reply, sid)
        if not live:
            await core.index.ended(sid, state.user_id, to_us(state.updated_at), str(ordinal))
        return core.record(reply["h"], sid, now)

    async def _drop_left_entry(self, user_id: str, session_id: str) -> None:
        """Drop ``user_id``'s index entry of ``session_id`` that a save moving the session
        to that user found in its way, unless it is a reservation younger than
        ``DEAD_FORK_US`` (a create of the id in progress): that refuses the save."""
        core = self._core
        reserved = dict(await core.index.live_members(user_id)).get(session_id)
        if reserved is not None:
            if reserved >= wall_us() - DEAD_FORK_US:
                left_s = max((reserved + DEAD_FORK_US - wall_us()) // 1_000_000, 1)
                raise SessionValidationError(
                    "session_id",
                    f"user {user_id!r}'s index holds session {session_id!r} for a create "
                    "of it in progress (another process); nothing was saved. If that "
                    f"create never finishes, its entry is dropped by a save or create of "
                    f"the id after {left_s} s",
                )
            await core.index.release(user_id, session_id, None, reserved=reserved)
            return
        held = await core.scripts.command("zscore", core.keys.user_sessions(user_id), session_id)
        if held is not None:  # no live entry: that very entry, by its ordinal
            await core.index.release(user_id, session_id, int(held))

    async def _drop_dead_create(self, user_id: str, session_id: str, now_us: int) -> bool:
        """Release the user's index entry of ``session_id`` left by a create that died.

        A process killed between a create's reservation and its write left the id in
        the user's index with no session: every later create of that id was refused
        as existing. An entry with no session, no tombstone and a live reservation
        older than ``DEAD_FORK_US`` (far beyond the longest a create's calls take) is
        dropped; True when it was.
        """
        core = self._core
        if await core.exists(session_id, now_us):
            return False
        reserved = dict(await core.index.live_members(user_id)).get(session_id)
        if reserved is None or reserved >= wall_us() - DEAD_FORK_US:
            return False
        # Only that entry: another create of the id may have dropped it and reserved anew.
        await core.index.release(user_id, session_id, None, reserved=reserved)
        return True

    async def _id_held(self, user_id: str, session_id: str, now_us: int) -> SessionValidationError:
        """Why a create of ``session_id`` for ``user_id`` found it in the user's index.

        A stored session (or a tombstone in force) "already exists". Otherwise nothing
        is stored under the id (``id_taken`` says False) and only the index entry holds
        it: a create of it in progress, or a create or delete whose process died or lost
        its connection between its two steps. The error says so, and when it is freed
        (an outside audit was told "purged recently … at least one hour" instead).
        """
        core = self._core
        if await core.exists(session_id, now_us):
            return SessionValidationError("session_id", f"session {session_id!r} already exists")
        reserved = dict(await core.index.live_members(user_id)).get(session_id)
        if reserved is not None:
            left_s = max((reserved + DEAD_FORK_US - wall_us()) // 1_000_000, 1)
            freed = f"the entry is dropped by the first create of it after {left_s} s"
        else:
            freed = (
                "the entry stays until removed "
                f"(ZREM {core.keys.user_sessions(user_id)} {session_id})"
            )
        return SessionValidationError(
            "session_id",
            f"session {session_id!r} is not stored, but user {user_id!r}'s index still "
            "holds its id: a create of it is in progress, or a create or delete of it "
            f"stopped between its two steps (its process died or lost Redis); {freed}",
        )

    async def _undo_insert(
        self, user_id: str, session_id: str, ordinal: int, deadline_added: bool
    ) -> None:
        """Release a reservation (and the deadline entry) of a create that was refused."""
        await self._core.index.release(user_id, session_id, ordinal)
        if deadline_added:
            await self._core.index.drop_deadline(session_id)

    # -------------------------------------------------- checkpoints (component)
    async def save_checkpoint(self, checkpoint: SessionCheckpoint) -> None:
        await self._checkpoints.save_checkpoint(checkpoint)

    async def load_checkpoint(self, checkpoint_id: str) -> SessionCheckpoint | None:
        checkpoint_id = check_id(checkpoint_id, "checkpoint_id")
        return await self._checkpoints.load_checkpoint(checkpoint_id)

    async def list_checkpoints(self, session_id: str) -> list[SessionCheckpoint]:
        session_id = check_id(session_id, "session_id")
        return await self._checkpoints.list_checkpoints(session_id)

    async def list_checkpoint_headers(self, session_id: str) -> list[SessionCheckpoint]:
        session_id = check_id(session_id, "session_id")
        return await self._checkpoints.list_checkpoint_headers(session_id)

    async def delete_checkpoint(self, checkpoint_id: str) -> bool:
        checkpoint_id = check_id(checkpoint_id, "checkpoint_id")
        return await self._checkpoints.delete_checkpoint(checkpoint_id)

    async def create_checkpoint(
        self,
        session_id: str,
        *,
        checkpoint_id: str,
        metadata: dict[str, Any] | None = None,
        max_checkpoints: int | None = None,
        include_turns: bool = True,
        key_guard: str | None = None,
    ) -> tuple[SessionCheckpoint, list[str]]:
        session_id = check_id(session_id, "session_id")
        check_id(checkpoint_id, "checkpoint_id")
        check_optional_count(max_checkpoints, "max_checkpoints", minimum=1)
        if metadata is not None:
            metadata = check_mapping(metadata, "metadata")
        check_optional_guard(key_guard)
        return await self._checkpoints.create_checkpoint(
            session_id,
            checkpoint_id=checkpoint_id,
            metadata=metadata,
            max_checkpoints=max_checkpoints,
            include_turns=include_turns,
            key_guard=key_guard,
        )

    async def restore_checkpoint(self, checkpoint_id: str) -> SessionState:
        checkpoint_id = check_id(checkpoint_id, "checkpoint_id")
        return await self._checkpoints.restore_checkpoint(checkpoint_id)

    # ----------------------------------------------------- sweeping (component)
    async def find_expired(self, *, limit: int = 1000) -> list[str]:
        return await self._sweep.find_expired(limit=check_count(limit, "limit"))

    async def mark_expired(self, session_id: str) -> SessionRecord | None:
        session_id = check_id(session_id, "session_id")
        return await self._sweep.mark_expired(session_id)

    async def mark_expired_batch(
        self, session_ids: Sequence[str], *, concurrency: int = BATCH_CONCURRENCY
    ) -> BatchOutcome[SessionRecord]:
        """The ``mark_expired`` script for every id in one round trip, then the indexes in one."""
        ids = [check_id(sid, "session_ids") for sid in session_ids]
        return await self._sweep.mark_expired_batch(ids, concurrency=concurrency)

    async def quarantine(self, session_id: str) -> None:
        """Remove the id from the deadline and purge indexes, reading nothing of the session."""
        session_id = check_id(session_id, "session_id")
        await self._sweep.quarantine(session_id)

    async def find_purgeable(self, *, older_than: datetime, limit: int = 1000) -> list[str]:
        return await self._sweep.find_purgeable(
            older_than=check_instant(older_than, "older_than"), limit=check_count(limit, "limit")
        )

    async def purge_batch(
        self,
        session_ids: Sequence[str],
        *,
        tombstone_until: datetime,
        concurrency: int = BATCH_CONCURRENCY,
    ) -> BatchOutcome[str]:
        """The ``purge`` script for every id in one round trip, then the indexes in one."""
        ids = [check_id(sid, "session_ids") for sid in session_ids]
        until = check_instant(tombstone_until, "tombstone_until")
        return await self._sweep.purge_batch(ids, tombstone_until=until, concurrency=concurrency)

    async def purge(self, session_id: str, *, tombstone_until: datetime) -> bool:
        session_id = check_id(session_id, "session_id")
        until = check_instant(tombstone_until, "tombstone_until")
        return await self._sweep.purge(session_id, tombstone_until=until)


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


async def _late_index_step(step: Awaitable[None], op: str, session_id: str) -> bool:
    """Run an index step that follows a committed session write; False when Redis
    could not be reached for it.

    The write (a close, the turn cap's end, a delete) is stored: raising
    ``StoreUnavailableError`` here told the caller it was not, and its retry was then
    refused (closed -> closed) or answered "not found". A step that cannot reach
    Redis leaves what a process dying between the two steps leaves, which no read
    takes for a wrong answer (docs/backend-redis.md, "Limits and known behaviour"):
    it is logged and the write's outcome returned.
    """
    try:
        await step
    except StoreUnavailableError as exc:
        _log.warning(
            "ai_session.redis.index_step_failed", op=op, session_id=session_id, error=str(exc)
        )
        return False
    return True
