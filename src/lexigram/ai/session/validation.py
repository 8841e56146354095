"""The input rules every backend enforces, checked at the API edge before any write.

One rule set, the same on every store (in-memory, SQLite, PostgreSQL, Redis), so a
value refused by one is refused by all, with the same :class:`SessionValidationError`
naming the exact field (``user_id``, ``turns[2].tokens_used``, ``metadata.foo[0]``):

* **Ids** (``session_id``, ``user_id``, ``turn_id``, ``checkpoint_id``, branch and
  agent names): a non-blank ``str`` of at most :data:`MAX_ID_LENGTH` characters,
  without control characters (U+0000-U+001F, U+007F-U+009F) or lone surrogates.
* **Text** (``content``, ``role``, ``model``, ``provider``, ``system_prompt``, tool
  and skill names): a ``str`` without lone surrogates (U+D800-U+DFFF, what a JSON
  ``"\\ud800"`` escape decodes to), which no backend can encode.
* **JSON values** (``metadata``, ``variables``, ``tool_calls``, ``skill_results``):
  ``None``, ``bool``, ``str`` (no lone surrogate), ``int`` within
  +/-:data:`MAX_JSON_INT` (signed 64 bits), finite ``float``, ``list``/``tuple`` and
  ``dict`` with ``str`` keys, nested at most :data:`MAX_JSON_DEPTH` levels. Every
  backend reads such a value back equal to what was written (a tuple as a list).
* **Token counts** (``tokens_used``, ``total_tokens``): an ``int`` (not ``bool``) in
  ``0..MAX_SAFE_INT`` (2**53 - 1, exact in every backend's arithmetic, doubles
  included). A write that would take a session's ``total_tokens`` past it is
  refused naming ``total_tokens``.
* **Costs** (``cost``, ``total_cost``): an ``int`` or ``float`` (not ``bool``),
  finite and ``>= 0``. A write whose ``total_cost`` would not be finite is refused
  naming ``total_cost``.

The checks are cheap on the hot path: ASCII text is accepted in constant time, and
empty containers are not walked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from lexigram.contracts.ai.session import (
    SessionCheckpoint,
    SessionState,
    SessionStatus,
    SessionTurn,
)

from lexigram.ai.session.exceptions import DuplicateTurnError, SessionValidationError

__all__ = [
    "MAX_DURATION_S",
    "TABLE_PREFIX_RULE",
    "CheckedTurns",
    "MAX_ID_LENGTH",
    "MAX_JSON_DEPTH",
    "MAX_JSON_INT",
    "MAX_SAFE_INT",
    "table_prefix_ok",
    "utc_instant",
    "escape_surrogates",
    "check_batch_ids",
    "check_checkpoint",
    "check_caps",
    "check_cost",
    "check_count",
    "check_id",
    "is_valid_id",
    "check_json",
    "check_mapping",
    "check_names",
    "check_instant",
    "check_optional_count",
    "check_optional_guard",
    "check_optional_id",
    "check_optional_text",
    "check_patch",
    "check_patch_type",
    "check_state",
    "check_status",
    "check_status_filter",
    "check_statuses",
    "check_text",
    "check_tokens",
    "check_totals",
    "check_turn",
    "check_turn_range",
    "check_turns",
    "checked_batch",
    "new_totals",
]

#: The longest duration a setting may hold (a TTL, a purge retention, an interval): a
#: thousand years. Past it a deadline or a purge cutoff leaves the dates a store holds.
MAX_DURATION_S = 1_000 * 365 * 86_400

#: Largest token count (per turn and per session): 2**53 - 1, exact as a double.
MAX_SAFE_INT = 2**53 - 1

#: Longest id, in characters (at most 1,020 UTF-8 bytes: fits every backend's index).
MAX_ID_LENGTH = 255

#: Largest magnitude of an integer inside a JSON value (signed 64 bits).
MAX_JSON_INT = 2**63 - 1
#: A SQL table prefix: what it may hold (the tables' names stay within every dialect's).
TABLE_PREFIX_RULE = "must start with a letter or '_' and hold at most 31 letters, digits and '_'"
_TABLE_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,30}")


def table_prefix_ok(value: object) -> bool:
    """Whether ``value`` is a valid SQL table prefix (see :data:`TABLE_PREFIX_RULE`)."""
    return isinstance(value, str) and _TABLE_PREFIX.fullmatch(value) is not None

#: Deepest nesting of a JSON value (containers within containers).
MAX_JSON_DEPTH = 64

_SURROGATE = re.compile("[\ud800-\udfff]")
_ID_BAD = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SHOWN = 40


def _shown(value: Any) -> str:
    """A short, printable rendering of ``value`` for an error message."""
    text = repr(value)
    if len(text) > _SHOWN:
        text = text[:_SHOWN] + "..."
    return text.encode("ascii", "backslashreplace").decode("ascii")


def escape_surrogates(text: str) -> str:
    """``text`` with each lone surrogate written as ``\\udXXX`` (storable on every backend)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _fail(field: str, problem: str) -> SessionValidationError:
    return SessionValidationError(field, problem)


# ---------------------------------------------------------------------- text
def check_text(value: Any, field: str) -> str:
    """``value`` when it is a ``str`` without lone surrogates; else refuse naming ``field``."""
    if type(value) is not str and not isinstance(value, str):
        raise _fail(field, f"expected a string, got {type(value).__name__}")
    if not value.isascii() and _SURROGATE.search(value) is not None:
        raise _fail(field, "contains a lone surrogate (U+D800-U+DFFF), which cannot be stored")
    return value


def check_optional_text(value: Any, field: str) -> str | None:
    """None, or text as :func:`check_text` accepts it."""
    return None if value is None else check_text(value, field)


def check_id(value: Any, field: str) -> str:
    """``value`` when it is a valid id (see the module docstring); else refuse naming ``field``."""
    if (
        type(value) is str
        and 0 < len(value) <= MAX_ID_LENGTH
        and value.isascii()
        and value.isprintable()  # ASCII and printable: no control character
        and not value.isspace()
    ):
        return value
    if not isinstance(value, str):
        raise _fail(field, f"expected a non-empty string, got {type(value).__name__}")
    if len(value) > MAX_ID_LENGTH:
        raise _fail(field, f"is {len(value)} characters long; the limit is {MAX_ID_LENGTH}")
    if not value or value.isspace():
        raise _fail(field, f"must be a non-empty string, got {_shown(value)}")
    if _ID_BAD.search(value) is not None:
        raise _fail(
            field,
            f"contains a control character or a lone surrogate: {_shown(value)}",
        )
    # A str subclass (a str Enum) as its plain value: keys are built from it (Redis), and
    # every backend stores and hands back the plain text.
    return value if type(value) is str else str.__str__(value)


def is_valid_id(value: object) -> bool:
    """Whether :func:`check_id` accepts ``value`` (without raising)."""
    return (
        type(value) is str
        and 0 < len(value) <= MAX_ID_LENGTH
        and not value.isspace()
        and ((value.isascii() and value.isprintable()) or _ID_BAD.search(value) is None)
    )


def check_optional_id(value: Any, field: str) -> str | None:
    """None, or an id as :func:`check_id` accepts it."""
    return None if value is None else check_id(value, field)


# ------------------------------------------------------------------- numbers
def check_tokens(value: Any, field: str) -> int:
    """``value`` when it is an ``int`` (not ``bool``) in ``0..MAX_SAFE_INT``."""
    if type(value) is not int and (not isinstance(value, int) or isinstance(value, bool)):
        raise _fail(field, f"expected an integer, got {type(value).__name__}")
    if not 0 <= value <= MAX_SAFE_INT:
        raise _fail(field, f"must be in 0..{MAX_SAFE_INT} (2**53 - 1), got {_shown(value)}")
    return int(value)


def check_count(value: Any, field: str, *, minimum: int = 0) -> int:
    """A count argument (``last``, ``limit``, a cap) as an ``int`` in ``minimum..MAX_SAFE_INT``."""
    if type(value) is int and minimum <= value <= MAX_SAFE_INT:
        return value
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(field, f"expected an integer, got {type(value).__name__}")
    if not minimum <= value <= MAX_SAFE_INT:
        raise _fail(field, f"must be in {minimum}..{MAX_SAFE_INT}, got {_shown(value)}")
    return int(value)


def check_optional_count(value: Any, field: str, *, minimum: int = 0) -> int | None:
    """None, or a count as :func:`check_count` accepts it."""
    return None if value is None else check_count(value, field, minimum=minimum)


def check_caps(*, max_branches: Any = None, max_live_per_user: Any = None) -> None:
    """The caps of a create or a fork: each None or a count (branches >= 0, sessions >= 1)."""
    check_optional_count(max_branches, "max_branches")
    check_optional_count(max_live_per_user, "max_live_per_user", minimum=1)


def check_status(value: Any, field: str) -> SessionStatus:
    """A :class:`SessionStatus` (or its value, ``"closed"``); else refused naming ``field``."""
    if type(value) is SessionStatus:
        return value
    status = check_status_filter(value, field)
    if status is None:
        raise _fail(field, "expected a SessionStatus, got NoneType")
    return status


def check_statuses(value: Any, field: str) -> frozenset[SessionStatus]:
    """A set of statuses (any iterable of them, not a string); else refused naming ``field``."""
    if type(value) is frozenset and all(type(s) is SessionStatus for s in value):
        return value
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise _fail(field, f"expected a set of SessionStatus, got {type(value).__name__}")
    return frozenset(check_status(s, field) for s in value)


def check_instant(value: Any, field: str) -> datetime:
    """A ``datetime``, in UTC (a naive one is taken as UTC, as turn timestamps are)."""
    if not isinstance(value, datetime):
        raise _fail(field, f"expected a datetime, got {type(value).__name__}")
    return utc_instant(value)


def check_batch_ids(
    session_id: str, turns: Sequence[SessionTurn], field: str | None = None
) -> None:
    """Refuse turns that repeat a turn id among themselves (``DuplicateTurnError``).

    With ``field`` (``"turns"``) the error names the repeat's place
    (``turns[i].turn_id``, "given twice in the batch"), as the manager's callers see it.
    """
    first: dict[str, int] = {}
    for index, turn in enumerate(turns):
        earlier = first.setdefault(turn.turn_id, index)
        if earlier == index:
            continue
        if field is None:
            raise DuplicateTurnError(session_id, turn.turn_id)
        raise DuplicateTurnError(
            session_id,
            turn.turn_id,
            field=f"{field}[{index}].turn_id",
            problem=f"turn {turn.turn_id!r} is given twice in the batch "
            f"({field}[{earlier}] and {field}[{index}])",
        )


def check_turn_range(last: Any, after_seq: Any, limit: Any) -> None:
    """The range arguments of ``get_turns``/``get_turn_seqs``: each None or a count >= 0."""
    check_optional_count(last, "last")
    check_optional_count(after_seq, "after_seq")
    check_optional_count(limit, "limit")


def check_optional_guard(value: Any) -> str | None:
    """None, or a key envelope (text) for ``key_guard``; else refused naming it."""
    if value is None or type(value) is str:
        return value
    raise _fail("key_guard", f"expected a string, got {type(value).__name__}")


def check_status_filter(value: Any, field: str = "status") -> SessionStatus | None:
    """None, or a :class:`SessionStatus` (or its value, ``"active"``); else refused."""
    if value is None or type(value) is SessionStatus:
        return value
    try:
        return SessionStatus(value)
    except (ValueError, TypeError):
        choices = ", ".join(s.value for s in SessionStatus)
        raise _fail(field, f"must be one of {choices}, got {_shown(value)}") from None


def check_cost(value: Any, field: str) -> float:
    """``value`` when it is a finite, non-negative ``int``/``float`` (not ``bool``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(field, f"expected a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        raise _fail(field, f"is too large to store as a float: {_shown(value)}") from None
    if not math.isfinite(number) or number < 0:
        raise _fail(field, f"must be a finite number >= 0, got {_shown(value)}")
    return number


def check_totals(total_tokens: int, total_cost: float, *, prefix: str = "") -> None:
    """Refuse session totals that cannot be stored (fields ``total_tokens``/``total_cost``)."""
    if not 0 <= total_tokens <= MAX_SAFE_INT:
        raise _fail(
            f"{prefix}total_tokens",
            f"would be {total_tokens}, past the limit of {MAX_SAFE_INT} (2**53 - 1)",
        )
    if not math.isfinite(total_cost) or total_cost < 0:
        raise _fail(f"{prefix}total_cost", f"would be {total_cost!r}, not a finite number >= 0")


def new_totals(
    total_tokens: int, total_cost: float, turns: Sequence[SessionTurn]
) -> tuple[int, float]:
    """The totals after appending ``turns``, refused (:func:`check_totals`) past the limits.

    Costs are added one turn at a time, in order, so the total equals a sum over the
    live turns taken oldest first.
    """
    tokens = total_tokens
    cost = total_cost
    for turn in turns:
        tokens += turn.tokens_used
        cost += turn.cost
    if not (0 <= tokens <= MAX_SAFE_INT and 0.0 <= cost < math.inf):  # NaN fails too
        check_totals(tokens, cost)
    return tokens, cost


# ---------------------------------------------------------------------- JSON
def _key_path(field: str, key: str) -> str:
    return f"{field}.{key}" if key.isidentifier() else f"{field}[{_shown(key)}]"


def _check_json(value: Any, field: str, depth: int) -> None:
    kind = type(value)
    if kind is str:
        if not value.isascii() and _SURROGATE.search(value) is not None:
            raise _fail(field, "contains a lone surrogate (U+D800-U+DFFF), which cannot be stored")
        return
    if value is None or kind is bool:
        return
    if kind is int or (isinstance(value, int) and not isinstance(value, bool)):
        if not -MAX_JSON_INT <= value <= MAX_JSON_INT:
            raise _fail(
                field, f"integer {_shown(value)} is outside +/-(2**63 - 1), which cannot be stored"
            )
        return
    if kind is float:
        if not math.isfinite(value):
            raise _fail(field, f"{value!r} cannot be stored as JSON (numbers must be finite)")
        return
    if isinstance(value, float):  # numpy.float64 and the like: not every encoder takes them
        raise _fail(
            field, f"{type(value).__name__} is not a plain float; pass float(value) to store it"
        )
    if isinstance(value, str):
        check_text(value, field)
        return
    if depth >= MAX_JSON_DEPTH:
        raise _fail(field, f"nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str:
                raise _fail(field, f"keys must be strings, got {_shown(key)}")
            if not key.isascii() and _SURROGATE.search(key) is not None:
                raise _fail(field, f"key {_shown(key)} contains a lone surrogate")
            _check_json(item, _key_path(field, key), depth + 1)
        return
    if kind is list or kind is tuple:
        for index, item in enumerate(value):
            _check_json(item, f"{field}[{index}]", depth + 1)
        return
    raise _fail(field, f"{type(value).__name__} cannot be stored as JSON")


def _text_ok(value: str) -> bool:
    return value.isascii() or _SURROGATE.search(value) is None


def _json_ok(value: Any, depth: int) -> bool:
    """Whether ``value`` certainly passes :func:`_check_json`, without building field names.

    Exact built-in types only; anything else (and any refusal) is left to
    :func:`_check_json`, which names the offending field.
    """
    kind = type(value)
    if kind is str:
        return _text_ok(value)
    if kind is int:
        return bool(-MAX_JSON_INT <= value <= MAX_JSON_INT)
    if kind is float:
        return bool(-math.inf < value < math.inf)  # NaN fails too
    if value is None or kind is bool:
        return True
    if depth >= MAX_JSON_DEPTH:
        return False
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not _text_ok(key) or not _json_ok(item, depth + 1):
                return False
        return True
    if kind is list or kind is tuple:
        for item in value:  # noqa: SIM110 - a loop, not a generator, on the hot path
            if not _json_ok(item, depth + 1):
                return False
        return True
    return False


def _dict_list_ok(value: Any) -> bool:
    """Whether ``value`` is a list of JSON objects the rules accept (no names built)."""
    if type(value) is not list:
        return False
    for item in value:
        if type(item) is not dict:
            return False
    return _json_ok(value, 0)


def check_json(value: Any, field: str) -> Any:
    """``value`` when it is JSON-storable on every backend (see the module docstring)."""
    if (value or type(value) not in (dict, list)) and not _json_ok(value, 0):
        _check_json(value, field, 0)
    return value


def check_mapping(value: Any, field: str) -> dict[str, Any]:
    """A copy of ``value`` when it is a ``dict``-like JSON object with ``str`` keys."""
    if not isinstance(value, Mapping):
        raise _fail(field, f"expected a dict, got {type(value).__name__}")
    data = dict(value)
    check_json(data, field)
    return data


def check_names(value: Any, field: str) -> list[str]:
    """A list copy of ``value`` when it is a sequence of text (tool or skill names)."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise _fail(field, f"expected a list of strings, got {type(value).__name__}")
    names = list(value)
    for index, item in enumerate(names):
        check_text(item, f"{field}[{index}]")
        if type(item) is not str:  # a str subclass (a str Enum): stored as its value
            names[index] = str.__str__(item)
    return names


def _check_dict_list(value: Any, field: str) -> None:
    if _dict_list_ok(value):
        return
    if type(value) is not list:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise _fail(field, f"expected a list of dicts, got {type(value).__name__}")
        value = list(value)
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise _fail(f"{field}[{index}]", f"expected a dict, got {type(item).__name__}")
    if value:
        _check_json(value, field, 0)


# --------------------------------------------------------------------- turns
def _plain_turn(turn: Any) -> bool:
    """Whether ``turn`` certainly passes :func:`check_turn` (the common case, no names built)."""
    if type(turn) is not SessionTurn:
        return False
    turn_id, role, content, tokens, cost = (
        turn.turn_id,
        turn.role,
        turn.content,
        turn.tokens_used,
        turn.cost,
    )
    model, provider, metadata, stamp = turn.model, turn.provider, turn.metadata, turn.timestamp
    tool_calls, skill_results = turn.tool_calls, turn.skill_results
    return (
        type(turn_id) is str
        and 0 < len(turn_id) <= MAX_ID_LENGTH
        and turn_id.isascii()
        and turn_id.isprintable()
        and not turn_id.isspace()
        and type(role) is str
        and role.isascii()
        and role.isprintable()
        and role != ""
        and not role.isspace()
        and type(content) is str
        and (content.isascii() or _SURROGATE.search(content) is None)
        and type(tokens) is int
        and 0 <= tokens <= MAX_SAFE_INT
        and type(cost) is float
        and 0.0 <= cost < math.inf
        and (model is None or (type(model) is str and _text_ok(model)))
        and (provider is None or (type(provider) is str and _text_ok(provider)))
        and ((type(tool_calls) is list and not tool_calls) or _dict_list_ok(tool_calls))
        and ((type(skill_results) is list and not skill_results) or _dict_list_ok(skill_results))
        and type(metadata) is dict
        and (not metadata or _json_ok(metadata, 0))
        and type(stamp) is datetime
        and (stamp.tzinfo is UTC or (type(stamp.tzinfo) is timezone and _minute_offset(stamp)))
        and not stamp.fold
    )


def _minute_offset(stamp: datetime) -> bool:
    """Whether ``stamp`` is aware with a whole-minute UTC offset (what every backend keeps)."""
    offset = stamp.utcoffset()
    return offset is not None and offset.seconds % 60 == 0 and not offset.microseconds


def utc_instant(stamp: datetime) -> datetime:
    """``stamp`` in UTC (a naive one taken as UTC): how the stores keep their times."""
    if stamp.tzinfo is None:
        return stamp.replace(tzinfo=UTC)
    return stamp if stamp.tzinfo is UTC else stamp.astimezone(UTC)


#: The earliest header time every backend stores (Redis keeps microseconds since 1970).
EARLIEST_HEADER_TIME = datetime(1970, 1, 1, tzinfo=UTC)


def _header_time(stamp: datetime, field: str) -> datetime:
    """A session header's time in UTC, within what every backend stores.

    Redis accepted a ``save`` of a header stamped 1969 and then could not read it back
    (a negative count of microseconds); a time past year 9999 in UTC raised a bare
    ``OverflowError`` (both found by an outside audit).
    """
    try:
        instant = utc_instant(stamp)
    except OverflowError:
        end = "past year 9999" if stamp.year > 1970 else "before year 1"
        raise _fail(field, f"{stamp.isoformat()} is {end} in UTC") from None
    if instant < EARLIEST_HEADER_TIME:
        raise _fail(
            field, f"{stamp.isoformat()} is before 1970-01-01T00:00:00Z, which not every "
            "backend stores"
        )
    return instant


def check_turn(turn: Any, field: str = "turn") -> SessionTurn:
    """``turn`` when every field can be stored; a naive timestamp is taken as UTC.

    Checks ``turn_id`` (an id), ``role`` (non-blank text), ``content``, ``model`` and
    ``provider`` (text), ``timestamp`` (a datetime), ``tool_calls`` and
    ``skill_results`` (lists of JSON objects), ``metadata`` (a JSON object),
    ``tokens_used`` and ``cost``. Errors name ``<field>.<attribute>`` (only
    ``<attribute>`` when ``field`` is empty).
    """
    if _plain_turn(turn):
        return turn  # type: ignore[no-any-return]
    if not isinstance(turn, SessionTurn):
        raise _fail(field or "turn", f"expected a SessionTurn, got {type(turn).__name__}")
    p = f"{field}." if field else ""
    check_id(turn.turn_id, f"{p}turn_id")
    role = turn.role
    if not isinstance(role, str) or not role or role.isspace():
        raise _fail(f"{p}role", f"must be a non-empty string, got {_shown(role)}")
    check_text(role, f"{p}role")
    content = turn.content
    if type(content) is not str or not content.isascii():
        check_text(content, f"{p}content")
    if turn.model is not None:
        check_text(turn.model, f"{p}model")
    if turn.provider is not None:
        check_text(turn.provider, f"{p}provider")
    check_tokens(turn.tokens_used, f"{p}tokens_used")
    cost = turn.cost
    if type(cost) is not float or not (0.0 <= cost < math.inf):
        cost = check_cost(cost, f"{p}cost")  # an int (or a float subclass) becomes a float
    if turn.tool_calls or type(turn.tool_calls) is not list:
        _check_dict_list(turn.tool_calls, f"{p}tool_calls")
    if turn.skill_results or type(turn.skill_results) is not list:
        _check_dict_list(turn.skill_results, f"{p}skill_results")
    metadata = turn.metadata
    if metadata or type(metadata) is not dict:
        if not isinstance(metadata, dict):
            raise _fail(f"{p}metadata", f"expected a dict, got {type(metadata).__name__}")
        if not _json_ok(metadata, 0):
            _check_json(metadata, f"{p}metadata", 0)
    stamp = turn.timestamp
    if type(stamp) is not datetime and not isinstance(stamp, datetime):
        raise _fail(f"{p}timestamp", f"expected a datetime, got {type(stamp).__name__}")
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    elif not _minute_offset(stamp):  # an offset in seconds: not every backend keeps it
        stamp = stamp.astimezone(UTC)
    elif type(stamp.tzinfo) is not timezone:
        # A zone (ZoneInfo, pytz) becomes its offset at that instant, which is what the
        # durable backends store and hand back: the in-memory store hands back the same.
        stamp = stamp.replace(tzinfo=timezone(stamp.utcoffset() or _ZERO), fold=0)
    if stamp.fold:  # meaningless under a fixed offset, and no backend keeps it
        stamp = stamp.replace(fold=0)
    if type(stamp) is not datetime:  # a datetime subclass: its plain value, as stored
        stamp = datetime(
            stamp.year, stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second,
            stamp.microsecond, stamp.tzinfo,
        )
    # A str or int subclass (a str Enum role, an IntEnum count) is stored as its plain
    # value by every durable backend: the in-memory store keeps the same.
    plain = {
        name: _plain_value(value)
        for name, value in (
            ("turn_id", turn.turn_id),
            ("role", role),
            ("content", content),
            ("model", turn.model),
            ("provider", turn.provider),
            ("tokens_used", turn.tokens_used),
        )
        if value is not None and type(value) not in (str, int)
    }
    if stamp is not turn.timestamp or cost is not turn.cost or plain:
        return replace(turn, timestamp=stamp, cost=cost, **plain)
    return turn


_ZERO = timedelta(0)


def _plain_value(value: Any) -> Any:
    """A ``str`` or ``int`` subclass instance as its plain ``str`` / ``int`` value."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__index__(value)
    return value


class CheckedTurns(list[SessionTurn]):
    """A batch :func:`check_turns` accepted; checking it again returns it as it is.

    The manager checks a batch once at the API edge and hands this list to the
    store, whose own ``check_turns`` then costs one type test instead of a second
    walk over every field. Only :func:`check_turns` builds one from caller input; the
    encrypting store also wraps the sealed copies of a batch it was given checked (the
    same turns with their private fields replaced by sealed strings). Nothing appends
    to one afterwards.
    """

    __slots__ = ()


def check_turns(turns: Any, field: str = "turns") -> list[SessionTurn]:
    """Each of ``turns`` checked by :func:`check_turn`, naming ``<field>[i]``.

    Returns a :class:`CheckedTurns`, which this function hands back as it is.
    """
    kind = type(turns)
    if kind is CheckedTurns:
        return turns  # type: ignore[no-any-return]
    if kind is not list and (
        isinstance(turns, SessionTurn | str) or not isinstance(turns, Sequence)
    ):
        raise _fail(field, "expected a sequence of SessionTurn")
    checked = CheckedTurns(turns)
    for index, turn in enumerate(checked):
        if not _plain_turn(turn):  # the field name is only built off the fast path
            checked[index] = check_turn(turn, f"{field}[{index}]")
    return checked


def checked_batch(turn: Any, field: str) -> CheckedTurns:
    """A one-turn batch of ``turn`` checked by :func:`check_turn` (errors name ``field``)."""
    checked = CheckedTurns()
    checked.append(check_turn(turn, field))
    return checked


# --------------------------------------------------------------------- state
def check_state(state: Any, field: str = "state") -> SessionState:
    """Check a whole session handed to a store (``save``, ``create_session``, a fork).

    Ids, text, JSON containers, every turn (``<field>.turns[i]``) and the totals
    (``<field>.total_tokens``, ``<field>.total_cost``, ``<field>.turn_count``).
    Returns ``state`` (with turns whose naive timestamps became UTC, if any).
    """
    if not isinstance(state, SessionState):
        raise _fail(field, f"expected a SessionState, got {type(state).__name__}")
    p = f"{field}."
    check_id(state.session_id, f"{p}session_id")
    check_id(state.user_id, f"{p}user_id")
    status = check_status(state.status, f"{p}status")
    check_optional_id(state.checkpoint_id, f"{p}checkpoint_id")
    check_optional_id(state.parent_session_id, f"{p}parent_session_id")
    check_optional_id(state.branch_name, f"{p}branch_name")
    check_optional_text(state.system_prompt, f"{p}system_prompt")
    if not isinstance(state.metadata, dict):
        raise _fail(f"{p}metadata", f"expected a dict, got {type(state.metadata).__name__}")
    check_json(state.metadata, f"{p}metadata")
    if not isinstance(state.variables, dict):
        raise _fail(f"{p}variables", f"expected a dict, got {type(state.variables).__name__}")
    check_json(state.variables, f"{p}variables")
    check_names(state.active_tools, f"{p}active_tools")
    check_names(state.active_skills, f"{p}active_skills")
    for name in ("created_at", "updated_at"):
        if not isinstance(getattr(state, name), datetime):
            raise _fail(f"{p}{name}", "expected a datetime")
    created = _header_time(state.created_at, f"{p}created_at")
    updated = _header_time(state.updated_at, f"{p}updated_at")
    check_tokens(state.total_tokens, f"{p}total_tokens")
    check_cost(state.total_cost, f"{p}total_cost")
    count = state.turn_count
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise _fail(f"{p}turn_count", f"expected an integer >= 0, got {_shown(count)}")
    turns = check_turns(state.turns, f"{p}turns")
    changed: dict[str, Any] = {}
    if any(a is not b for a, b in zip(turns, state.turns, strict=True)):
        changed["turns"] = list(turns)
    if status is not state.status:
        changed["status"] = status
    if created is not state.created_at:
        changed["created_at"] = created
    if updated is not state.updated_at:
        changed["updated_at"] = updated
    return replace(state, **changed) if changed else state


_PATCH_FIELDS = (
    "variables", "metadata", "active_tools", "active_skills", "system_prompt",
    "clear_system_prompt",
)


def check_patch_type(patch: Any) -> None:
    """Refuse (field ``patch``) anything that is not a ``SessionPatch`` (read by its fields)."""
    if not all(hasattr(patch, name) for name in _PATCH_FIELDS):
        raise _fail("patch", f"expected a SessionPatch, got {type(patch).__name__}")


def check_patch(patch: Any) -> None:
    """Check the replacement values of a header patch (a ``SessionPatch``), naming each field.

    ``variables``/``metadata`` must be JSON objects, ``active_tools``/``active_skills``
    lists of text, ``system_prompt`` text; None means "unchanged" and is not checked.
    """
    check_patch_type(patch)
    for name in ("variables", "metadata"):
        value = getattr(patch, name, None)
        if value is not None:
            if not isinstance(value, dict):
                raise _fail(name, f"expected a dict, got {type(value).__name__}")
            check_json(value, name)
    for name in ("active_tools", "active_skills"):
        value = getattr(patch, name, None)
        if value is not None:
            check_names(value, name)
    check_optional_text(getattr(patch, "system_prompt", None), "system_prompt")


def check_checkpoint(checkpoint: Any, field: str = "checkpoint") -> SessionCheckpoint:
    """Check a whole checkpoint handed to a store (``save_checkpoint``), naming each field."""
    if not isinstance(checkpoint, SessionCheckpoint):
        raise _fail(field, f"expected a SessionCheckpoint, got {type(checkpoint).__name__}")
    check_id(checkpoint.checkpoint_id, f"{field}.checkpoint_id")
    check_id(checkpoint.session_id, f"{field}.session_id")
    check_optional_id(checkpoint.parent_checkpoint_id, f"{field}.parent_checkpoint_id")
    if not isinstance(checkpoint.metadata, dict):
        raise _fail(f"{field}.metadata", "expected a dict")
    check_json(checkpoint.metadata, f"{field}.metadata")
    if not isinstance(checkpoint.created_at, datetime):
        raise _fail(f"{field}.created_at", "expected a datetime")
    state = check_state(checkpoint.state, f"{field}.state")
    check_batch_ids(checkpoint.session_id, state.turns)  # restored as live turns
    created = utc_instant(checkpoint.created_at)
    if state is checkpoint.state and created is checkpoint.created_at:
        return checkpoint
    return replace(checkpoint, state=state, created_at=created)
