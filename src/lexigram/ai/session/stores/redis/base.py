"""The shared part of the Redis store: connection, clock, script calls, encoding.

``RedisStoreBase`` holds what every group of operations needs; the operations
themselves are in ``store.py`` (sessions and turns), ``checkpoints.py`` and
``sweeping.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn, Self

import orjson
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from lexigram.ai.session.exceptions import (
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
from lexigram.ai.session.stores._common import require_writable
from lexigram.ai.session.stores.base import (
    LIVE_STATUSES,
    Clock,
    SessionPatch,
    SessionRecord,
    SessionStore,
)
from lexigram.ai.session.stores.redis.client import AnyRedis, ScriptRunner, connect, mask_url
from lexigram.ai.session.stores.redis.indexes import Indexes
from lexigram.ai.session.stores.redis.keys import KeySpace
from lexigram.ai.session.stores.redis.wire import (
    decode_turns,
    encode_header,
    encode_turn,
    header_record,
    to_us,
)

if TYPE_CHECKING:
    from lexigram.ai.session.config import SessionConfig

__all__ = ["RedisStoreBase", "record_name", "text_map"]


def record_name(session_id: str) -> str:
    """How errors name a session's stored record."""
    return f"session {session_id!r}"


class RedisStoreBase(SessionStore):
    """Connection, clock and helpers shared by the operations of ``CacheSessionStore``."""

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
    def from_config(cls, config: SessionConfig) -> Self:
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
            name, self.keys.session(session_id), args, record=record_name(session_id)
        )

    def _record(self, data: Any, session_id: str, now: datetime) -> SessionRecord:
        return header_record(data, record=record_name(session_id), now=now)

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
                record_name(session_id), f"unreadable stored data: {exc}"
            ) from None

    def _turns(self, items: Sequence[Any], session_id: str) -> list[SessionTurn]:
        """Turns from their stored JSON documents (bytes), parsed in one go."""
        record = f"{record_name(session_id)} turn"
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
                record_name(session_id), f"field {reply.get('a')}: {reply.get('b')!r}"
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
        try:
            ordinal = await self._index.reserve(
                state.user_id, sid, cap=cap, live=live, now_us=now_us
            )
        except SessionCapacityError:
            # The contract checks the id before the cap: a taken id wins.
            if await self._exists(sid, now_us):
                raise SessionValidationError(
                    "session_id", f"session {sid!r} already exists"
                ) from None
            raise
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


def text_map(raw: Any, session_id: str) -> dict[str, str]:
    """An ``HGETALL`` reply (bytes) as text; bytes that are not UTF-8 are corruption."""
    try:
        return {bytes(k).decode(): bytes(v).decode() for k, v in raw.items()}
    except UnicodeDecodeError as exc:
        raise CorruptRecordError(record_name(session_id), f"not UTF-8 text: {exc}") from None
