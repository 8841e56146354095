"""Key envelopes in Redis: the header hash's ``m`` field and the checkpoint hash ``d``."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.stores.encrypted.envelopes import (
    Found,
    checkpoint_envelope,
    metadata_envelope,
    names_key,
)
from lexigram.ai.session.stores.redis.keys import own_keys

__all__ = ["RedisEnvelopes"]

# KEYS: header hash, checkpoint hash (one slot). ARGV: old1, new1, old2, new2, ...
_SWAP = """
local function swap(s)
  for i = 1, #ARGV, 2 do
    local out, from = {}, 1
    while true do
      local a, b = string.find(s, ARGV[i], from, true)
      if not a then break end
      out[#out + 1] = string.sub(s, from, a - 1)
      out[#out + 1] = ARGV[i + 1]
      from = b + 1
    end
    out[#out + 1] = string.sub(s, from)
    s = table.concat(out)
  end
  return s
end
local m = redis.call('HGET', KEYS[1], 'm')
if m then redis.call('HSET', KEYS[1], 'm', swap(m)) end
local d = redis.call('HGETALL', KEYS[2])
for i = 1, #d, 2 do redis.call('HSET', KEYS[2], d[i], swap(d[i + 1])) end
return 1
"""


#: Where a stored checkpoint keeps its header's metadata (a JSON string).
_CHECKPOINT_METADATA = ("h", "m")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class RedisEnvelopes:
    """Envelopes of a ``CacheSessionStore`` (the cursor is Redis's SCAN cursor)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        escaped = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in store.keys.prefix)
        # The hash tag's braces keep most stores whose prefix extends this one out of
        # the match ("app:s:x" beside "app"); ``own_keys`` the rest ("app:s:{x}").
        self.match = escaped + ":s:{*}:h"
        self.mine = own_keys(store.keys.prefix, "s", "h")
        self.scope = f"redis:{store.keys.prefix}"

    def _redis(self, where: str) -> AbstractAsyncContextManager[Any]:
        """The store's client under its gate, driver errors as the store's (``guarded``)."""
        return self.store._core.scripts.guarded(where)  # type: ignore[no-any-return]

    async def _header_keys(self, cursor: str | None, limit: int) -> tuple[list[str], str | None]:
        async with self._redis("SCAN") as client:
            if isinstance(client, RedisCluster):
                return await self._cluster_header_keys(client, cursor, limit)
            return await self._single_header_keys(client, cursor, limit)

    async def _single_header_keys(
        self, client: Any, cursor: str | None, limit: int
    ) -> tuple[list[str], str | None]:
        start = cursor or "0"
        if not start.isdecimal():
            raise SessionValidationError("resume_from", f"{cursor!r} is not a SCAN position")
        try:
            position, keys = await client.scan(cursor=int(start), match=self.match, count=limit)
        except ResponseError as exc:  # a position this server does not take
            raise SessionValidationError(
                "resume_from", f"{cursor!r} is not a SCAN position of this server: {exc}"
            ) from None
        found = [_text(k) for k in keys if self.mine(k)]
        return found, (None if int(position) == 0 else str(position))

    async def _cluster_header_keys(
        self, client: RedisCluster, cursor: str | None, limit: int
    ) -> tuple[list[str], str | None]:
        """One SCAN step on one master of a Cluster; the position is ``<master>:<cursor>``.

        Masters are taken in the order of their names (``host:port``), each scanned to
        its end before the next. A position names a master by its place in that order:
        after a failover changed the masters, a resumed run may see some sessions again
        (a rotation skips what is already re-wrapped) or miss some (``keys status``
        still counts them, and ``keys retire`` refuses while any needs the old key).
        """
        masters = sorted(client.get_primaries(), key=lambda node: node.name)
        index_text, _, node_text = (cursor or "0:0").partition(":")
        numbers = index_text.isdecimal() and node_text.isdecimal()
        if not numbers or int(index_text) >= len(masters):
            raise SessionValidationError("resume_from", f"{cursor!r} is not a SCAN position")
        index, master = int(index_text), masters[int(index_text)]
        try:
            # On a Cluster the reply's first item maps each scanned node to its cursor.
            positions: Any
            positions, keys = await client.scan(
                cursor=int(node_text), match=self.match, count=limit, target_nodes=master
            )
        except ResponseError as exc:  # a position this server does not take
            raise SessionValidationError(
                "resume_from", f"{cursor!r} is not a SCAN position of this server: {exc}"
            ) from None
        found = [_text(k) for k in keys if self.mine(k)]
        following = int(positions.get(master.name, 0))
        if following:
            return found, f"{index}:{following}"
        return found, (f"{index + 1}:0" if index + 1 < len(masters) else None)

    async def scan(self, cursor: str | None, limit: int) -> tuple[Found, str | None]:
        """Headers found by one SCAN step after ``cursor``, with their envelopes."""
        keys, next_cursor = await self._header_keys(cursor, limit)
        out: Found = []
        async with self._redis("key envelopes") as client:
            for key in keys:
                session_id, metadata = await client.hmget(key, ["id", "m"])
                if session_id is None:
                    continue
                found = metadata_envelope(metadata)
                for snapshot in await client.hvals(key[:-1] + "d"):
                    found |= checkpoint_envelope(snapshot, *_CHECKPOINT_METADATA)
                out.append((_text(session_id), found))
        return out, next_cursor

    async def replace(self, changes: Mapping[str, Mapping[str, str]]) -> None:
        """One Lua script per session on its slot."""
        async with self._redis("key envelope swap") as client:
            for session_id, swaps in changes.items():
                if not swaps:
                    continue
                header = self.store.keys.header(session_id)
                args = [part for pair in swaps.items() for part in pair]
                await client.eval(_SWAP, 2, header, header[:-1] + "d", *args)

    async def count(self, key_id: str) -> int:
        """Headers plus checkpoints naming ``key_id`` (one full SCAN)."""
        total = 0
        cursor: str | None = None
        while True:
            keys, cursor = await self._header_keys(cursor, 500)
            async with self._redis("key envelopes") as client:
                for key in keys:
                    metadata = await client.hget(key, "m")
                    total += names_key(metadata_envelope(metadata), key_id)
                    for value in await client.hvals(key[:-1] + "d"):
                        found = checkpoint_envelope(value, *_CHECKPOINT_METADATA)
                        total += names_key(found, key_id)
            if cursor is None:
                return total
