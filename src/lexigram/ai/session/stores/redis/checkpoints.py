"""Checkpoint operations of the Redis store (create, restore, list, delete, compat save).

A component of the store facade (``store.py``), working through its :class:`RedisCore`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import orjson
from lexigram.contracts.ai.session import SessionCheckpoint, SessionState

from lexigram.ai.session.exceptions import (
    CheckpointNotFoundError,
    CorruptRecordError,
    SessionNotFoundError,
    SessionStoreError,
    SessionValidationError,
    StoreUnavailableError,
)
from lexigram.ai.session.stores import codec
from lexigram.ai.session.stores._common import refuse_taken_checkpoint
from lexigram.ai.session.stores.redis.core import RedisCore, applied, new_op
from lexigram.ai.session.stores.redis.wire import (
    decode_header,
    encode_header,
    encode_turn,
    from_us,
    to_us,
)
from lexigram.ai.session.validation import check_checkpoint, check_id, check_json

__all__ = ["CheckpointOps"]


#: Tries at claiming a checkpoint id while other writers take and let go of it.
_CLAIM_ATTEMPTS = 4
#: ``SET key new`` only while it holds ``old``; ``DEL key`` only while it holds ``old``.
_SWAP_IF = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0"
)
_DELETE_IF = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
    "return 0"
)
#: Claims being settled after a cancelled write (kept referenced until they end).
_SETTLING: set[asyncio.Future[None]] = set()


class CheckpointOps:
    """Checkpoints: the header and the live seq ranges, in the session's own slot."""

    def __init__(self, core: RedisCore) -> None:
        self._core = core

    def _checkpoint(self, data: Any, turns: Any, checkpoint_id: str) -> SessionCheckpoint:
        record = f"checkpoint {checkpoint_id!r}"
        if not isinstance(data, dict) or not isinstance(data.get("h"), dict):
            raise CorruptRecordError(record, "field header: missing")
        state, _ = decode_header(data["h"], record=record)
        try:
            created = from_us(int(data["ca"]))
            metadata = orjson.loads(data.get("m") or "{}")
        except (KeyError, ValueError, TypeError, OverflowError, orjson.JSONDecodeError) as exc:
            raise CorruptRecordError(record, f"field created_at/metadata: {exc}") from None
        return SessionCheckpoint(
            checkpoint_id=checkpoint_id,
            session_id=data.get("sid") or state.session_id,
            state=replace(state, turns=self._core.turns(turns, state.session_id)),
            created_at=created,
            parent_checkpoint_id=data.get("p"),
            metadata=metadata,
        )

    async def _checkpoint_owner(self, checkpoint_id: str) -> str | None:
        owner = await self._core.scripts.command("get", self._core.keys.checkpoint(checkpoint_id))
        return None if owner is None else bytes(owner).decode()

    async def save_checkpoint(self, checkpoint: SessionCheckpoint) -> None:
        _, now_us = self._core.clock()
        checkpoint = check_checkpoint(checkpoint)
        state = checkpoint.state
        cpid = checkpoint.checkpoint_id
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
        op = new_op()
        owner_key = self._core.keys.checkpoint(cpid)
        sid = checkpoint.session_id

        async def write() -> Any:  # exactly-once under ``op``: it may be sent again
            return await self._core.run(
                "cp_save", sid, [now_us, sid, orjson.dumps(data), cpid], op=op
            )

        try:
            holder = await self._claim(owner_key, sid, cpid)
            if holder is not None:
                refuse_taken_checkpoint(cpid, holder, sid)
            reply = await write()
            if isinstance(reply, dict) and "e" in reply:
                self._core.refuse(reply, sid)
        except StoreUnavailableError:
            raise  # outcome unknown: the checkpoint may exist, keep its index entry
        except asyncio.CancelledError:
            # The script may be in flight: sent again under its op (answered from its
            # record when it ran), the claim then follows its outcome.
            self._settle_claim(owner_key, sid, write)
            raise
        except BaseException:
            # Refused: a claim of ours is let go; another session's is left alone.
            await self._unclaim(owner_key, sid)
            raise

    async def load_checkpoint(self, checkpoint_id: str) -> SessionCheckpoint | None:
        _, now_us = self._core.clock()
        owner = await self._checkpoint_owner(checkpoint_id)
        if owner is None:
            return None
        reply, turns = await self._core.run_turns("cp_load", owner, [now_us, checkpoint_id, "1"])
        if "e" in reply:
            self._core.refuse(reply, owner)
        if "d" not in reply:
            return None
        return self._checkpoint(reply["d"], turns, checkpoint_id)

    async def _list_checkpoints(self, session_id: str, *, turns: bool) -> list[SessionCheckpoint]:
        _, now_us = self._core.clock()
        reply, lists = await self._core.run_turns(
            "cp_list", session_id, [now_us, "1" if turns else "0"]
        )
        if "e" in reply:
            self._core.refuse(reply, session_id)
        return [
            self._checkpoint(item["d"], items or [], item["i"])
            for item, items in zip(reply["l"], lists, strict=True)
        ]

    async def list_checkpoints(self, session_id: str) -> list[SessionCheckpoint]:
        return await self._list_checkpoints(session_id, turns=True)

    async def list_checkpoint_headers(self, session_id: str) -> list[SessionCheckpoint]:
        return await self._list_checkpoints(session_id, turns=False)

    async def delete_checkpoint(self, checkpoint_id: str) -> bool:
        _, now_us = self._core.clock()
        owner = await self._checkpoint_owner(checkpoint_id)
        if owner is None:
            return False
        reply = await self._core.run("cp_delete", owner, [now_us, checkpoint_id], op=new_op())
        await self._core.scripts.command("delete", self._core.keys.checkpoint(checkpoint_id))
        return bool(reply.get("ok"))

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
        now, now_us = self._core.clock()
        check_id(checkpoint_id, "checkpoint_id")
        if metadata:
            check_json(metadata, "metadata")
        meta = codec.dumps(metadata or {}, field="metadata")
        index_key = self._core.keys.checkpoint(checkpoint_id)
        op = new_op()
        args = [
            now_us,
            checkpoint_id,
            meta,
            "" if max_checkpoints is None else str(max_checkpoints),
            "1" if include_turns else "0",
            key_guard or "",
        ]
        try:
            # Inside the try: a claim cancelled after Redis set it is let go below.
            if await self._claim(index_key, session_id, checkpoint_id) is not None:
                # The session first, as on the other backends (an id taken only by a
                # tombstone is no session).
                if not await self._core.scripts.command(
                    "exists", self._core.keys.header(session_id)
                ):
                    raise SessionNotFoundError(session_id)
                raise SessionValidationError(
                    "checkpoint_id", f"checkpoint {checkpoint_id!r} already exists"
                )
            reply, turns = await self._core.run_turns("cp_create", session_id, args, op=op)
        except StoreUnavailableError:
            raise  # outcome unknown: the checkpoint may exist, keep its index entry
        except asyncio.CancelledError:
            # A create cancelled after its script was sent keeps the entry of the
            # checkpoint it made (restore and fork find it by its id): sent again under
            # its op, the claim follows its outcome.
            async def again() -> Any:
                return (await self._core.run_turns("cp_create", session_id, args, op=op))[0]

            self._settle_claim(index_key, session_id, again)
            raise
        except BaseException:
            await self._unclaim(index_key, session_id)
            raise
        if "e" in reply:
            if reply["e"] == "CPEX":  # the session holds it already, entry and all
                raise SessionValidationError(
                    "checkpoint_id", f"checkpoint {checkpoint_id!r} already exists"
                )
            await self._unclaim(index_key, session_id)
            self._core.refuse(reply, session_id)
        pruned: list[str] = list(reply["p"])
        if pruned:
            await self._core.index.pipe(
                [("delete", (self._core.keys.checkpoint(p),)) for p in pruned]
            )
        del now
        try:
            return self._checkpoint(reply["d"], turns, checkpoint_id), pruned
        except CorruptRecordError as exc:
            raise applied(exc, "checkpoint") from None

    async def _claim(self, index_key: str, session_id: str, checkpoint_id: str) -> str | None:
        """Claim ``checkpoint_id`` for ``session_id`` (``SET NX``); the session holding it
        instead, or None once claimed. Of two writes of one new id for two sessions one
        claims it (a read, then a write, let both pass); a stale entry is taken over by
        a compare-and-set, so that of two writers seeing it stale one wins."""
        owner: str | None = None
        for _ in range(_CLAIM_ATTEMPTS):
            if await self._core.scripts.command("set", index_key, session_id, nx=True):
                return None
            owner = await self._checkpoint_owner(checkpoint_id)
            if owner is None:
                continue  # let go meanwhile: claim it again
            if owner == session_id:
                return None
            if not await self._stale_claim(owner, checkpoint_id):
                return owner
            if await self._core.scripts.command(
                "eval", _SWAP_IF, 1, index_key, owner, session_id
            ):
                return None  # the stale entry (its session's keys expired) is ours now
        # Taken and let go by other writers on every try: not ours, say whose it was.
        raise SessionStoreError(
            f"checkpoint {checkpoint_id!r}: its id is being claimed by other writers "
            f"(last held by {owner!r}); try again"
        )

    def _settle_claim(
        self, index_key: str, session_id: str, resend: Callable[[], Awaitable[Any]]
    ) -> None:
        """In the background: ``resend`` the cancelled write under its op; its claim is
        let go when the write was refused, kept when it was applied."""

        async def settle() -> None:
            reply = await resend()
            # CPEX: the session holds that checkpoint already, entry and all.
            if isinstance(reply, dict) and reply.get("e") not in (None, "CPEX"):
                await self._unclaim(index_key, session_id)

        task = asyncio.ensure_future(settle())
        _SETTLING.add(task)
        task.add_done_callback(_SETTLING.discard)

    async def _stale_claim(self, owner: str, checkpoint_id: str) -> bool:
        """Whether ``owner``'s claim on ``checkpoint_id`` is left over: the checkpoint is
        not stored and neither is the owner's session (its keys expired). A claim whose
        session exists and whose checkpoint does not yet is another write in progress."""
        if await self._checkpoint_exists(owner, checkpoint_id):
            return False
        return not await self._core.scripts.command("exists", self._core.keys.header(owner))

    async def _checkpoint_exists(self, session_id: str, checkpoint_id: str) -> bool:
        found = await self._core.scripts.command(
            "hexists", self._core.keys.checkpoint_docs(session_id), checkpoint_id
        )
        return bool(found)

    async def _unclaim(self, index_key: str, session_id: str) -> None:
        """Let go of our claim (compare-and-delete: another writer's is never touched)."""
        # Best effort: an entry left behind is stale and taken over by the next write.
        with contextlib.suppress(SessionStoreError):
            await self._core.scripts.command("eval", _DELETE_IF, 1, index_key, session_id)

    async def restore_checkpoint(self, checkpoint_id: str) -> SessionState:
        now, now_us = self._core.clock()
        owner = await self._checkpoint_owner(checkpoint_id)
        if owner is None:
            raise CheckpointNotFoundError(checkpoint_id)
        reply, turns = await self._core.run_turns(
            "cp_restore", owner, [now_us, checkpoint_id, self._core.deadline_arg(now)], op=new_op()
        )
        if "e" in reply:
            if reply["e"] == "CPNF":
                raise CheckpointNotFoundError(checkpoint_id)
            self._core.refuse(reply, owner)
        record = self._core.written(reply["h"], owner, now, "restore")
        return replace(record.state, turns=self._core.turns(turns, owner))
