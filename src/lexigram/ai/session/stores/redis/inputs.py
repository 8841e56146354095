"""Encodings of what callers hand the Redis store, as script arguments, before any I/O."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from lexigram.contracts.ai.session import SessionState, SessionTurn

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.stores import codec
from lexigram.ai.session.stores.base import SessionPatch
from lexigram.ai.session.stores.redis.wire import encode_header, encode_turn
from lexigram.ai.session.validation import MAX_SAFE_INT, check_cost, check_tokens, check_totals

__all__ = ["header_json", "patch_json", "turn_args"]


def turn_args(turns: Sequence[SessionTurn]) -> tuple[list[Any], int, str]:
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


def patch_json(
    patch: SessionPatch | None, key_guard: str | None = None, owner: str | None = None
) -> str:
    """A header patch as the JSON the scripts apply ("" when there is nothing to change).

    ``key_guard`` travels as ``"kg"``: the script refuses the write (``KEY``) unless
    the stored metadata holds it as a JSON string (``key_guard`` of the store contract).
    ``owner`` travels as ``"ow"``: refused as missing (``NF``) unless the stored user
    is that one (``owner`` of the store contract).
    """
    fields: dict[str, Any] = {} if key_guard is None else {"kg": key_guard}
    if owner is not None:
        fields["ow"] = owner
    if patch is None or patch.is_empty():
        return orjson.dumps(fields).decode() if fields else ""
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


def header_json(
    state: SessionState,
    *,
    expires_at: datetime | None,
    last_seq: int,
    fork_seq: int | None = None,
    ordinal: int | None = None,
) -> bytes:
    """A whole header as the JSON the create/save scripts store (totals checked)."""
    fields = encode_header(
        state, expires_at=expires_at, last_seq=last_seq, fork_seq=fork_seq, ordinal=ordinal
    )
    check_totals(state.total_tokens, float(state.total_cost))
    return orjson.dumps({k: v.decode() if isinstance(v, bytes) else v for k, v in fields.items()})
