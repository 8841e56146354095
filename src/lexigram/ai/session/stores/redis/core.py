"""The core every part of the Redis store shares: client, keys, scripts, clock, replies.

:class:`RedisCore` is held by the store facade (``store.py``) and handed to its
components (``checkpoints.py``, ``sweeping.py``); none of them subclasses another.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

import orjson
from lexigram.contracts.ai.session import SessionStatus, SessionTurn
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from lexigram.ai.session.config_urls import CLUSTER_PREFIX_BRACES, redis_db
from lexigram.ai.session.exceptions import (
    CorruptRecordError,
    DataKeyChangedError,
    DuplicateTurnError,
    SessionNotFoundError,
    SessionStoreError,
    SessionTransitionError,
    SessionValidationError,
    StoreUnavailableError,
    WriteOutcomeUnknownError,
)
from lexigram.ai.session.stores import codec
from lexigram.ai.session.stores._common import require_writable
from lexigram.ai.session.stores.base import SessionRecord
from lexigram.ai.session.stores.gc_pause import paused_gc
from lexigram.ai.session.stores.redis.client import AnyRedis, ScriptRunner, connect, mask_url
from lexigram.ai.session.stores.redis.indexes import Indexes
from lexigram.ai.session.stores.redis.keys import KeySpace
from lexigram.ai.session.stores.redis.scripts import (
    APPEND_GRACE_KEYS,
    APPEND_KEYS,
    WRITE_SCRIPTS,
)
from lexigram.ai.session.stores.redis.wire import decode_turns, header_record, to_us

__all__ = [
    "DEFAULT_PURGE_AFTER_S",
    "KEY_EXPIRY_MARGIN_S",
    "RedisCore",
    "applied",
    "check_options",
    "new_op",
    "record_name",
    "text_map",
    "wrong_type_is_damage",
]

#: How long past its purge time a session's keys live on in Redis (one day): the
#: storage-level expiry is a safety net for when no sweeper runs, never the
#: normal way a session ends.
KEY_EXPIRY_MARGIN_S = 86_400

#: The sweeper's default purge delay (seven days), which the key expiry follows.
DEFAULT_PURGE_AFTER_S = 7 * 86_400


def new_op() -> str:
    """A fresh operation id: one per logical store call, shared by all its steps.

    128 random bits (a third of the cost of ``uuid4()``): two calls never share one
    within the few minutes a reply stays recorded.
    """
    return os.urandom(16).hex()


def record_name(session_id: str) -> str:
    """How errors name a session's stored record."""
    return f"session {session_id!r}"


def text_map(raw: Any, session_id: str) -> dict[str, str]:
    """An ``HGETALL`` reply (bytes) as text; bytes that are not UTF-8 are corruption.

    ``raw`` is a dict (redis-py, or RESP3) or the flat field/value list of RESP2.
    """
    pairs = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2], strict=True)
    try:
        return {bytes(k).decode(): bytes(v).decode() for k, v in pairs}
    except UnicodeDecodeError as exc:
        raise CorruptRecordError(record_name(session_id), f"not UTF-8 text: {exc}") from None


def check_options(
    *,
    session_ttl: Any,
    key_prefix: Any,
    pool_size: Any,
    purge_after_s: Any,
    cluster: bool = False,
) -> None:
    """Refuse store options of the wrong type or range (``SessionValidationError``)."""
    if isinstance(session_ttl, bool) or not isinstance(session_ttl, int) or session_ttl < 0:
        raise SessionValidationError(
            "session_ttl", f"expected an integer >= 0, got {session_ttl!r}"
        )
    if not isinstance(key_prefix, str) or not key_prefix.strip():
        raise SessionValidationError(
            "key_prefix", f"expected a non-empty string, got {key_prefix!r}"
        )
    if cluster and ("{" in key_prefix or "}" in key_prefix):
        raise SessionValidationError("key_prefix", CLUSTER_PREFIX_BRACES)
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
        raise SessionValidationError("pool_size", f"expected an integer >= 1, got {pool_size!r}")
    if isinstance(purge_after_s, bool) or not isinstance(purge_after_s, int) or purge_after_s < 0:
        raise SessionValidationError(
            "purge_after_s", f"expected an integer >= 0, got {purge_after_s!r}"
        )


#: What Redis answers ``SELECT n`` for a database it does not have: past its
#: ``databases`` setting, or past what a database number can be (2**31-1).
_NO_SUCH_DB = ("DB index is out of range", "value is out of range")


def _missing_db(url: str, exc: ResponseError) -> str | None:
    """Why ``url`` names a database the server does not have, when ``exc`` (raised while
    connecting) is the server refusing its ``SELECT``; None for any other refusal.

    The server answered, so it is not unreachable: the setting is wrong.
    """
    db = redis_db(url)
    if not isinstance(db, int) or db == 0 or not any(m in str(exc) for m in _NO_SUCH_DB):
        return None
    return (
        f"db {db} in {mask_url(url)} is not a database this server has (it refused "
        f"SELECT {db}: {exc}); a server has databases 0..N-1, N being its 'databases' "
        "setting (16 by default)"
    )


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


@contextlib.contextmanager
def wrong_type_is_damage(session_id: str) -> Iterator[None]:
    """Report a session key Redis cannot read as its type (``WRONGTYPE``) as damage."""
    try:
        yield
    except SessionStoreError as exc:
        if "WRONGTYPE" in str(exc):
            raise CorruptRecordError(
                record_name(session_id), "a key of the session has the wrong Redis type"
            ) from None
        raise


#: How a write script's reply starts when the write was applied (a header, a checkpoint).
_APPLIED_REPLIES = (b'{"h":', b'{"d":')


def applied(exc: CorruptRecordError, what: str) -> CorruptRecordError:
    """``exc`` (found in the reply of a write that was applied), saying so."""
    note = (
        f"the {what} was stored before this was found: it is applied, do not send it "
        "again; repair or delete the session (quarantine takes it out of the sweep)"
    )
    return CorruptRecordError(exc.record, f"{exc.problem} ({note})", hint=note)


def _bulk_turns(items: Sequence[Any]) -> list[SessionTurn] | None:
    """Turns of intact documents, or None (see ``codec.turns_from_documents``).

    One copy of the documents into one JSON array: the brackets go on the first and
    last document (``b"[" + join + b"]"`` would copy the whole array twice more).
    The array has one element per document only when each is one JSON value.
    """
    parts = list(items)
    try:
        parts[0] = b"[" + parts[0]
        parts[-1] = parts[-1] + b"]"
        docs = orjson.loads(b",".join(parts))
    except (orjson.JSONDecodeError, TypeError):
        return None
    if type(docs) is not list or len(docs) != len(parts):
        return None
    return codec.turns_from_documents(docs)


class RedisCore:
    """Connection, keys, scripts and clock of one Redis store, and how replies are read.

    ``now`` and ``deadline_for`` are the facade's own (so a clock or TTL set on the
    store is the one every component sees).
    """

    def __init__(
        self,
        url: str,
        *,
        client: AnyRedis | None,
        key_prefix: str,
        pool_size: int,
        cluster: bool,
        session_ttl: Callable[[], int],
        purge_after_s: int,
        now: Callable[[], datetime],
        deadline_for: Callable[[datetime], datetime | None],
    ) -> None:
        self.url = url
        self.cluster = cluster or isinstance(client, RedisCluster)
        self.keys = KeySpace(key_prefix)
        self.now = now
        self.deadline_for = deadline_for
        self._client: AnyRedis = (
            client if client is not None else connect(url, cluster=cluster, pool_size=pool_size)
        )
        self.scripts = ScriptRunner(
            self._client,
            pool_size,
            make_client=None
            if client is not None
            else lambda: connect(url, cluster=cluster, pool_size=pool_size),
            owns_client=client is None,
        )
        self.index = Indexes(self.keys, self.scripts)
        self._session_ttl = session_ttl
        self._grace_ms = (purge_after_s + KEY_EXPIRY_MARGIN_S) * 1000

    @property
    def key_grace_ms(self) -> int | None:
        """With a TTL, every key of a session expires in Redis this long (ms) after its
        deadline or its end: past the sweeper's purge time plus a margin. The TTL is the
        store's at the time (a manager sets its own on the store it is given)."""
        return self._grace_ms if self._session_ttl() > 0 else None

    @property
    def purge_grace_ms(self) -> int:
        """How long (ms) after its end an ended session's keys last when written under
        a TTL: ``purge_after_s`` plus the margin."""
        return self._grace_ms

    @property
    def client(self) -> AnyRedis:
        """The ``redis.asyncio`` client of the running event loop (one per loop)."""
        try:
            return self.scripts.client()
        except (RuntimeError, SessionStoreError):  # outside a loop, or closed
            return self._client

    async def ping(self) -> None:
        """Round-trip to Redis; ``StoreUnavailableError`` (password masked) when it fails."""
        where = f"{'Redis Cluster' if self.cluster else 'Redis'} at {mask_url(self.url)}"
        client = self.scripts.client()
        try:
            await client.ping()
            state = None
            if isinstance(client, RedisCluster):
                # A live node answers PING while the cluster serves no slot of a failed
                # master: the health check said HEALTHY with writes failing.
                try:
                    info = await client.cluster_info()
                    state = str(info.get("cluster_state", "ok"))
                except ResponseError:
                    state = None  # CLUSTER INFO refused (an ACL, a renamed command)
        except ResponseError as exc:
            missing = _missing_db(self.url, exc)
            if missing is not None:
                raise SessionValidationError("redis_url", missing) from None
            raise StoreUnavailableError(f"{where} is unreachable: {exc}") from exc
        except (RedisError, RedisClusterException, OSError) as exc:
            raise StoreUnavailableError(f"{where} is unreachable: {exc}") from exc
        if state is not None and state != "ok":
            raise StoreUnavailableError(f"{where} reports cluster_state:{state}")

    async def check_mode(self) -> None:
        """Refuse a Cluster node addressed as a single server (``redis_cluster`` off).

        Such a store would work for the sessions whose slots that node serves and fail
        with ``MOVED`` for the others, one session in three on a 3-master cluster. A
        server that does not answer ``INFO cluster`` (a proxy) is taken as it is.
        """
        if self.cluster:
            return
        try:
            info = await self.scripts.client().info("cluster")
        except (RedisError, OSError):
            return
        if str(info.get("cluster_enabled", "0")) == "1":
            raise SessionStoreError(
                f"Redis at {mask_url(self.url)} is a Redis Cluster node: set "
                "redis_cluster: true (ai_session.redis.cluster) so that every session "
                "is sent to the node serving it"
            )

    # -------------------------------------------------------------------- clock
    def clock(self) -> tuple[datetime, int]:
        """The store's time now, as an aware datetime and in microseconds."""
        now = self.now()
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return now, to_us(now)

    def deadline_arg(self, now: datetime) -> str:
        """The deadline of a session updated at ``now`` as a script argument ("" for none)."""
        deadline = self.deadline_for(now)
        return "" if deadline is None else str(to_us(deadline))

    # ------------------------------------------------------------------ scripts
    def script_keys(self, session_id: str, name: str, op: str | None) -> list[str]:
        """The session's keys, plus the key recording operation ``op``'s reply.

        ``append`` (the chat path) gets the keys it uses (``APPEND_KEYS``), its op
        key, then the other keys whose expiry it sets or removes (``APPEND_GRACE_KEYS``).
        """
        if name == "append":  # always once per operation: its op key is KEYS[6]
            keys = self.keys.session(session_id, APPEND_KEYS)
            keys.append(self.keys.op(session_id, op or new_op(), name))
            keys.extend(self.keys.session(session_id, APPEND_GRACE_KEYS))
            return keys
        keys = self.keys.session(session_id)
        if op is not None:
            keys.append(self.keys.op(session_id, op, name))
        return keys

    def argv(self, args: Sequence[Any]) -> list[Any]:
        """``args`` with the key-expiry grace attached to "now" (``"now|grace_ms"``)."""
        out = list(args)
        if self.key_grace_ms is not None and out:
            out[0] = f"{out[0]}|{self.key_grace_ms}"
        return out

    async def run(
        self, name: str, session_id: str, args: Sequence[Any], *, op: str | None = None
    ) -> Any:
        """Run a session script answering one JSON document; ``op`` makes a write exactly-once.

        A reply that is not valid JSON means stored bytes are damaged (the reply
        embeds them): :class:`CorruptRecordError` naming the session.
        """
        reply = self.meta(await self.raw(name, session_id, args, op=op), session_id, name)
        if type(reply) is dict and "nd" in reply:
            await self._index_new_deadline(session_id, reply)
        return reply

    async def _index_new_deadline(self, session_id: str, reply: dict[str, Any]) -> None:
        """Enter a deadline the write gave a session that had none (created while
        ``session_ttl`` was 0) in the sweeper's index: it was never expired nor purged."""
        header = reply.get("h")
        deadline = header.get("ex") if isinstance(header, dict) else None
        if isinstance(deadline, str) and deadline.isdecimal():
            # The reply says so once: a caller cancelled now must not leave it unindexed.
            entry = asyncio.ensure_future(self.index.add_deadline(session_id, int(deadline)))
            await asyncio.shield(entry)

    async def raw(
        self, name: str, session_id: str, args: Sequence[Any], *, op: str | None = None
    ) -> Any:
        """Run a session script and return the driver's reply as is.

        When the connection is lost after a write script was sent (every retry of
        the client included), the write may have been applied:
        :class:`WriteOutcomeUnknownError` instead of ``StoreUnavailableError``.
        """
        try:
            return await self.scripts.raw(
                name, self.script_keys(session_id, name, op), self.argv(args)
            )
        except StoreUnavailableError as exc:
            if name in WRITE_SCRIPTS and _maybe_sent(exc):
                raise WriteOutcomeUnknownError(
                    f"the connection to Redis was lost after {name!r} was sent for session "
                    f"{session_id!r}: it may or may not have been applied ({exc.__cause__})"
                ) from exc
            raise

    async def run_turns(
        self, name: str, session_id: str, args: Sequence[Any], *, op: str | None = None
    ) -> tuple[Any, list[Any]]:
        """Run a script that may answer ``{meta, turn, turn, ...}``: (meta, raw turns)."""
        reply = await self.raw(name, session_id, args, op=op)
        meta, turns = (reply[0], reply[1:]) if isinstance(reply, list) else (reply, [])
        data = self.meta(meta, session_id, name)
        if type(data) is dict and "nd" in data:  # a restore may give the first deadline
            await self._index_new_deadline(session_id, data)
        return data, turns

    # ------------------------------------------------------------------ replies
    def record(self, data: Any, session_id: str, now: datetime) -> SessionRecord:
        """The record of a stored header (``CorruptRecordError`` naming the session)."""
        return header_record(data, record=record_name(session_id), now=now)

    def written(self, data: Any, session_id: str, now: datetime, what: str) -> SessionRecord:
        """The record of the header a write script answered after applying ``what``.

        The scripts refuse a header they can see is damaged before writing
        (``header_check.lua``); what only the decoder finds (bytes that are not UTF-8,
        JSON that Lua's decoder takes and orjson does not) is found after the write:
        the error then says that it was applied.
        """
        try:
            return self.record(data, session_id, now)
        except CorruptRecordError as exc:
            raise applied(exc, what) from None

    @staticmethod
    def meta(raw: Any, session_id: str, name: str | None = None) -> Any:
        """A script's JSON reply document, decoded.

        A reply that is not valid JSON means stored bytes are damaged (the reply
        embeds them): :class:`CorruptRecordError` naming the session, saying that the
        write was applied when the reply of write script ``name`` is its success reply.
        """
        try:
            return orjson.loads(raw)
        except (orjson.JSONDecodeError, TypeError) as exc:
            error = CorruptRecordError(
                record_name(session_id), f"stored data is not valid JSON/UTF-8: {exc}"
            )
            if (
                name in WRITE_SCRIPTS
                and isinstance(raw, bytes)
                and raw.startswith(_APPLIED_REPLIES)
            ):
                error = applied(error, name or "write")
            raise error from exc

    @staticmethod
    def turns(items: Sequence[Any], session_id: str) -> list[SessionTurn]:
        """Turns from their stored JSON documents (bytes), parsed and checked in bulk.

        All documents are parsed as one JSON array and checked together
        (``codec.turns_from_documents``), with the garbage collector paused for a long
        session; when anything fails they are decoded one by one, and the damaged one
        raises :class:`CorruptRecordError` naming the session and the field.
        """
        if not items:
            return []
        with paused_gc(len(items)):
            turns = _bulk_turns(items)
        if turns is not None:
            return turns
        record = f"{record_name(session_id)} turn"
        docs = []
        for item in items:
            try:
                docs.append(orjson.loads(item))
            except (orjson.JSONDecodeError, TypeError) as exc:
                raise CorruptRecordError(record, f"invalid JSON: {exc}") from None
        return decode_turns(docs, record=record)

    @staticmethod
    def refuse(reply: dict[str, Any], session_id: str) -> NoReturn:
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
        if code == "KEY":
            raise DataKeyChangedError(session_id)
        if code == "EXISTS":
            raise SessionValidationError("session_id", f"session {session_id!r} already exists")
        if code == "VAL":
            raise SessionValidationError(str(reply.get("a")), str(reply.get("b")))
        if code == "CORRUPT":
            raise CorruptRecordError(
                record_name(session_id), f"field {reply.get('a')}: {reply.get('b')!r}"
            )
        if code == "CPBAD":  # a damaged checkpoint, named as the SQL stores name it
            raise CorruptRecordError(
                f"checkpoint {reply.get('c')!r}", f"field {reply.get('a')}: {reply.get('b')}"
            )
        raise SessionStoreError(f"unexpected reply for session {session_id!r}: {reply!r}")

    async def drop_records(self, keys: Sequence[str]) -> None:
        """Delete reply records once their replies were read (one round trip).

        The replies of scripts that remove a session (``delete``, ``purge``) and of the
        sweeper's batches are recorded outside any session's reply index: once read,
        a re-sent call is no longer possible and the records (which name the user)
        must not outlive the session.
        """
        # execute_command: a cluster pipeline cannot queue its own (multi-slot) unlink
        await self.scripts.pipeline([("execute_command", ("UNLINK", key)) for key in keys])

    async def exists(self, session_id: str, now_us: int) -> bool:
        """Whether the id is taken (a session, or a tombstone still in force)."""
        exists, tomb = await self.scripts.pipeline(
            [
                ("exists", (self.keys.header(session_id),)),
                ("get", (self.keys.tombstone(session_id),)),
            ]
        )
        return bool(exists) or (tomb is not None and int(tomb) > now_us)
