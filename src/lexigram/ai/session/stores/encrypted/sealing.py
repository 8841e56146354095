"""Sealing and opening the private fields of turns, headers, patches and checkpoints.

What is sealed (one AES-GCM value each, see :mod:`.cipher`): a turn's ``content``,
``tool_calls``, ``skill_results`` and ``metadata`` (one value, the turn's
``content``; the other three stored empty); the value's plaintext is the JSON array
of the four, or, for a turn with nothing but text (no tool calls, skill results or
metadata: most chat turns), a NUL byte followed by the UTF-8 text, which opens
without a JSON parse and with no container to build (the NUL is inside the
authenticated plaintext, so one form cannot be passed off as the other); a
header's ``metadata`` (stored as ``{"__lexigram_key__": <envelope>,
"__lexigram_sealed__": <value>}``), ``variables``
(``{"__lexigram_sealed__": <value>}``) and ``system_prompt``; a checkpoint's own
``metadata``. Ids, role, model, provider, status, times, counters, token counts,
costs and tool/skill names stay in clear: the stores' indexes and totals need them.

A header whose metadata has no ``__lexigram_key__`` is a plaintext session and is
returned as stored, so plaintext and encrypted sessions live side by side.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import replace
from operator import itemgetter
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from lexigram.contracts.ai.session import SessionCheckpoint, SessionState, SessionTurn

from lexigram.ai.session.encryption.cipher import (
    NONCE_BYTES,
    SEALED_PREFIX,
    DataKey,
    b64decode_strict,
    is_sealed,
    sealed_bytes,
)
from lexigram.ai.session.exceptions import CorruptRecordError
from lexigram.ai.session.stores.base import KEY_ENVELOPE_FIELD, SessionPatch, envelope_of
from lexigram.ai.session.stores.encrypted.opened import Entry
from lexigram.ai.session.stores.encrypted.reread import (
    Run,
    extended,
    install,
    matches,
    new_run,
    parsed_bodies,
)
from lexigram.ai.session.stores.gc_pause import paused_gc

__all__ = [
    "KEY_FIELD",
    "SEALED_FIELD",
    "envelope_of",
    "header_without_private",
    "open_checkpoint",
    "open_header",
    "open_turn",
    "open_turns",
    "seal_checkpoint_metadata",
    "seal_header",
    "seal_patch",
    "seal_turn",
    "seal_turn_opened",
]

#: Metadata key holding a session's key envelope (in clear).
KEY_FIELD = KEY_ENVELOPE_FIELD
#: Key holding a sealed JSON container.
SEALED_FIELD = "__lexigram_sealed__"
_OPTS = orjson.OPT_NON_STR_KEYS


def _seal_json(key: DataKey, value: Any, context: str) -> str:
    return key.seal(orjson.dumps(value, option=_OPTS), context)


def _open_json(key: DataKey, value: Any, context: str, record: str) -> Any:
    if not is_sealed(value):
        raise CorruptRecordError(record, f"field {context}: expected a sealed value")
    try:
        return orjson.loads(key.open(value, context, record=record))
    except orjson.JSONDecodeError as exc:
        raise CorruptRecordError(record, f"field {context}: invalid JSON inside: {exc}") from None


# ----------------------------------------------------------------------- turns
#: Whether a turn's fields can be read and rebuilt as a dict (``codec.build_turn``,
#: several times cheaper than ``dataclasses.replace``): a plain frozen dataclass.
_DICT_TURNS = not hasattr(SessionTurn, "__slots__") and not hasattr(SessionTurn, "__post_init__")
_DICT_STATES = not hasattr(SessionState, "__slots__") and not hasattr(SessionState, "__post_init__")
_new = object.__new__
_set_attr = object.__setattr__


def _copy_of_turn(data: dict[str, Any]) -> SessionTurn:
    """A turn whose ``__dict__`` is ``data``: a copy of an exact :class:`SessionTurn`'s own.

    Such a copy holds every field in order (only values were replaced), so it skips
    ``codec.build_turn``'s check of the keys, a third of the cost of a copy.
    """
    turn = _new(SessionTurn)
    _set_attr(turn, "__dict__", data)
    return turn


def _copy_of_state(data: dict[str, Any]) -> SessionState:
    """:func:`_copy_of_turn` for an exact :class:`SessionState`'s ``__dict__``."""
    state = _new(SessionState)
    _set_attr(state, "__dict__", data)
    return state


def _with_body(
    turn: SessionTurn, content: str, tool_calls: Any, skill_results: Any, metadata: Any
) -> SessionTurn:
    """A copy of ``turn`` with these four fields (the original is left as it is)."""
    if not _DICT_TURNS or type(turn) is not SessionTurn:
        return replace(
            turn,
            content=content,
            tool_calls=tool_calls,
            skill_results=skill_results,
            metadata=metadata,
        )
    # Item assignment: dict.update(**) would build a keyword dict first (twice the cost).
    data = turn.__dict__.copy()
    data["content"], data["tool_calls"] = content, tool_calls
    data["skill_results"], data["metadata"] = skill_results, metadata
    return _copy_of_turn(data)


#: First byte of a sealed text-only turn body (a JSON body never starts with it).
_TEXT_MARK = b"\x00"
#: Where the base64 of a value sealed now starts (what ``cipher.sealed_bytes`` decodes).
_PREFIX_LEN = len(SEALED_PREFIX)


def _text_body(turn: SessionTurn) -> bytes | None:
    """The text-only body of ``turn`` (NUL + UTF-8), or None when it has more than text."""
    content = turn.content
    if turn.tool_calls or turn.skill_results or turn.metadata or type(content) is not str:
        return None
    try:
        return _TEXT_MARK + content.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: the JSON body refuses it, naming it
        return None


def seal_turn(turn: SessionTurn, key: DataKey) -> SessionTurn:
    """``turn`` with its private fields sealed into ``content`` (bound to its turn id)."""
    return seal_turn_opened(turn, key)[0]


def seal_turn_opened(turn: SessionTurn, key: DataKey) -> tuple[SessionTurn, bytes | str]:
    """:func:`seal_turn`, with the body opening the sealed turn gives back.

    That body is what :mod:`.opened` keeps for a turn (its text, or the JSON sealed),
    so a store may remember a turn it wrote as if it had read it.
    """
    context = "turn:" + turn.turn_id
    text = _text_body(turn)
    opened: bytes | str
    if text is not None:
        sealed = key.seal(text, context)
        opened = turn.content
    else:
        opened = orjson.dumps(
            [turn.content, turn.tool_calls, turn.skill_results, turn.metadata], option=_OPTS
        )
        sealed = key.seal(opened, context)
    return _with_body(turn, sealed, [], [], {}), opened


def _text_or_json(plain: bytes) -> bytes | str:
    """A turn's decrypted body: the text of the text-only form, else its JSON bytes.

    ``UnicodeDecodeError`` (a ``ValueError``) when a text-only body is not UTF-8.
    """
    return plain[1:].decode("utf-8") if plain[:1] == _TEXT_MARK else plain


def _body_of(plain: bytes) -> Any:
    """The opened body of a turn: ``[text, [], [], {}]`` or the parsed JSON array."""
    body = _text_or_json(plain)
    return [body, [], [], {}] if isinstance(body, str) else orjson.loads(body)


def open_turn(turn: SessionTurn, key: DataKey, *, record: str) -> SessionTurn:
    """The plaintext turn of a stored one (a turn that is not sealed is returned as is)."""
    if not is_sealed(turn.content):
        return turn
    context = f"turn:{turn.turn_id}"
    plain = key.open(turn.content, context, record=record)
    try:
        body = _body_of(plain)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise CorruptRecordError(record, f"field {context}: invalid body inside: {exc}") from None
    if not (isinstance(body, list) and len(body) == 4 and isinstance(body[0], str)):
        raise CorruptRecordError(record, f"field {context}: unexpected sealed turn layout")
    return _with_body(turn, *body)


def open_turns(
    turns: list[SessionTurn],
    key: DataKey,
    *,
    record: str,
    cache: dict[str, Entry] | None = None,
    added: list[tuple[str, Entry]] | None = None,
    run: Run | None = None,
    keep_run: Callable[[Run], None] | None = None,
) -> list[SessionTurn]:
    """:func:`open_turn` of each turn, in bulk (turns opened in place).

    The turns a store hands out are the caller's own objects (never aliased with
    stored state), so the opened fields are installed into them directly. With
    ``cache`` (see :mod:`.opened`), a turn opened before under the same key, turn id
    and sealed text is not decrypted again; what this call decrypted is appended to
    ``added``. All plaintext bodies are parsed as one JSON array
    (:func:`_open_bulk`); when anything fails there, each turn is opened on its own
    and a turn that does not open goes through :func:`open_turn`, which names the
    problem. The garbage collector is paused while a long session is opened.

    With ``run`` (see :mod:`.reread`), turns that start exactly as that run are
    installed from it and only the rest opened; ``keep_run`` receives the run of
    what was opened (when every turn was sealed and opened in bulk).
    """
    if not _DICT_TURNS:
        return [open_turn(t, key, record=record) for t in turns]
    with paused_gc(len(turns)):
        if run is not None and _open_after_run(turns, key, run, cache, added, keep_run):
            return turns
        if _open_bulk(turns, key, cache, added, keep_run):
            return turns
        return _open_each(turns, key, record, cache, added)


def _open_after_run(
    turns: list[SessionTurn],
    key: DataKey,
    run: Run,
    cache: dict[str, Entry] | None,
    added: list[tuple[str, Entry]] | None,
    keep_run: Callable[[Run], None] | None,
) -> bool:
    """Turns starting exactly as ``run``: its bodies installed, the rest opened in bulk.

    False, with nothing changed, when they do not start so or anything fails.
    """
    if not matches(run, key.raw, turns):
        return False
    parsed = parsed_bodies(run)
    if parsed is None:
        return False
    tail = turns[len(run.stored) :]
    tail_runs: list[Run] = []
    if tail and not _open_bulk(tail, key, cache, added, tail_runs.append):
        return False
    install(run, turns, parsed)
    if keep_run is not None and tail_runs:  # no tail: the run is kept already
        keep_run(extended(run, tail_runs[0]))
    return True


_first = itemgetter(0)
_ONLY_LIST = {list}
_ONLY_FOUR = {4}
_ONLY_STR = {str}


def _install_body(fields: dict[str, Any], body: list[Any]) -> None:
    fields["content"], fields["tool_calls"], fields["skill_results"], fields["metadata"] = body


def _install_text(fields: dict[str, Any], text: str) -> None:
    """A text-only body: the text, and no tool call, skill result or metadata."""
    fields["content"] = text
    # The store stored these empty and decoded them into fresh containers; anything
    # else there was not sealed, so it is not the turn's.
    if fields["tool_calls"] or fields["skill_results"] or fields["metadata"]:
        fields["tool_calls"], fields["skill_results"], fields["metadata"] = [], [], {}


class _Opening:
    """What opening the turns of one read needs, looked up once per read."""

    __slots__ = ("aad", "decrypt", "get", "raw_key")

    def __init__(self, key: DataKey, cache: dict[str, Entry] | None) -> None:
        self.raw_key = key.raw
        self.decrypt, self.aad = key.decryptor("turn:")
        self.get = cache.get if cache is not None else None


def _plain_body(
    content: Any,
    turn_id: str,
    key: _Opening,
    fresh: list[tuple[str, Entry]] | None,
) -> bytes | str | None:
    """The authenticated plaintext body of one stored turn; None for a plaintext turn.

    A text-only body comes back as its text (``str``), any other as its JSON
    (``bytes``). From the cache when it holds exactly this sealed text under this key
    and turn id, else decrypted with its tag checked (raises ``ValueError`` /
    ``InvalidTag`` when it does not open), and then appended to ``fresh``.
    """
    hit = key.get(turn_id) if key.get is not None else None
    if hit is not None and hit[0] == content and hit[1] == key.raw_key:
        return hit[2]  # the same sealed text, so a sealed turn
    if not is_sealed(content):
        return None  # a plaintext turn (written before encryption was on)
    raw = sealed_bytes(content)
    plain: bytes = key.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], key.aad + turn_id.encode())
    body = _text_or_json(plain)
    if fresh is not None:
        fresh.append((turn_id, (content, key.raw_key, body)))
    return body


def _open_bulk(
    turns: list[SessionTurn],
    key: DataKey,
    cache: dict[str, Entry] | None,
    added: list[tuple[str, Entry]] | None,
    keep_run: Callable[[Run], None] | None = None,
) -> bool:
    """Open every turn with one JSON parse of all bodies; False (nothing changed) on any doubt.

    Each body is authenticated plaintext (its tag checked here, or the cache's copy
    of exactly this sealed text under this key and turn id) that :func:`seal_turn`
    wrote. A text-only body is installed as it is (no parse); the JSON ones, joined
    with commas, parse to exactly ``count`` elements, each a 4-element list with
    text first, or the caller opens the turns one by one. Nothing is installed or
    recorded in ``added`` unless all pass. ``keep_run`` receives the run of the turns
    (see :mod:`.reread`) when every one was sealed.
    """
    opening = _Opening(key, cache)
    targets: list[dict[str, Any]] = []
    bodies: list[bytes] = []
    text_targets: list[dict[str, Any]] = []
    texts: list[str] = []
    fresh: list[tuple[str, Entry]] = []
    # For the run (see .reread): ids, sealed texts (the cache's own string on a hit, so
    # the two share it) and plaintext bodies, in order.
    plains: list[bytes | str] | None = [] if keep_run is not None else None
    ids: list[str] = []
    sealed: list[str] = []
    get, raw_key = opening.get, opening.raw_key
    decrypt, aad, fresh_entry = opening.decrypt, opening.aad, fresh.append
    b64 = b64decode_strict
    try:
        for turn in turns:
            fields = turn.__dict__
            turn_id, content = fields["turn_id"], fields["content"]
            # The cache hit of _plain_body inlined: most turns of a re-read are one.
            hit = get(turn_id) if get is not None else None
            if hit is not None and hit[0] == content and hit[1] == raw_key:
                plain: bytes | str = hit[2]
                content = hit[0]
            elif type(content) is str and content.startswith(SEALED_PREFIX):
                # _plain_body inlined for values sealed now: every turn of a first read.
                # A value that does not decode or open raises here (ValueError,
                # InvalidTag): the turns are then opened one by one, naming it.
                raw = b64(content[_PREFIX_LEN:], None, True)
                body = decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad + turn_id.encode())
                plain = _text_or_json(body)
                fresh_entry((turn_id, (content, raw_key, plain)))
            else:
                opened = _plain_body(content, turn_id, opening, fresh)
                if opened is None:
                    plains = None  # a plaintext turn: no run
                    continue
                plain = opened
            if plains is not None:
                plains.append(plain)
                ids.append(turn_id)
                sealed.append(content)
            if isinstance(plain, str):
                text_targets.append(fields)
                texts.append(plain)
            else:
                targets.append(fields)
                bodies.append(plain)
        parsed = orjson.loads(b"[" + b",".join(bodies) + b"]") if bodies else []
    except (ValueError, InvalidTag, UnicodeEncodeError):  # JSONDecodeError is a ValueError
        return False
    if bodies and (
        type(parsed) is not list
        or len(parsed) != len(bodies)
        or set(map(type, parsed)) != _ONLY_LIST
        or set(map(len, parsed)) != _ONLY_FOUR
        or set(map(type, map(_first, parsed))) != _ONLY_STR
    ):
        return False
    run = None if plains is None else new_run(raw_key, ids, sealed, plains)
    deque(map(_install_body, targets, parsed), 0)
    deque(map(_install_text, text_targets, texts), 0)
    if added is not None:
        added.extend(fresh)
    if run is not None and keep_run is not None:
        keep_run(run)
    return True


def _open_each(
    turns: list[SessionTurn],
    key: DataKey,
    record: str,
    cache: dict[str, Entry] | None,
    added: list[tuple[str, Entry]] | None,
) -> list[SessionTurn]:
    """Open the turns one by one; the first that does not open raises, naming it."""
    opening = _Opening(key, cache)
    loads = orjson.loads
    broken: dict[int, SessionTurn] = {}
    for turn in turns:
        fields = turn.__dict__
        try:
            plain = _plain_body(fields["content"], fields["turn_id"], opening, added)
            if plain is None:
                continue
            if isinstance(plain, str):
                _install_text(fields, plain)
                continue
            body = loads(plain)
        except (ValueError, InvalidTag, UnicodeEncodeError):  # JSONDecodeError is a ValueError
            body = None
        if type(body) is list and len(body) == 4 and type(body[0]) is str:
            _install_body(fields, body)
        else:
            broken[id(turn)] = open_turn(turn, key, record=record)  # raises, naming it
    if broken:
        return [broken.get(id(t), t) for t in turns]
    return turns


# --------------------------------------------------------------------- headers
def _sealed_metadata(key: DataKey, metadata: dict[str, Any]) -> dict[str, Any]:
    return {KEY_FIELD: key.envelope, SEALED_FIELD: _seal_json(key, metadata, "metadata")}


def _sealed_variables(key: DataKey, variables: dict[str, Any]) -> dict[str, Any]:
    return {SEALED_FIELD: _seal_json(key, variables, "variables")}


def _sealed_prompt(key: DataKey, prompt: str | None) -> str | None:
    return None if prompt is None else _seal_json(key, prompt, "system_prompt")


def seal_header(state: SessionState, key: DataKey) -> SessionState:
    """``state`` (turns included) with its header fields and turns sealed under ``key``."""
    return replace(
        state,
        metadata=_sealed_metadata(key, state.metadata),
        variables=_sealed_variables(key, state.variables),
        system_prompt=_sealed_prompt(key, state.system_prompt),
        turns=[seal_turn(t, key) for t in state.turns],
    )


def _open_known(
    key: DataKey,
    value: Any,
    context: str,
    record: str,
    cache: dict[str, Entry] | None,
    added: list[tuple[str, Entry]] | None,
) -> Any:
    """:func:`_open_json`, answered from ``cache`` when this value was opened before.

    Header entries are kept under ``"\\0" + context`` (a turn id never holds a NUL),
    so a header value is never taken for a turn's.
    """
    if cache is None or type(value) is not str:
        return _open_json(key, value, context, record)
    place = "\0" + context
    hit = cache.get(place)
    if hit is not None and hit[0] == value and hit[1] == key.raw:
        try:
            return orjson.loads(hit[2])
        except orjson.JSONDecodeError:
            pass
    opened = _open_json(key, value, context, record)
    if added is not None:
        added.append((place, (value, key.raw, orjson.dumps(opened, option=_OPTS))))
    return opened


def _header_with(
    state: SessionState,
    metadata: dict[str, Any],
    variables: dict[str, Any],
    system_prompt: str | None,
    turns: list[SessionTurn],
) -> SessionState:
    """A copy of ``state`` with these fields (cheap: no ``__init__`` for a plain dataclass)."""
    if not _DICT_STATES or type(state) is not SessionState:
        return replace(
            state, metadata=metadata, variables=variables, system_prompt=system_prompt, turns=turns
        )
    data = state.__dict__.copy()
    data["metadata"], data["variables"] = metadata, variables
    data["system_prompt"], data["turns"] = system_prompt, turns
    return _copy_of_state(data)


def header_without_private(state: SessionState) -> SessionState:
    """``state`` with ``metadata`` and ``variables`` empty and no system prompt (nothing
    sealed in it, nothing opened: a write's reply read only for its counters)."""
    return _header_with(state, {}, {}, None, state.turns)


def open_header(
    state: SessionState,
    key: DataKey,
    *,
    record: str,
    cache: dict[str, Entry] | None = None,
    added: list[tuple[str, Entry]] | None = None,
    run: Run | None = None,
    keep_run: Callable[[Run], None] | None = None,
    turns_opened: bool = False,
) -> SessionState:
    """The plaintext of a sealed stored state (its turns opened too, see :func:`open_turns`,
    unless ``turns_opened``: they are already)."""
    meta = state.metadata
    variables = state.variables
    metadata = _open_known(key, meta.get(SEALED_FIELD), "metadata", record, cache, added)
    opened_vars = _open_known(key, variables.get(SEALED_FIELD), "variables", record, cache, added)
    prompt = state.system_prompt
    if prompt is not None:
        prompt = _open_known(key, prompt, "system_prompt", record, cache, added)
    if not (isinstance(metadata, dict) and isinstance(opened_vars, dict)):
        raise CorruptRecordError(record, "field metadata/variables: expected JSON objects")
    if prompt is not None and not isinstance(prompt, str):
        raise CorruptRecordError(record, "field system_prompt: expected text")
    turns = state.turns
    if turns and not turns_opened:
        turns = open_turns(
            list(turns), key, record=record, cache=cache, added=added, run=run, keep_run=keep_run
        )
    return _header_with(state, metadata, opened_vars, prompt, turns)


def seal_patch(patch: SessionPatch, key: DataKey) -> SessionPatch:
    """``patch`` with its metadata, variables and system prompt sealed under ``key``."""
    return replace(
        patch,
        metadata=None if patch.metadata is None else _sealed_metadata(key, patch.metadata),
        variables=None if patch.variables is None else _sealed_variables(key, patch.variables),
        system_prompt=_sealed_prompt(key, patch.system_prompt),
    )


# ----------------------------------------------------------------- checkpoints
def seal_checkpoint_metadata(
    metadata: dict[str, Any] | None, key: DataKey, checkpoint_id: str
) -> dict[str, Any] | None:
    """A checkpoint's own metadata sealed (None and ``{}`` stay as they are)."""
    if not metadata:
        return metadata
    return {SEALED_FIELD: _seal_json(key, metadata, f"checkpoint:{checkpoint_id}")}


def open_checkpoint(checkpoint: SessionCheckpoint, key: DataKey) -> SessionCheckpoint:
    """The plaintext of a stored checkpoint of an encrypted session."""
    record = f"checkpoint {checkpoint.checkpoint_id!r}"
    state = open_header(checkpoint.state, key, record=record)
    metadata = checkpoint.metadata
    if isinstance(metadata, dict) and SEALED_FIELD in metadata:
        metadata = _open_json(
            key, metadata[SEALED_FIELD], f"checkpoint:{checkpoint.checkpoint_id}", record
        )
    return replace(checkpoint, state=state, metadata=metadata)
