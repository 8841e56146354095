"""Re-reading a session read whole before: one comparison instead of a lookup per turn.

A process that reads a long encrypted session again (each agent step reads its
history) finds it starting with the same turns as its last whole read. A
:class:`Run` is what that read opened: the turn ids and sealed texts in order, the
raw data key they opened under, and their plaintext bodies (text-only bodies as
``str``, the JSON ones joined into one array). When a new read starts with exactly
those turns (the same ids, the same sealed texts, the same key, and nothing stored in
clear beside a sealed text), their bodies are installed with no per-turn lookup, and
only the turns after them (appended since) are opened one by one.

A sealed text opens to a single plaintext under one key and turn id, so the exact match
answers as the decryption would. The comparison is one pass over the turns: on turns
freshly decoded by a backend each pass costs about a cache miss per turn, whatever it
does. JSON bodies are parsed again on every read, so each read gets its own containers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from itertools import compress, islice, repeat
from operator import attrgetter, itemgetter, not_, setitem
from typing import Any

import orjson
from lexigram.contracts.ai.session import SessionTurn

__all__ = ["Run", "extended", "install", "matches", "new_run", "parsed_bodies"]

_fields = attrgetter("__dict__")
#: What a stored sealed turn must hold to match: its id, its sealed text, and the
#: three containers stored empty beside it (a value planted there is not the turn's).
_STORED = itemgetter("turn_id", "content", "tool_calls", "skill_results", "metadata")
_NO_LIST: list[Any] = []  # compared against, never handed out
_NO_MAP: dict[str, Any] = {}


@dataclass(frozen=True, slots=True, eq=False)
class Run:
    """The opened bodies of a session's last whole read, in turn order."""

    raw_key: bytes
    stored: list[tuple[Any, ...]]  # (turn id, sealed text, [], [], {}) per turn
    text_at: list[int]
    texts: list[str]
    json_at: list[int]
    json_array: bytes
    size: int  # bytes held, roughly (what the cache's budget counts)

    @property
    def ids(self) -> list[str]:
        """The turn ids, in order."""
        return [entry[0] for entry in self.stored]


def new_run(
    raw_key: bytes, ids: list[str], sealed: list[str], plains: list[str | bytes]
) -> Run:
    """The run of turns ``ids`` whose sealed texts open to ``plains`` under ``raw_key``."""
    # C-level passes only: a run is made on every first whole read of a session.
    stored = list(zip(ids, sealed, repeat(_NO_LIST), repeat(_NO_LIST), repeat(_NO_MAP)))
    is_text = list(map(isinstance, plains, repeat(str)))
    is_json = list(map(not_, is_text))
    texts: list[str] = list(compress(plains, is_text))  # type: ignore[arg-type]
    bodies: list[bytes] = list(compress(plains, is_json))  # type: ignore[arg-type]
    array = b"[" + b",".join(bodies) + b"]" if bodies else b""
    size = sum(map(len, ids)) + sum(map(len, sealed)) + sum(map(len, texts)) + len(array)
    return Run(
        raw_key,
        stored,
        list(compress(range(len(plains)), is_text)),
        texts,
        list(compress(range(len(plains)), is_json)),
        array,
        size,
    )


def extended(run: Run, tail: Run) -> Run:
    """``run`` followed by ``tail`` (the turns appended after it), one run."""
    shift = len(run.stored)
    if not run.json_array:
        array = tail.json_array
    elif not tail.json_array:
        array = run.json_array
    else:
        array = run.json_array[:-1] + b"," + tail.json_array[1:]
    return Run(
        run.raw_key,
        run.stored + tail.stored,
        run.text_at + [i + shift for i in tail.text_at],
        run.texts + tail.texts,
        run.json_at + [i + shift for i in tail.json_at],
        array,
        run.size + tail.size,
    )


def matches(run: Run, raw_key: bytes, turns: list[SessionTurn]) -> bool:
    """Whether ``turns`` (still sealed) start with exactly the run's turns, under its key."""
    count = len(run.stored)
    return (
        0 < count <= len(turns)
        and raw_key == run.raw_key
        and list(map(_STORED, map(_fields, islice(turns, count)))) == run.stored
    )


def parsed_bodies(run: Run) -> list[Any] | None:
    """The run's JSON bodies parsed afresh (each read gets its own containers)."""
    if not run.json_at:
        return []
    try:
        parsed: list[Any] = orjson.loads(run.json_array)
    except orjson.JSONDecodeError:  # pragma: no cover - it parsed when the run was made
        return None
    return parsed


def install(run: Run, turns: list[SessionTurn], parsed: list[Any]) -> None:
    """Install the run's bodies (``parsed``: :func:`parsed_bodies`) into matching ``turns``."""
    if run.text_at:
        targets = map(_fields, map(turns.__getitem__, run.text_at))
        deque(map(setitem, targets, repeat("content"), run.texts), 0)
    if run.json_at:
        deque(map(_install_body, map(_fields, map(turns.__getitem__, run.json_at)), parsed), 0)


def _install_body(fields: dict[str, Any], body: list[Any]) -> None:
    fields["content"], fields["tool_calls"], fields["skill_results"], fields["metadata"] = body
