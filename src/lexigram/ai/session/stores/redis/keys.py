"""Redis key layout of the session store.

Every key of one session shares the hash tag ``{<session id>}``, so a Lua script
that touches them all runs on one Redis Cluster slot. Indexes that span sessions
(a user's sessions, the sweeper's deadlines, checkpoint ids) live in their own
slots and are only ever *hints*: every answer drawn from them is re-checked
against the session's own header.

Layout (``P`` = the key prefix)::

    P:s:{sid}:h   hash    the header (SessionState fields + bookkeeping)
    P:s:{sid}:t   list    live turns, one JSON document per element, in seq order
    P:s:{sid}:r   list    live seq ranges "first:last" (aligned with :t)
    P:s:{sid}:i   hash    live turn_id -> seq (duplicate check)
    P:s:{sid}:a   hash    seq -> turn JSON of turns no longer live but named by a checkpoint
    P:s:{sid}:c   zset    checkpoint ids by creation order
    P:s:{sid}:d   hash    checkpoint id -> checkpoint JSON (header, ranges / inline turns)
    P:s:{sid}:k   hash    checkpoint id -> seq ranges "a:b,c:d" (what it keeps alive)
    P:s:{sid}:b   zset    branch (fork) ids by creation order
    P:s:{sid}:p   hash    branch id -> wall-clock time its reservation was made (µs)
    P:s:{sid}:x   string  tombstone of a purged session: "purged until" (µs)
    P:s:{sid}:q   zset    the session's reply keys below (score: when they expire, µs)
    P:s:{sid}:o:<op>:<script>  string  reply of one write operation (kept 5 minutes)
    P:u:{uid}:s   zset    a user's sessions by per-user ordinal (newest = highest)
    P:u:{uid}:l   zset    a user's live sessions and reservations (score: wall µs)
    P:u:{uid}:n   string  the user's ordinal counter
    P:u:{uid}:o:<op>  string  ordinal reserved by one create operation (kept 5 minutes)
    P:c:{cpid}    string  checkpoint id -> session id
    P:g:{index}:d zset    live sessions by (lower bound of) deadline µs
    P:g:{index}:e zset    ended (CLOSED/EXPIRED) sessions by updated_at µs
    P:g:{index}:g hash    how long after their end the ended sessions' keys were kept

A session's reply keys are listed in its ``q`` index while it is stored, so that
``delete``/``purge`` (and so erasure) remove them in the same script; the replies of
those two scripts, and of the sweeper's batches, are deleted once the store read them.

The ``s:``/``u:``/``c:``/``g:`` namespaces keep keys of different kinds from ever
colliding whatever characters the ids contain. An id that is empty or contains
``{``, ``}`` or ``=`` is hex-encoded inside its hash tag (``=<hex>``) so the tag
always covers the whole id.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["SESSION_KEY_NAMES", "KeySpace", "tag"]

#: Suffixes of a session's keys, in the order every session script receives them.
SESSION_KEY_NAMES = ("h", "t", "r", "i", "a", "c", "d", "k", "b", "p", "x", "q")

_SPECIAL = frozenset("{}=")


def tag(ident: str) -> str:
    """The hash-tag body for ``ident`` (escaped when it could break the tag)."""
    if ident and not (_SPECIAL & set(ident)):
        return ident
    return "=" + ident.encode("utf-8").hex()


def own_keys(prefix: str, kind: str, suffix: str) -> Callable[[Any], bool]:
    """A test of a key SCAN found: ``<prefix>:<kind>:{<tag>}:<suffix>`` exactly.

    SCAN's ``*`` also matches across ``}``, so ``P:s:{*}:h`` finds the keys of a store
    whose prefix extends this one (``P:s:{x}:s:{y}:h`` under ``P:s:{x}``); a tag never
    holds a brace (:func:`tag`), so this tells them apart.
    """
    pattern = re.compile(re.escape(f"{prefix}:{kind}:") + r"\{[^{}]*\}" + re.escape(f":{suffix}"))

    def mine(key: Any) -> bool:
        text = key.decode("utf-8", "surrogateescape") if isinstance(key, bytes) else str(key)
        return pattern.fullmatch(text) is not None

    return mine


@dataclass(frozen=True, slots=True)
class KeySpace:
    """Builds every key the store uses under one prefix."""

    prefix: str

    def session(self, session_id: str, names: tuple[str, ...] = SESSION_KEY_NAMES) -> list[str]:
        """Keys of one session (one slot): all of them, or those of ``names`` in its order."""
        base = f"{self.prefix}:s:{{{tag(session_id)}}}:"
        return [base + name for name in names]

    def session_key(self, session_id: str, name: str) -> str:
        """One key of a session by its suffix in :data:`SESSION_KEY_NAMES`."""
        if name not in SESSION_KEY_NAMES:
            raise ValueError(f"no session key {name!r}")
        return f"{self.prefix}:s:{{{tag(session_id)}}}:{name}"

    def header(self, session_id: str) -> str:
        """The session's header hash."""
        return f"{self.prefix}:s:{{{tag(session_id)}}}:h"

    def turns(self, session_id: str) -> str:
        """The session's list of live turns."""
        return self.session_key(session_id, "t")

    def checkpoint_docs(self, session_id: str) -> str:
        """The session's hash of checkpoint id -> checkpoint JSON."""
        return self.session_key(session_id, "d")

    def branches(self, session_id: str) -> str:
        """The session's sorted set of branch ids."""
        return self.session_key(session_id, "b")

    def tombstone(self, session_id: str) -> str:
        """The tombstone of a purged session ("purged until", µs)."""
        return self.session_key(session_id, "x")

    def op(self, session_id: str, op_id: str, script: str) -> str:
        """The key recording the reply of ``script`` run by operation ``op_id`` (same slot)."""
        return f"{self.prefix}:s:{{{tag(session_id)}}}:o:{op_id}:{script}"

    def user_op(self, user_id: str, op_id: str) -> str:
        """The key recording the ordinal reserved by create operation ``op_id``."""
        return f"{self.prefix}:u:{{{tag(user_id)}}}:o:{op_id}"

    def user(self, user_id: str) -> list[str]:
        """The user's index keys: all sessions, live sessions, ordinal counter (one slot)."""
        base = f"{self.prefix}:u:{{{tag(user_id)}}}:"
        return [base + "s", base + "l", base + "n"]

    def user_sessions(self, user_id: str) -> str:
        """The user's sessions by per-user ordinal."""
        return f"{self.prefix}:u:{{{tag(user_id)}}}:s"

    def user_live(self, user_id: str) -> str:
        """The user's live sessions and reservations."""
        return f"{self.prefix}:u:{{{tag(user_id)}}}:l"

    def checkpoint(self, checkpoint_id: str) -> str:
        """The key naming the session a checkpoint belongs to."""
        return f"{self.prefix}:c:{{{tag(checkpoint_id)}}}"

    @property
    def deadlines(self) -> str:
        """Sorted set of live sessions by the lower bound of their deadline."""
        return f"{self.prefix}:g:{{index}}:d"

    @property
    def ended(self) -> str:
        """Sorted set of CLOSED/EXPIRED sessions by their last update."""
        return f"{self.prefix}:g:{{index}}:e"

    @property
    def ended_grace(self) -> str:
        """Hash: the key expiry the ended sessions were given by the sweeper (see
        ``SweepOps``): ``g`` (ms after the end), ``w``/``k`` how far through the ended
        index (score, entries at that score), ``c`` = "1" once through to its end."""
        return f"{self.prefix}:g:{{index}}:g"

    @property
    def pattern(self) -> str:
        """A SCAN pattern matching every key under the prefix."""
        escaped = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in self.prefix)
        return escaped + ":*"
