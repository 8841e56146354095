"""``CacheSessionStore``: the session store on Redis (single server or Redis Cluster).

Every write to a session is one Lua script on the session's hash slot (see
``scripts.py``), so it is atomic across any number of processes. The layout is in
``keys.py``; the cross-slot indexes, and why they are re-checked, in ``indexes.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

import orjson
from lexigram.contracts.ai.session import (
    SessionCheckpoint,
    SessionState,
    SessionStatus,
    SessionTurn,
)
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from lexigram.ai.session.exceptions import (
    CheckpointNotFoundError,
    CorruptRecordError,
    DuplicateTurnError,
    SessionCapacityError,
    SessionNotFoundError,
    SessionStoreError,
    SessionTransitionError,
    SessionValidationError,
    StoreUnavailableError,
)
from lexigram.ai.session.stores import codec
from lexigram.ai.session.stores._common import check_append, check_batch_ids, require_writable
from lexigram.ai.session.stores.base import (
    LIVE_STATUSES,
    AppendResult,
    Clock,
    SessionPage,
    SessionPatch,
    SessionRecord,
    SessionStore,
)
from lexigram.ai.session.stores.redis.client import (
    AnyRedis,
    ScriptRunner,
    connect,
    mask_url,
)
from lexigram.ai.session.stores.redis.indexes import Indexes, wall_us
from lexigram.ai.session.stores.redis.keys import KeySpace
from lexigram.ai.session.stores.redis.wire import (
    decode_header,
    decode_turns,
    encode_header,
    encode_turn,
    from_us,
    header_record,
    to_us,
)

if TYPE_CHECKING:
    from lexigram.ai.session.config import SessionConfig

__all__ = ["CacheSessionStore"]

_ENDED = frozenset({SessionStatus.CLOSED, SessionStatus.EXPIRED})
_TOMBSTONE_SAFETY_S = 86_400
_SCAN_BATCH = 200
_GATHER = 32


def _record_name(session_id: str) -> str:
    return f"session {session_id!r}"


class CacheSessionStore(SessionStore):
    """Sessions in Redis through ``redis.asyncio``; works on Redis Cluster (``cluster=True``).

    ``url`` is a ``redis://``/``rediss://``/``unix://`` URL (for a cluster, any node);
    ``client`` an existing ``Redis``/``RedisCluster`` to use instead (not closed by
    :meth:`close`). Keys start with ``key_prefix``. Deadlines are logical
    (``session_ttl`` seconds after the last update, compared with this store's
    clock); Redis key expiry is never used to end a session.
    """

    backend_name: ClassVar[str] = "cache"

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        client: AnyRedis | None = None,
        key_prefix: str = "lexigram:session",
        pool_size: int = 50,
        cluster: bool = False,
        session_ttl: int = 0,
        clock: Clock | None = None,
    ) -> None:
        if isinstance(session_ttl, bool) or not isinstance(session_ttl, int) or session_ttl < 0:
            raise SessionValidationError(
                "session_ttl", f"expected an integer >= 0, got {session_ttl!r}"
            )
        if not isinstance(key_prefix, str) or not key_prefix.strip():
            raise SessionValidationError(
                "key_prefix", f"expected a non-empty string, got {key_prefix!r}"
            )
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise SessionValidationError(
                "pool_size", f"expected an integer >= 1, got {pool_size!r}"
            )
        super().__init__(session_ttl=session_ttl, clock=clock)
        self.url = url
        self.cluster = cluster or isinstance(client, RedisCluster)
        self.keys = KeySpace(key_prefix)
        self._owns_client = client is None
        self._client: AnyRedis = (
            client if client is not None else connect(url, cluster=cluster, pool_size=pool_size)
        )
        self._scripts = ScriptRunner(self._client, pool_size)
        self._index = Indexes(self.keys, self._scripts)
        self._closed = False

    @classmethod
    def from_config(cls, config: SessionConfig) -> CacheSessionStore:
        """Build the store from ``SessionConfig`` (``redis_url``, ``redis_cluster``, ...)."""
        return cls(
            config.redis_url,
            key_prefix=config.key_prefix,
            pool_size=config.redis_pool_size,
            cluster=config.redis_cluster,
            session_ttl=config.session_ttl,
        )

    @property
    def client(self) -> AnyRedis:
        """The underlying ``redis.asyncio`` client."""
        return self._client

    # ---------------------------------------------------------------- lifecycle
    async def initialize(self) -> None:
        """Check the connection and load the scripts (``StoreUnavailableError`` if unreachable)."""
        await self.ping()
        await self._scripts.load_all()

    async def ping(self) -> None:
        """Round-trip to Redis; ``StoreUnavailableError`` (password masked) when it fails."""
        where = f"{'Redis Cluster' if self.cluster else 'Redis'} at {mask_url(self.url)}"
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(f"{where} is unreachable: {exc}") from exc

    async def close(self) -> None:
        """Close the connection pool (once; later calls do nothing)."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            with contextlib.suppress(RedisError, OSError):
                await self._client.aclose()

    # ------------------------------------------------------------------ helpers
    def _clock(self) -> tuple[datetime, int]:
        now = self.now()
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return now, to_us(now)

    def _deadline_arg(self, now: datetime) -> str:
        deadline = self.deadline_for(now)
        return "" if deadline is None else str(to_us(deadline))

    async def _run(self, name: str, session_id: str, args: Sequence[Any]) -> Any:
        return await self._scripts.json(
            name, self.keys.session(session_id), args, record=_record_name(session_id)
        )

    def _record(self, data: Any, session_id: str, now: datetime) -> SessionRecord:
        return header_record(data, record=_record_name(session_id), now=now)

    async def _run_turns(
        self, name: str, session_id: str, args: Sequence[Any]
    ) -> tuple[Any, list[Any]]:
        """Run a script that may answer ``{meta, turn, turn, ...}``: (meta, raw turns)."""
        reply = await self._scripts.raw(name, self.keys.session(session_id), args)
        if isinstance(reply, list):
            return self._meta(reply[0], session_id), reply[1:]
        return self._meta(reply, session_id), []

    @staticmethod
    def _meta(raw: Any, session_id: str) -> Any:
        try:
            return orjson.loads(raw)
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise CorruptRecordError(
                _record_name(session_id), f"unreadable stored data: {exc}"
            ) from None

    def _turns(self, items: Sequence[Any], session_id: str) -> list[SessionTurn]:
        """Turns from their stored JSON documents (bytes), parsed in one go."""
        record = f"{_record_name(session_id)} turn"
        if not items:
            return []
        try:
            docs = orjson.loads(b"[" + b",".join(items) + b"]")
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise CorruptRecordError(record, f"invalid JSON: {exc}") from None
        return decode_turns(docs, record=record)

    @staticmethod
    def _refuse(reply: dict[str, Any], session_id: str) -> NoReturn:
        """Raise the error a script's refusal stands for (codes shared by all scripts)."""
        code = reply.get("e")
        if code == "NF":
            raise SessionNotFoundError(session_id)
        if code == "CHK":
            require_writable(session_id, SessionStatus(reply["a"]))
        if code == "TR":
            raise SessionTransitionError(session_id, reply["a"], reply["b"])
        if code == "DUP":
            raise DuplicateTurnError(session_id, reply["a"])
        if code == "EXISTS":
            raise SessionValidationError("session_id", f"session {session_id!r} already exists")
        if code == "CORRUPT":
            raise CorruptRecordError(
                _record_name(session_id), f"field {reply.get('a')}: {reply.get('b')!r}"
            )
        raise SessionStoreError(f"unexpected reply for session {session_id!r}: {reply!r}")

    @staticmethod
    def _patch_json(patch: SessionPatch | None) -> str:
        if patch is None or patch.is_empty():
            return ""
        fields: dict[str, Any] = {}
        for name, key in (
            ("variables", "v"),
            ("metadata", "m"),
            ("active_tools", "ta"),
            ("active_skills", "sk"),
        ):
            value = getattr(patch, name)
            if value is not None:
                fields[key] = codec.dumps(value, field=name).decode()
        if patch.system_prompt is not None:
            if not isinstance(patch.system_prompt, str):
                raise SessionValidationError("system_prompt", "expected a string")
            fields["sp"] = patch.system_prompt
        elif patch.clear_system_prompt:
            fields["sp"] = False
        return orjson.dumps(fields).decode()

    @staticmethod
    def _encode_batch(turns: Sequence[SessionTurn]) -> tuple[list[Any], int, float]:
        args: list[Any] = []
        tokens = 0
        cost = 0.0
        for turn in turns:
            data = encode_turn(turn)
            if isinstance(turn.tokens_used, bool) or not isinstance(turn.tokens_used, int):
                raise SessionValidationError("turn.tokens_used", "expected an integer")
            if isinstance(turn.cost, bool) or not isinstance(turn.cost, int | float):
                raise SessionValidationError("turn.cost", "expected a number")
            tokens += turn.tokens_used
            args.append(turn.turn_id)
            args.append(data)
        # The same summation order as the in-memory store (sum() then add to the total).
        cost = sum(t.cost for t in turns)
        return args, tokens, float(cost)

    def _header_json(
        self,
        state: SessionState,
        *,
        last_seq: int,
        fork_seq: int | None = None,
        ordinal: int | None = None,
    ) -> bytes:
        expires_at = self.deadline_for(state.updated_at) if state.status in LIVE_STATUSES else None
        fields = encode_header(
            state, expires_at=expires_at, last_seq=last_seq, fork_seq=fork_seq, ordinal=ordinal
        )
        return orjson.dumps(
            {k: v.decode() if isinstance(v, bytes) else v for k, v in fields.items()}
        )

    async def _exists(self, session_id: str, now_us: int) -> bool:
        """Whether the id is taken (a session, or a tombstone still in force)."""
        exists, tomb = await self._scripts.pipeline(
            [
                ("exists", (self.keys.header(session_id),)),
                ("get", (self.keys.session(session_id)[10],)),
            ]
        )
        return bool(exists) or (tomb is not None and int(tomb) > now_us)

    # ----------------------------------------------------- contract (whole state)
    async def save(self, state: SessionState) -> None:
        _, now_us = self._clock()
        if not isinstance(state, SessionState):
            raise SessionValidationError(
                "state", f"expected a SessionState, got {type(state).__name__}"
            )
        sid = state.session_id
        check_batch_ids(sid, state.turns)
        pairs, _, _ = self._encode_batch(state.turns)
        live = state.status in LIVE_STATUSES
        ordinal = await self._index.reserve(state.user_id, sid, cap=None, live=live, now_us=now_us)
        header = self._header_json(state, last_seq=len(state.turns), ordinal=ordinal)
        try:
            reply = await self._run("save", sid, [now_us, header, len(state.turns), *pairs])
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
            await self._scripts.raw(
                "branch_add", self.keys.session(state.parent_session_id), [now_us, sid, wall_us()]
            )
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
        keys = self.keys.session(session_id)
        header, items = await self._scripts.pipeline(
            [("hgetall", (keys[0],)), ("lrange", (keys[1], 0, -1))], transaction=True
        )
        if not header:
            return None
        record = self._record(_text_map(header, session_id), session_id, now)
        return replace(record.state, turns=self._turns(items, session_id))

    async def delete(self, session_id: str) -> None:
        _, now_us = self._clock()
        reply = await self._run("delete", session_id, [now_us])
        if "u" in reply:
            await self._index.forget(
                session_id, user_id=reply["u"], parent_id=reply.get("ps"), checkpoint_ids=reply["c"]
            )

    async def list_sessions(self, user_id: str) -> list[SessionState]:
        members = await self._scripts.command("zrange", self.keys.user(user_id)[0], 0, -1)
        out: list[SessionState] = []
        ids = [m.decode() for m in members]
        for start in range(0, len(ids), _GATHER):
            chunk = ids[start : start + _GATHER]
            states = await asyncio.gather(*(self.load(sid) for sid in chunk))
            out.extend(s for s in states if s is not None and s.user_id == user_id)
        return out

    # -------------------------------------------------------------- checkpoints
    def _checkpoint(self, data: Any, turns: Any, checkpoint_id: str) -> SessionCheckpoint:
        record = f"checkpoint {checkpoint_id!r}"
        if not isinstance(data, dict) or not isinstance(data.get("h"), dict):
            raise CorruptRecordError(record, "field header: missing")
        state, _ = decode_header(data["h"], record=record)
        try:
            created = from_us(int(data["ca"]))
            metadata = orjson.loads(data.get("m") or "{}")
        except (KeyError, ValueError, TypeError, orjson.JSONDecodeError) as exc:
            raise CorruptRecordError(record, f"field created_at/metadata: {exc}") from None
        return SessionCheckpoint(
            checkpoint_id=checkpoint_id,
            session_id=data.get("sid") or state.session_id,
            state=replace(state, turns=self._turns(turns, state.session_id)),
            created_at=created,
            parent_checkpoint_id=data.get("p"),
            metadata=metadata,
        )

    async def _checkpoint_owner(self, checkpoint_id: str) -> str | None:
        owner = await self._scripts.command("get", self.keys.checkpoint(checkpoint_id))
        return None if owner is None else bytes(owner).decode()

    async def save_checkpoint(self, checkpoint: SessionCheckpoint) -> None:
        _, now_us = self._clock()
        state = checkpoint.state
        cpid = checkpoint.checkpoint_id
        if not isinstance(cpid, str) or not cpid:
            raise SessionValidationError(
                "checkpoint_id", f"expected a non-empty string, got {cpid!r}"
            )
        header = encode_header(state, expires_at=None, last_seq=0)
        data = {
            "sid": checkpoint.session_id,
            "h": {k: v.decode() if isinstance(v, bytes) else v for k, v in header.items()},
            "ca": str(to_us(checkpoint.created_at)),
            "m": codec.dumps(checkpoint.metadata, field="checkpoint.metadata").decode(),
            "it": [encode_turn(t).decode() for t in state.turns],
        }
        if checkpoint.parent_checkpoint_id is not None:
            data["p"] = checkpoint.parent_checkpoint_id
        previous = await self._checkpoint_owner(cpid)
        if previous is not None and previous != checkpoint.session_id:
            await self._run("cp_delete", previous, [now_us, cpid])
        await self._run(
            "cp_save",
            checkpoint.session_id,
            [now_us, checkpoint.session_id, orjson.dumps(data), cpid],
        )
        await self._scripts.command("set", self.keys.checkpoint(cpid), checkpoint.session_id)

    async def load_checkpoint(self, checkpoint_id: str) -> SessionCheckpoint | None:
        _, now_us = self._clock()
        owner = await self._checkpoint_owner(checkpoint_id)
        if owner is None:
            return None
        reply, turns = await self._run_turns("cp_load", owner, [now_us, checkpoint_id, "1"])
        if "e" in reply:
            self._refuse(reply, owner)
        if "d" not in reply:
            return None
        return self._checkpoint(reply["d"], turns, checkpoint_id)

    async def _list_checkpoints(self, session_id: str, *, turns: bool) -> list[SessionCheckpoint]:
        _, now_us = self._clock()
        reply, lists = await self._run_turns("cp_list", session_id, [now_us, "1" if turns else "0"])
        if "e" in reply:
            self._refuse(reply, session_id)
        return [
            self._checkpoint(item["d"], items or [], item["i"])
            for item, items in zip(reply["l"], lists, strict=True)
        ]

    async def list_checkpoints(self, session_id: str) -> list[SessionCheckpoint]:
        return await self._list_checkpoints(session_id, turns=True)

    async def list_checkpoint_headers(self, session_id: str) -> list[SessionCheckpoint]:
        return await self._list_checkpoints(session_id, turns=False)

    async def delete_checkpoint(self, checkpoint_id: str) -> bool:
        _, now_us = self._clock()
        owner = await self._checkpoint_owner(checkpoint_id)
        if owner is None:
            return False
        reply = await self._run("cp_delete", owner, [now_us, checkpoint_id])
        await self._scripts.command("delete", self.keys.checkpoint(checkpoint_id))
        return bool(reply.get("ok"))

    async def create_checkpoint(
        self,
        session_id: str,
        *,
        checkpoint_id: str,
        metadata: dict[str, Any] | None = None,
        max_checkpoints: int | None = None,
        include_turns: bool = True,
    ) -> tuple[SessionCheckpoint, list[str]]:
        now, now_us = self._clock()
        if not isinstance(checkpoint_id, str) or not checkpoint_id:
            raise SessionValidationError(
                "checkpoint_id", f"expected a non-empty string, got {checkpoint_id!r}"
            )
        meta = codec.dumps(metadata or {}, field="metadata")
        index_key = self.keys.checkpoint(checkpoint_id)
        claimed = await self._scripts.command("set", index_key, session_id, nx=True)
        if not claimed:
            owner = await self._checkpoint_owner(checkpoint_id)
            if owner is not None and await self._checkpoint_exists(owner, checkpoint_id):
                if not await self._exists(session_id, now_us):
                    raise SessionNotFoundError(session_id)
                raise SessionValidationError(
                    "checkpoint_id", f"checkpoint {checkpoint_id!r} already exists"
                )
            # A stale index entry (its checkpoint is gone): take it over.
            await self._scripts.command("set", index_key, session_id)
        args = [
            now_us,
            checkpoint_id,
            meta,
            "" if max_checkpoints is None else str(max_checkpoints),
            "1" if include_turns else "0",
        ]
        try:
            reply, turns = await self._run_turns("cp_create", session_id, args)
        except BaseException:
            await self._unclaim(index_key, session_id)
            raise
        if "e" in reply:
            await self._unclaim(index_key, session_id)
            if reply["e"] == "CPEX":
                raise SessionValidationError(
                    "checkpoint_id", f"checkpoint {checkpoint_id!r} already exists"
                )
            self._refuse(reply, session_id)
        pruned: list[str] = list(reply["p"])
        if pruned:
            await self._index.pipe([("delete", (self.keys.checkpoint(p),)) for p in pruned])
        del now
        return self._checkpoint(reply["d"], turns, checkpoint_id), pruned

    async def _checkpoint_exists(self, session_id: str, checkpoint_id: str) -> bool:
        found = await self._scripts.command(
            "hexists", self.keys.session(session_id)[6], checkpoint_id
        )
        return bool(found)

    async def _unclaim(self, index_key: str, session_id: str) -> None:
        try:
            owner = await self._scripts.command("get", index_key)
            if owner is not None and bytes(owner).decode() == session_id:
                await self._scripts.command("delete", index_key)
        except SessionStoreError:  # pragma: no cover - best effort: a stale entry is harmless
            pass

    async def restore_checkpoint(self, checkpoint_id: str) -> SessionState:
        now, now_us = self._clock()
        owner = await self._checkpoint_owner(checkpoint_id)
        if owner is None:
            raise CheckpointNotFoundError(checkpoint_id)
        reply, turns = await self._run_turns(
            "cp_restore", owner, [now_us, checkpoint_id, self._deadline_arg(now)]
        )
        if "e" in reply:
            if reply["e"] == "CPNF":
                raise CheckpointNotFoundError(checkpoint_id)
            self._refuse(reply, owner)
        record = self._record(reply["h"], owner, now)
        return replace(record.state, turns=self._turns(turns, owner))

    # ------------------------------------------------------------------- create
    async def create_session(
        self, state: SessionState, *, max_live_per_user: int | None = None
    ) -> SessionRecord:
        now, now_us = self._clock()
        if not isinstance(state, SessionState):
            raise SessionValidationError(
                "state", f"expected a SessionState, got {type(state).__name__}"
            )
        sid = state.session_id
        if not isinstance(sid, str) or not sid:
            raise SessionValidationError("session_id", f"expected a non-empty string, got {sid!r}")
        if await self._exists(sid, now_us):
            raise SessionValidationError("session_id", f"session {sid!r} already exists")
        check_batch_ids(sid, state.turns)
        pairs, _, _ = self._encode_batch(state.turns)
        self._header_json(state, last_seq=len(state.turns))  # refuse bad values before reserving
        return await self._insert(
            state, pairs, now=now, now_us=now_us, cap=max_live_per_user, fork_seq=None
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
    ) -> SessionRecord:
        """Reserve the user's place, then write the session; undo the reservation on failure."""
        sid = state.session_id
        live = state.status in LIVE_STATUSES
        ordinal = await self._index.reserve(state.user_id, sid, cap=cap, live=live, now_us=now_us)
        if ordinal is None:
            raise SessionValidationError("session_id", f"session {sid!r} already exists")
        k = len(pairs) // 2
        header = self._header_json(state, last_seq=k, fork_seq=fork_seq, ordinal=ordinal)
        deadline = self.deadline_for(state.updated_at) if live else None
        added = False
        try:
            # The deadline is indexed before the session exists: a writer dying in
            # between leaves an entry the sweeper drops, never an unindexed session.
            if deadline is not None:
                added = await self._index.add_deadline(sid, to_us(deadline), only_new=True)
            reply = await self._run("create", sid, [now_us, header, k, *pairs])
            if "e" in reply:
                self._refuse(reply, sid)
        except BaseException:
            await self._index.release(state.user_id, sid)
            if added:
                await self._index.drop_deadline(sid)
            raise
        if not live:
            await self._index.ended(sid, state.user_id, to_us(state.updated_at))
        return self._record(reply["h"], sid, now)

    # -------------------------------------------------------------------- reads
    async def load_record(self, session_id: str) -> SessionRecord | None:
        now, now_us = self._clock()
        reply = await self._run("record", session_id, [now_us])
        return self._record(reply["h"], session_id, now) if "h" in reply else None

    async def get_turns(
        self,
        session_id: str,
        *,
        last: int | None = None,
        after_seq: int | None = None,
        limit: int | None = None,
    ) -> list[SessionTurn]:
        _, now_us = self._clock()
        if last is not None:
            args = [now_us, "last", str(int(last)), ""]
        else:
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
        below = _parse_cursor(cursor)
        key = self.keys.user(user_id)[0]
        top: str = "+inf" if below is None else f"({below}"
        batch = max(min(limit + 1, _SCAN_BATCH), 16)
        items: list[SessionState] = []
        last_ordinal: int | None = None
        while True:
            page = await self._scripts.command(
                "zrevrangebyscore", key, top, "-inf", start=0, num=batch, withscores=True
            )
            if not page:
                break
            ids = [m.decode() for m, _ in page]
            headers = await self._index.headers(ids)
            scores = [int(s) for _, s in page]
            for sid, score, data in zip(ids, scores, headers, strict=True):
                if data is None or data.get("u") != user_id:
                    continue
                record = self._record(data, sid, now)
                if status is not None and record.state.status != status:
                    continue
                if len(items) == limit:
                    return SessionPage(items=items, next_cursor=str(last_ordinal))
                items.append(record.state)
                last_ordinal = score
            if len(page) < batch:
                break
            top = f"({int(page[-1][1])}"
        return SessionPage(items=items, next_cursor=None)

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
        batch = list(turns)
        pairs, tokens, cost = self._encode_batch(batch)
        args = [
            now_us,
            self._deadline_arg(now),
            "" if max_turns is None else str(max_turns),
            len(batch),
            tokens,
            repr(cost),
            self._patch_json(patch),
            *pairs,
        ]
        reply = await self._run("append", session_id, args)
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
        reply = await self._run(
            "update", session_id, [now_us, self._deadline_arg(now), self._patch_json(patch)]
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
        )
        if "e" in reply:
            self._refuse(reply, session_id)
        record = self._record(reply["h"], session_id, now)
        if target in _ENDED:
            await self._index.ended(session_id, record.state.user_id, now_us)
        return record

    async def pop_turn(self, session_id: str) -> SessionTurn | None:
        now, now_us = self._clock()
        reply = await self._run("pop", session_id, [now_us, self._deadline_arg(now)])
        if "e" in reply:
            self._refuse(reply, session_id)
        if reply.get("t") is None:
            return None
        return decode_turns([reply["t"]], record=f"{_record_name(session_id)} turn")[0]

    async def clear_turns(self, session_id: str) -> int:
        now, now_us = self._clock()
        reply = await self._run("clear", session_id, [now_us, self._deadline_arg(now)])
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
        bid = branch.session_id
        if not isinstance(bid, str) or not bid:
            raise SessionValidationError("session_id", f"expected a non-empty string, got {bid!r}")
        source_exists = await self._scripts.command("exists", self.keys.header(source_id))
        if not source_exists:
            raise SessionNotFoundError(source_id)
        if await self._exists(bid, now_us):
            raise SessionValidationError("session_id", f"session {bid!r} already exists")
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
            point, _ = decode_header(reply["h"], record=_record_name(source_id))
            turns = self._turns(raw_turns, source_id)
            state = replace(
                point,
                turns=turns,
                session_id=bid,
                user_id=branch.user_id,
                status=SessionStatus.ACTIVE,
                created_at=branch.created_at,
                updated_at=branch.updated_at,
                checkpoint_id=None,
                parent_session_id=branch.parent_session_id or source_id,
                branch_name=branch.branch_name,
                turn_count=len(turns),
                total_tokens=sum(t.tokens_used for t in turns),
                total_cost=sum(t.cost for t in turns),
            )
            pairs, _, _ = self._encode_batch(turns)
            record = await self._insert(
                state, pairs, now=now, now_us=now_us, cap=max_live_per_user, fork_seq=len(turns)
            )
        except BaseException:
            await self._scripts.raw("branch_drop", self.keys.session(source_id), [now_us, bid])
            raise
        parent = state.parent_session_id
        if parent is not None and parent != source_id:
            await self._scripts.raw("branch_drop", self.keys.session(source_id), [now_us, bid])
            await self._scripts.raw(
                "branch_add", self.keys.session(parent), [now_us, bid, wall_us()]
            )
        return record

    async def list_branches(self, session_id: str) -> list[SessionRecord]:
        now, _ = self._clock()
        members = await self._scripts.command("zrange", self.keys.session(session_id)[8], 0, -1)
        ids = [m.decode() for m in members]
        out: list[SessionRecord] = []
        for sid, data in zip(ids, await self._index.headers(ids), strict=True):
            if data is not None and data.get("ps") == session_id:
                out.append(self._record(data, sid, now))
        return out

    # ----------------------------------------------------------------- sweeping
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
            probes = await self._index.probe(ids, ("u", "s", "ex", "ua"))
            fixes: list[tuple[str, tuple[Any, ...]]] = []
            for sid, (owner, status, expires, updated) in zip(ids, probes, strict=True):
                if status is None:
                    fixes.append(("zrem", (key, sid)))
                elif status not in ("active", "suspended"):
                    fixes.append(("zrem", (key, sid)))
                    if updated is not None and updated.isdigit():
                        fixes.append(("zadd", (self.keys.ended, {sid: int(updated)})))
                elif expires is None or not expires.isdigit():
                    fixes.append(("zrem", (key, sid)))
                elif int(expires) <= now_us:
                    if len(found) < limit:
                        found.append(sid)
                else:
                    # Extended since indexed: move the lower bound up to the deadline seen.
                    fixes.append(("zadd", (key, {sid: int(expires)}, False, True)))
                del owner
            await self._index.pipe(fixes)
            if len(page) < _SCAN_BATCH:
                break
        return found

    async def mark_expired(self, session_id: str) -> SessionRecord | None:
        now, now_us = self._clock()
        reply = await self._run("mark_expired", session_id, [now_us])
        if "h" not in reply:
            return None
        record = self._record(reply["h"], session_id, now)
        await self._index.ended(session_id, record.state.user_id, to_us(record.state.updated_at))
        return record

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
            for sid, (status, updated) in zip(ids, probes, strict=True):
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
        reply = await self._run("purge", session_id, [now_us, until_us, safety])
        if "u" not in reply:
            return False
        await self._index.forget(
            session_id, user_id=reply["u"], parent_id=reply.get("ps"), checkpoint_ids=reply["c"]
        )
        return True


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


def _parse_cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        return int(cursor)
    except (TypeError, ValueError) as exc:
        raise SessionValidationError(
            "cursor", f"not a cursor this store issued: {cursor!r}"
        ) from exc


def _text_map(raw: Any, session_id: str) -> dict[str, str]:
    """An ``HGETALL`` reply (bytes) as text; bytes that are not UTF-8 are corruption."""
    try:
        return {bytes(k).decode(): bytes(v).decode() for k, v in raw.items()}
    except UnicodeDecodeError as exc:
        raise CorruptRecordError(_record_name(session_id), f"not UTF-8 text: {exc}") from None
