"""The shared part of the Redis store: connection, clock, script calls, encoding.

``RedisStoreBase`` holds what every group of operations needs; the operations
themselves are in ``store.py`` (sessions and turns), ``checkpoints.py`` and
``sweeping.py``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn, Self

import orjson
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from lexigram.ai.session.exceptions import (
    CorruptRecordError,
    DuplicateTurnError,
    SessionCapacityError,
    SessionNotFoundError,
    SessionStoreError,
    SessionTransitionError,
    SessionValidationError,
    StoreUnavailableError,
    WriteOutcomeUnknownError,
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
from lexigram.ai.session.stores.redis.scripts import WRITE_SCRIPTS
from lexigram.ai.session.stores.redis.wire import (
    decode_turns,
    encode_header,
    encode_turn,
    header_record,
    to_us,
)
from lexigram.ai.session.validation import MAX_SAFE_INT, check_cost, check_tokens, check_totals

if TYPE_CHECKING:
    from lexigram.ai.session.config import SessionConfig

__all__ = ["KEY_EXPIRY_MARGIN_S", "RedisStoreBase", "new_op", "record_name", "text_map"]

#: How long past its purge time a session's keys live on in Redis (one day): the
#: storage-level expiry is a safety net for when no sweeper runs, never the
#: normal way a session ends.
KEY_EXPIRY_MARGIN_S = 86_400

_DEFAULT_PURGE_AFTER_S = 7 * 86_400


def new_op() -> str:
    """A fresh operation id: one per logical store call, shared by all its steps.

    128 random bits (a third of the cost of ``uuid4()``): two calls never share one
    within the few minutes a reply stays recorded.
    """
    return os.urandom(16).hex()


def _maybe_sent(exc: StoreUnavailableError) -> bool:
    """Whether the driver failed after the command could have reached Redis.

    A failure to connect at all ("Error 111 connecting to ...", "Timeout connecting
    to server") means nothing was sent; a reset or a timeout while reading means
    the command may have run.
    """
    cause = exc.__cause__
    if not isinstance(cause, RedisConnectionError | RedisTimeoutError):
        return False
    return "connecting" not in str(cause).lower()


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
        purge_after_s: int = _DEFAULT_PURGE_AFTER_S,
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
        if (
            isinstance(purge_after_s, bool)
            or not isinstance(purge_after_s, int)
            or purge_after_s < 0
        ):
            raise SessionValidationError(
                "purge_after_s", f"expected an integer >= 0, got {purge_after_s!r}"
            )
        super().__init__(session_ttl=session_ttl, clock=clock)
        self.url = url
        self.cluster = cluster or isinstance(client, RedisCluster)
        self.keys = KeySpace(key_prefix)
        self._owns_client = client is None
        self._client: AnyRedis = (
            client if client is not None else connect(url, cluster=cluster, pool_size=pool_size)
        )
        self._scripts = ScriptRunner(
            self._client,
            pool_size,
            make_client=None
            if client is not None
            else lambda: connect(url, cluster=cluster, pool_size=pool_size),
            owns_client=client is None,
        )
        self._index = Indexes(self.keys, self._scripts)
        self._closed = False
        #: With a TTL, every key of a session expires in Redis this long (ms) after
        #: its deadline or its end: past the sweeper's purge time plus a margin.
        self._key_grace_ms: int | None = (
            (purge_after_s + KEY_EXPIRY_MARGIN_S) * 1000 if session_ttl > 0 else None
        )

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
        try:
            return self._scripts.client()
        except (RuntimeError, SessionStoreError):  # outside a loop, or closed
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
            await self._scripts.client().ping()
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(f"{where} is unreachable: {exc}") from exc

    async def close(self) -> None:
        """Close the connection pool (once; later calls do nothing)."""
        if self._closed:
            return
        self._closed = True
        await self._scripts.close()  # every event loop's client the store made

    # ------------------------------------------------------------------ helpers
    def _clock(self) -> tuple[datetime, int]:
        now = self.now()
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return now, to_us(now)

    def _deadline_arg(self, now: datetime) -> str:
        deadline = self.deadline_for(now)
        return "" if deadline is None else str(to_us(deadline))

    def _script_keys(self, session_id: str, name: str, op: str | None) -> list[str]:
        """The session's keys, plus the key recording operation ``op``'s reply."""
        keys = self.keys.session(session_id)
        if op is not None:
            keys.append(self.keys.op(session_id, op, name))
        return keys

    def _argv(self, args: Sequence[Any]) -> list[Any]:
        """``args`` with the key-expiry grace attached to "now" (``"now|grace_ms"``)."""
        out = list(args)
        if self._key_grace_ms is not None and out:
            out[0] = f"{out[0]}|{self._key_grace_ms}"
        return out

    async def _run(
        self, name: str, session_id: str, args: Sequence[Any], *, op: str | None = None
    ) -> Any:
        """Run a session script answering one JSON document; ``op`` makes a write exactly-once.

        A reply that is not valid JSON means stored bytes are damaged (the reply
        embeds them): :class:`CorruptRecordError` naming the session.
        """
        reply = await self._raw(name, session_id, args, op=op)
        try:
            return orjson.loads(reply)
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise CorruptRecordError(
                record_name(session_id), f"stored data is not valid JSON/UTF-8: {exc}"
            ) from exc

    async def _raw(
        self, name: str, session_id: str, args: Sequence[Any], *, op: str | None = None
    ) -> Any:
        """Run a session script and return the driver's reply as is.

        When the connection is lost after a write script was sent (every retry of
        the client included), the write may have been applied:
        :class:`WriteOutcomeUnknownError` instead of ``StoreUnavailableError``.
        """
        try:
            return await self._scripts.raw(
                name, self._script_keys(session_id, name, op), self._argv(args)
            )
        except StoreUnavailableError as exc:
            if name in WRITE_SCRIPTS and _maybe_sent(exc):
                raise WriteOutcomeUnknownError(
                    f"the connection to Redis was lost after {name!r} was sent for session "
                    f"{session_id!r}: it may or may not have been applied ({exc.__cause__})"
                ) from exc
            raise

    def _record(self, data: Any, session_id: str, now: datetime) -> SessionRecord:
        return header_record(data, record=record_name(session_id), now=now)

    async def _run_turns(
        self, name: str, session_id: str, args: Sequence[Any], *, op: str | None = None
    ) -> tuple[Any, list[Any]]:
        """Run a script that may answer ``{meta, turn, turn, ...}``: (meta, raw turns)."""
        reply = await self._raw(name, session_id, args, op=op)
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
        if code == "VAL":
            raise SessionValidationError(str(reply.get("a")), str(reply.get("b")))
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
    def _encode_batch(turns: Sequence[SessionTurn]) -> tuple[list[Any], int, str]:
        """(turn_id, JSON) pairs, the batch's tokens and its costs as ``"c1,c2,..."``.

        Callers have checked the turns (``validation.check_turns``/``check_state``);
        the numbers are checked again here as they are sent, naming
        ``turns[i].tokens_used``/``turns[i].cost``. The scripts refuse totals that
        would leave the storable range (``total_tokens``/``total_cost``) before
        writing anything.
        """
        args: list[Any] = []
        tokens = 0
        costs: list[str] = []
        for index, turn in enumerate(turns):
            if not isinstance(turn, SessionTurn):
                raise SessionValidationError(
                    f"turns[{index}]", f"expected a SessionTurn, got {type(turn).__name__}"
                )
            tokens += check_tokens(turn.tokens_used, f"turns[{index}].tokens_used")
            costs.append(repr(check_cost(turn.cost, f"turns[{index}].cost")))
            data = encode_turn(turn)
            args.append(turn.turn_id)
            args.append(data)
        if tokens > MAX_SAFE_INT:
            check_totals(tokens, 0.0)
        return args, tokens, ",".join(costs)

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
        check_totals(state.total_tokens, float(state.total_cost))
        return orjson.dumps(
            {k: v.decode() if isinstance(v, bytes) else v for k, v in fields.items()}
        )

    async def _exists(self, session_id: str, now_us: int) -> bool:
        """Whether the id is taken (a session, or a tombstone still in force)."""
        exists, tomb = await self._scripts.pipeline(
            [
                ("exists", (self.keys.header(session_id),)),
                ("get", (self.keys.tombstone(session_id),)),
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
        op: str,
    ) -> SessionRecord:
        """Reserve the user's place, then write the session; undo the reservation on failure.

        Every step is keyed by the operation id ``op``: a step the client re-sends
        (its reply was lost) answers its first result again, so a create is applied
        once and reports what really happened. When the outcome of the write is
        unknown (Redis unreachable) the reservation is kept: it stops counting
        after ``RESERVATION_GRACE_US`` if the session never appeared.
        """
        sid = state.session_id
        live = state.status in LIVE_STATUSES
        try:
            ordinal = await self._index.reserve(
                state.user_id, sid, cap=cap, live=live, now_us=now_us, op=op
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
            reply = await self._run("create", sid, [now_us, header, k, *pairs], op=op)
        except StoreUnavailableError:
            raise  # outcome unknown: keep the reservation and the deadline entry
        except BaseException:
            await self._undo_insert(state.user_id, sid, added)
            raise
        if "e" in reply:
            await self._undo_insert(state.user_id, sid, added)
            self._refuse(reply, sid)
        if not live:
            await self._index.ended(sid, state.user_id, to_us(state.updated_at))
        return self._record(reply["h"], sid, now)

    async def _undo_insert(self, user_id: str, session_id: str, deadline_added: bool) -> None:
        """Release a reservation (and the deadline entry) of a create that was refused."""
        await self._index.release(user_id, session_id)
        if deadline_added:
            await self._index.drop_deadline(session_id)


def text_map(raw: Any, session_id: str) -> dict[str, str]:
    """An ``HGETALL`` reply (bytes) as text; bytes that are not UTF-8 are corruption."""
    try:
        return {bytes(k).decode(): bytes(v).decode() for k, v in raw.items()}
    except UnicodeDecodeError as exc:
        raise CorruptRecordError(record_name(session_id), f"not UTF-8 text: {exc}") from None
