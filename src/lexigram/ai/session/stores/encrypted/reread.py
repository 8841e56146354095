"""Re-reading a session read whole before: one comparison instead of a lookup per turn.

A process that reads a long encrypted session again (each agent step reads its
history) finds it starting with the same turns as its last whole read. A
:class:`Run` is what that read opened: the turn ids and sealed texts in order, the
raw data key they opened under, and their plaintext bodies (text-only bodies as
``str``, the JSON ones joined into one array). When a new read starts with exactly
those turns (the same ids, the same sealed texts, the same key, compared as whole
lists), their bodies are installed in a few passes with no per-turn lookup, and only
the turns after them (appended since) are opened one by one. A sealed text opens to
a single plaintext under one key and turn id, so the exact match answers as the
decryption would. JSON bodies are parsed again on every read: each read gets its own
containers.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from itertools import repeat
from operator import attrgetter, getitem, itemgetter, setitem
from typing import Any

import orjson

__all__ = ["Run", "body_check", "extended", "install", "matches", "new_run", "turn_fields"]

#: A turn's field dict (the turns a store hands out are the caller's own objects).
turn_fields = attrgetter("__dict__")
_EXTRAS = (itemgetter("tool_calls"), itemgetter("skill_results"), itemgetter("metadata"))


@dataclass(frozen=True, slots=True, eq=False)
class Run:
    """The opened bodies of a session's last whole read, in turn order."""

    raw_key: bytes
    ids: list[str]
    sealed: list[str]
    text_at: list[int]
    texts: list[str]
    json_at: list[int]
    json_array: bytes

    @property
    def size(self) -> int:
        """Bytes it holds, roughly (what a cache budget counts)."""
        ids = sum(map(len, self.ids))
        return ids + sum(map(len, self.sealed)) + sum(map(len, self.texts)) + len(self.json_array)


def new_run(raw_key: bytes, fields: list[dict[str, Any]], plains: list[str | bytes]) -> Run:
    """The run of turns (``fields``, still sealed) whose plaintext bodies are ``plains``."""
    text_at = [i for i, plain in enumerate(plains) if type(plain) is str]
    json_at = [i for i, plain in enumerate(plains) if type(plain) is not str]
    return Run(
        raw_key,
        list(map(getitem, fields, repeat("turn_id"))),
        list(map(getitem, fields, repeat("content"))),
        text_at,
        [plains[i] for i in text_at],  # type: ignore[misc]
        json_at,
        b"[" + b",".join([plains[i] for i in json_at]) + b"]" if json_at else b"",  # type: ignore[misc]
    )


def extended(run: Run, tail: Run) -> Run:
    """``run`` followed by ``tail`` (the turns appended after it), one run."""
    shift = len(run.ids)
    if not run.json_array:
        array = tail.json_array
    elif not tail.json_array:
        array = run.json_array
    else:
        array = run.json_array[:-1] + b"," + tail.json_array[1:]
    return Run(
        run.raw_key,
        run.ids + tail.ids,
        run.sealed + tail.sealed,
        run.text_at + [i + shift for i in tail.text_at],
        run.texts + tail.texts,
        run.json_at + [i + shift for i in tail.json_at],
        array,
    )


def matches(run: Run, raw_key: bytes, fields: list[dict[str, Any]]) -> bool:
    """Whether these turns (``fields``, still sealed) are exactly the run's, under its key."""
    return (
        len(fields) == len(run.ids)
        and raw_key == run.raw_key
        and list(map(getitem, fields, repeat("turn_id"))) == run.ids
        and list(map(getitem, fields, repeat("content"))) == run.sealed
    )


def body_check(run: Run, fields: list[dict[str, Any]]) -> list[Any] | None:
    """The parsed JSON bodies to install in ``fields`` (matching turns), or None.

    None when a text-only turn holds a tool call, skill result or metadata in clear
    (stored empty when sealed): the caller then opens the turns one by one, which
    replaces such values. Nothing is changed here.
    """
    if run.text_at:
        texts = list(map(fields.__getitem__, run.text_at))
        if any(any(map(extra, texts)) for extra in _EXTRAS):
            return None
    if not run.json_at:
        return []
    try:
        parsed: list[Any] = orjson.loads(run.json_array)
    except orjson.JSONDecodeError:  # pragma: no cover - it parsed when the run was made
        return None
    return parsed


def install(run: Run, fields: list[dict[str, Any]], parsed: list[Any]) -> None:
    """Install the run's bodies (``parsed``: from :func:`body_check`) into ``fields``."""
    if run.text_at:
        texts = list(map(fields.__getitem__, run.text_at))
        deque(map(setitem, texts, repeat("content"), run.texts), 0)
    if run.json_at:
        # One pass over the turns (four passes, one per field, measured slower).
        deque(map(_install_body, map(fields.__getitem__, run.json_at), parsed), 0)


def _install_body(fields: dict[str, Any], body: list[Any]) -> None:
    fields["content"], fields["tool_calls"], fields["skill_results"], fields["metadata"] = body
