"""Lua scripts of the Redis session store.

Each session script receives the session's keys in :data:`keys.SESSION_KEY_NAMES`
order (all in one hash slot) and ``ARGV[1]`` = the store's "now" in microseconds,
so tests can move the clock. A script first checks everything, then writes: it
never leaves a half-done change behind, and Redis runs it as one indivisible step
whatever other clients do. Replies are one JSON string (cheap to parse in Python):
``{"e": code, "a": ..., "b": ...}`` for a refused operation, otherwise an object
whose ``"h"`` is the header hash and ``"t"`` the turns' JSON documents.

Every value that travels through ``cjson`` is a string, so no number is ever
re-formatted by Lua (cjson keeps only 14 significant digits). Arithmetic on
totals uses Lua's doubles and ``%.17g``, which round-trips exactly as Python floats;
token totals are refused past 2**53-1, below which doubles hold integers exactly.

Write scripts (:data:`WRITE_SCRIPTS`) are wrapped by ``_OP_EPILOGUE``: given an
operation-id key as ``KEYS[13]`` they run their body once per operation id and
answer a re-sent call with the recorded reply, then set the session keys' Redis
expiry when ``ARGV[1]`` carries a grace (``"now|grace_ms"``). ``append`` does the
same by itself, with fewer keys (:data:`APPEND_KEYS`, op key, :data:`APPEND_GRACE_KEYS`).
A recorded reply is indexed in the session's ``q`` key, which ``delete`` and ``purge``
empty with the session; a refusal because the session is missing is not recorded.

The Lua sources are files of their own in ``lua/`` (package data, read with
:mod:`importlib.resources`): ``header_check.lua``, ``session_base.lua`` then
``session_prelude.lua`` (shared helpers), one file per operation (``cp_restore.lua``, ...),
and the once-per-operation wrapper (``op_epilogue.lua``, ``*_replay.lua``); this module only
assembles them. The chat path's ``append.lua`` stands alone (see :data:`APPEND_KEYS`) but
for ``header_check.lua``, the checks that refuse a damaged header before a write.
"""

from __future__ import annotations

from importlib import resources

__all__ = [
    "APPEND_KEYS",
    "APPEND_GRACE_KEYS",
    "OP_TTL_MS",
    "SCRIPTS",
    "lua_source",
    "SESSION_BASE",
    "SESSION_PRELUDE",
    "WRITE_SCRIPTS",
]


def lua_source(name: str) -> str:
    """The Lua source ``lua/<name>.lua`` shipped beside this module (package data)."""
    path = resources.files("lexigram.ai.session.stores.redis").joinpath("lua", f"{name}.lua")
    return path.read_text(encoding="utf-8")


_lua = lua_source


#: The header checks a write makes before writing (shared with ``append``).
HEADER_CHECK = _lua("header_check")

#: What every session script starts with: its keys and clock, header checks and writes.
SESSION_BASE = HEADER_CHECK + _lua("session_base")

#: The whole shared prelude: the base, then lists, seq ranges, checkpoints, archive.
SESSION_PRELUDE = SESSION_BASE + _lua("session_prelude")

# ARGV: now, header-json, k, then k (turn_id, json) pairs. Refuses an existing or
# tombstoned id.
_CREATE = _lua("create")

# ARGV: now, header-json, k, pairs. Insert or replace a whole session (compat path).
_SAVE = _lua("save")

# The chat path: a standalone script (no shared prelude, its own once-per-operation
# record and key expiry: less for Redis to run on every exchange). KEYS: APPEND_KEYS,
# then the operation's record key, then APPEND_GRACE_KEYS (whose expiry it sets or removes).
# ARGV: now, deadline|'', max_turns|'', k, tokens, costs "c1,c2,...", patch|'', then k pairs.
_APPEND = _lua("append")

#: The session keys the append script reads and writes, by suffix (then its op key).
APPEND_KEYS = ("h", "t", "r", "i", "q")

#: The other session keys whose expiry the append script sets (a grace) or removes (none).
APPEND_GRACE_KEYS = ("a", "c", "d", "k", "b", "p")

# ARGV: now, deadline|'', patch.
_UPDATE = _lua("update")

# ARGV: now, deadline|'', to_status, allowed (comma separated).
_TRANSITION = _lua("transition")

# ARGV: now, deadline|''. Ends the newest live turn's liveness.
_POP = _lua("pop")

# ARGV: now, deadline|''. Ends every live turn's liveness.
_CLEAR = _lua("clear")

# ARGV: now.
_RECORD = _lua("record")

# ARGV: now, mode ('last'|'after'), K or S ('' = none), limit|''.
_TURNS = _lua("turns")

# KEYS: many session headers (single server only); ARGV: fields. HMGET of each.
_PROBE_MANY = _lua("probe_many")

# ARGV: now, checkpoint id, metadata-json, max|'', include_turns ('1'|'0').
_CP_CREATE = _lua("cp_create")

# ARGV: now, session-id, checkpoint-json, checkpoint-id. Store a whole checkpoint (compat).
_CP_SAVE = _lua("cp_save")

# ARGV: now, checkpoint id, include_turns.
_CP_LOAD = _lua("cp_load")

# ARGV: now, include_turns.
_CP_LIST = _lua("cp_list")

# ARGV: now, checkpoint id.
_CP_DELETE = _lua("cp_delete")

# ARGV: now, checkpoint id, deadline|''.
_CP_RESTORE = _lua("cp_restore")

# ARGV: now, branch id, max_branches|'', checkpoint id|'', wall-clock µs.
# Reserves the branch slot and reads the fork point in one step.
_FORK_SOURCE = _lua("fork_source")

# ARGV: now, branch id, wall-clock µs. Index a branch under its parent (no limit).
_BRANCH_ADD = _lua("branch_add")

# ARGV: now, branch id. Forget a branch (reservation released or branch removed).
_BRANCH_DROP = _lua("branch_drop")

# ARGV: now. Delete every key of the session; report what the indexes must forget.
_DELETE = _lua("delete")

# ARGV: now, tombstone-until µs, safety expiry seconds.
_PURGE = _lua("purge")

# ARGV: now. Store EXPIRED when the session is still stored live and past its deadline.
_MARK_EXPIRED = _lua("mark_expired")

# ARGV: now. Mark an undecodable session 'quarantined:<status>' (writes refuse it);
# answers its user id. Idempotent, so not once-per-operation.
_QUARANTINE = _lua("quarantine")

# User slot. KEYS: sessions zset, live zset, ordinal counter.
# ARGV: wall µs, session id, cap|'', live ('1'|'0'). Reserve a place for a new session.
# KEYS[4], when given, records the ordinal of this operation (a re-sent reserve
# answers it again instead of 'DUP').
_RESERVE = _lua("reserve")

# Replays of scripts whose reply carries turns: the record holds the reply's
# first element (the JSON meta); the turns are read again from the checkpoint.
_CP_CREATE_REPLAY = _lua("cp_create_replay")

_CP_RESTORE_REPLAY = _lua("cp_restore_replay")

_DEFAULT_REPLAY = _lua("default_replay")

# Runs a write script's body exactly once per operation id: KO (KEYS[13]) holds
# the reply of the first run for OP_TTL_MS; a re-sent call answers it again. Then
# every key of the session gets the storage-level expiry (when GRACE is given).
_KEEP_KEYS = _lua("keep_keys")
_OP_EPILOGUE = _KEEP_KEYS + _lua("op_epilogue")

_SESSION_SCRIPTS = {
    "create": _CREATE,
    "save": _SAVE,
    "update": _UPDATE,
    "transition": _TRANSITION,
    "pop": _POP,
    "clear": _CLEAR,
    "record": _RECORD,
    "turns": _TURNS,
    "cp_create": _CP_CREATE,
    "cp_save": _CP_SAVE,
    "cp_load": _CP_LOAD,
    "cp_list": _CP_LIST,
    "cp_delete": _CP_DELETE,
    "cp_restore": _CP_RESTORE,
    "fork_source": _FORK_SOURCE,
    "branch_add": _BRANCH_ADD,
    "branch_drop": _BRANCH_DROP,
    "delete": _DELETE,
    "purge": _PURGE,
    "mark_expired": _MARK_EXPIRED,
    "quarantine": _QUARANTINE,
}

#: Scripts that write: run once per operation id (see ``_OP_EPILOGUE``).
WRITE_SCRIPTS = frozenset(
    {
        "create",
        "save",
        "append",
        "update",
        "transition",
        "pop",
        "clear",
        "cp_create",
        "cp_save",
        "cp_delete",
        "cp_restore",
        "fork_source",
        "branch_add",
        "branch_drop",
        "delete",
        "purge",
        "mark_expired",
    }
)

#: How long the reply of a write stays recorded for a re-sent call (ms).
OP_TTL_MS = 300_000

_REPLAYS = {"cp_create": _CP_CREATE_REPLAY, "cp_restore": _CP_RESTORE_REPLAY}
_OP_TTL = f"local OP_TTL_MS = {OP_TTL_MS}\n"


def _session_script(name: str, body: str) -> str:
    if name not in WRITE_SCRIPTS:
        return SESSION_PRELUDE + body
    replay = _REPLAYS.get(name, _DEFAULT_REPLAY)
    return (
        SESSION_PRELUDE
        + _OP_TTL
        + replay
        + "local function body()\n"
        + body
        + "\nend\n"
        + _OP_EPILOGUE
    )


# The sweeper's batches on a single server: KEYS 12 per session, then the batch's op key.
_SESSION_BATCH = _lua("session_batch")


def _batch_script(name: str) -> str:
    """Session script ``name`` run for many sessions in one call (``session_batch.lua``)."""
    body = _SESSION_SCRIPTS[name]
    return (
        SESSION_PRELUDE
        + _OP_TTL
        + f"local function body()\n{body}\nend\n"
        + _KEEP_KEYS
        + _SESSION_BATCH
    )


#: Every script's full source by name (session scripts carry the shared prelude).
SCRIPTS: dict[str, str] = {
    **{name: _session_script(name, body) for name, body in _SESSION_SCRIPTS.items()},
    "append": _OP_TTL + HEADER_CHECK + _APPEND,
    **{f"{name}_many": _batch_script(name) for name in ("mark_expired", "purge")},
    "index_batch": _lua("index_batch"),
    "user_gc": _lua("user_gc"),
    "user_unlive": _lua("user_unlive"),
    "reserve": _OP_TTL + _RESERVE,
    "probe_many": _PROBE_MANY,
    # ARGV: now, grace ms. Moves an ended session's key expiry to its end + grace.
    "keep_ended": SESSION_BASE + _lua("keep_ended"),
}
