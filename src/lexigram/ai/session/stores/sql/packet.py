"""MariaDB's ``max_allowed_packet``: a write too large for one statement, refused by name.

The server drops the connection on a statement longer than ``max_allowed_packet``
(16 MiB by default), which would reach the caller as an unreachable database. The
values of a write are measured first, as the driver sends them (UTF-8, with the
characters it escapes doubled), and a write that cannot fit is refused with
``SessionValidationError`` naming the field, before anything is sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lexigram.ai.session.exceptions import SessionValidationError

__all__ = ["PACKET_MARGIN", "check_packet"]

#: Room kept in a packet for the statement's own text and the other parameters.
PACKET_MARGIN = 64 * 1024
#: The characters the driver escapes with a backslash (each becomes two bytes).
_ESCAPED = ("\\", "'", '"', "\x00", "\n", "\r", "\x1a")


def _wire_size(text: str) -> int:
    size = len(text.encode("utf-8", "surrogatepass"))
    return size + sum(text.count(ch) for ch in _ESCAPED)


def _values_size(values: Mapping[str, Any], exact: bool) -> int:
    texts = [v for v in values.values() if isinstance(v, str)]
    if not exact:
        return sum(4 * len(t) for t in texts)  # an upper bound: no character sends more
    return sum(_wire_size(t) for t in texts)


def check_packet(
    limit: int | None,
    rows: Sequence[Mapping[str, Any]] = (),
    field: str = "turns",
    header: Mapping[str, Any] | None = None,
    header_fields: Mapping[str, str] | None = None,
    *,
    together: str | None = None,
) -> None:
    """Refuse values that cannot travel in one packet of ``limit`` bytes (None: no limit).

    ``rows`` are a batch's encoded turns (named ``field[i]``); ``header`` the encoded
    header or patch columns, named through ``header_fields`` (column -> field).
    ``together`` names the values as a whole when each fits and all do not (by default
    ``field`` with rows, else ``state``).
    """
    if limit is None:
        return
    room = limit - PACKET_MARGIN
    columns = dict(header or {})
    bound = sum(_values_size(row, False) for row in rows) + _values_size(columns, False)
    if bound <= room:
        return  # the common case: nothing to measure exactly
    names = header_fields or {}
    for column, value in columns.items():
        if isinstance(value, str) and _wire_size(value) > room:
            _refuse(names.get(column, column), _wire_size(value), limit)
    total = _values_size(columns, True)
    for index, row in enumerate(rows):
        size = _values_size(row, True)
        if size > room:
            _refuse(f"{field}[{index}]", size, limit)
        total += size
    if total > room:
        whole = together or (field if rows else "state")
        _refuse(whole, total, limit, together=True)


def _refuse(field: str, size: int, limit: int, *, together: bool = False) -> None:
    what = "together are" if together else "is"
    raise SessionValidationError(
        field,
        f"{what} {size} bytes as sent to MariaDB, more than one statement may carry on "
        f"this server (max_allowed_packet = {limit} bytes, less {PACKET_MARGIN} for the "
        "statement); store less, or raise max_allowed_packet on the server",
    )
