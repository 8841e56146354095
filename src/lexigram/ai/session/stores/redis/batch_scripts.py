"""Many calls as one script call on a single Redis server (the sweeper's batches).

Redis Cluster spreads a batch's sessions and index keys over slots, so there every
session runs its own script and index commands go through a pipeline. A single
server takes them as one script call instead, whose one reply costs far less to
read than one reply per session or per command:

* :func:`run_session_chunk` runs a session script (``mark_expired``, ``purge``) for
  a chunk of up to :data:`CHUNK` sessions (:func:`chunked`) through ``<name>_many``
  (``lua/session_batch.lua``), the call recorded under its own operation id: a call
  re-sent after a lost reply answers what its first run did.
* :func:`run_index_commands` runs index commands (``zrem``, ``zadd``, ``delete`` as
  :meth:`Indexes.pipe` takes them) through ``lua/index_batch.lua``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from lexigram.ai.session.exceptions import SessionStoreError, StoreUnavailableError
from lexigram.ai.session.stores.redis.client import ScriptRunner, translate
from lexigram.ai.session.stores.redis.keys import KeySpace

__all__ = ["CHUNK", "chunked", "run_index_commands", "run_session_chunk", "scriptable"]

#: Sessions per script call: bounds how long one call holds the server (a few ms).
CHUNK = 250

#: Arguments per command inside ``index_batch.lua`` (Lua's ``unpack`` has a limit).
_ARGS_PER_GROUP = 1000

#: Fewer index commands than this go as a plain pipeline (as cheap for a few replies).
_MIN_COMMANDS = 8

_INDEX_COMMANDS = frozenset({"zrem", "zadd", "delete"})


def chunked(session_ids: Sequence[str]) -> list[Sequence[str]]:
    """``session_ids`` cut into chunks of at most :data:`CHUNK`."""
    return [session_ids[i : i + CHUNK] for i in range(0, len(session_ids), CHUNK)]


async def run_session_chunk(
    scripts: ScriptRunner,
    keys: KeySpace,
    name: str,
    chunk: Sequence[str],
    argv: Sequence[Any],
    *,
    new_op: Callable[[], str],
    drop: Callable[[Sequence[str]], Awaitable[None]],
) -> list[Any]:
    """Session script ``name`` for every id of ``chunk`` as one call: one reply per id.

    A reply is the script's JSON document (bytes), or the store's error when Redis
    refused the call as a whole. ``argv`` is the script's, shared by every id; a
    failure to reach Redis raises (:class:`StoreUnavailableError`). Once read, the
    call's record (the replies of many sessions) goes through ``drop``.
    """
    chunk_keys = [key for sid in chunk for key in keys.session(sid)]
    # The record lives in the first session's slot (a single server: any slot).
    record = keys.op(chunk[0], new_op(), f"{name}_many")
    chunk_keys.append(record)
    try:
        reply = await scripts.raw(f"{name}_many", chunk_keys, argv)
    except StoreUnavailableError:
        raise
    except SessionStoreError as exc:
        return [exc] * len(chunk)
    await drop([record])
    return bytes(reply).split(b"\n")


def scriptable(commands: Sequence[tuple[str, tuple[Any, ...]]]) -> bool:
    """Whether :func:`run_index_commands` takes ``commands`` (and there are enough of them)."""
    return len(commands) >= _MIN_COMMANDS and all(name in _INDEX_COMMANDS for name, _ in commands)


async def run_index_commands(
    scripts: ScriptRunner, commands: Sequence[tuple[str, tuple[Any, ...]]]
) -> list[Any]:
    """Run :meth:`Indexes.pipe` commands as one script call; one reply per command.

    Every command runs, as in a pipeline; then the first one Redis refused is raised
    (the store's own error). A command split into several groups (long argument
    lists) answers the sum of their counts, as the whole command would.
    """
    key_numbers: dict[str, int] = {}
    argv: list[Any] = []
    owners: list[int] = []  # the command each group belongs to
    for index, (name, args) in enumerate(commands):
        for command, key, rest in _groups(name, args):
            number = key_numbers.setdefault(key, len(key_numbers) + 1)
            argv += [command, number, len(rest), *rest]
            owners.append(index)
    results = await scripts.raw("index_batch", list(key_numbers), argv)
    replies: list[Any] = [0] * len(commands)
    failure: Exception | None = None
    for owner, result in zip(owners, results, strict=True):
        if isinstance(result, Exception):
            failure = failure or result
            replies[owner] = result
        elif not isinstance(replies[owner], Exception):
            replies[owner] += result
    if failure is not None:
        translate(failure, "index_batch")
    return replies


def _groups(name: str, args: tuple[Any, ...]) -> list[tuple[str, str, list[Any]]]:
    """A pipeline command as ``index_batch.lua`` groups: (command, key, arguments)."""
    if name == "delete":
        return [("DEL", key, []) for key in args]
    key, rest = args[0], args[1:]
    if name == "zrem":
        return [("ZREM", key, part) for part in _parts(list(rest), 1)]
    if name == "zadd" and len(rest) <= 3:
        # zadd(key, mapping, nx=False, xx=False), positional as the store calls it
        mapping: Mapping[Any, float] = rest[0]
        flags = [flag for flag, on in zip(("NX", "XX"), rest[1:], strict=False) if on]
        pairs = [x for member, score in mapping.items() for x in (_score(score), member)]
        return [("ZADD", key, flags + part) for part in _parts(pairs, 2)]
    raise ValueError(f"no script form for index command {name!r} {args!r}")


def _parts(items: list[Any], width: int) -> list[list[Any]]:
    """``items`` cut into lists of at most :data:`_ARGS_PER_GROUP` (whole ``width`` tuples)."""
    step = _ARGS_PER_GROUP - _ARGS_PER_GROUP % width
    return [items[i : i + step] for i in range(0, len(items), step)]


def _score(score: float) -> str:
    """A sorted-set score as redis-py sends it."""
    return repr(score) if isinstance(score, float) else str(int(score))
