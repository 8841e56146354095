"""Command packing in C: a redis-py asyncio connection that packs with ``hiredis``.

redis-py's asyncio connection packs every command in Python (one encoder call per
argument), which costs more than the rest of a script call on the client. When
``hiredis`` is installed (the ``redis`` extra) :func:`connection_class` returns a
connection that packs with ``hiredis.pack_command`` instead, byte for byte the same
wire format; without it, redis-py's own connection is used unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.asyncio.connection import Connection
from redis.exceptions import DataError

_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is part of the "redis" extra
    _pack = None
else:
    _pack = _hiredis_pack

__all__ = ["HiredisPackingConnection", "connection_class", "has_packer", "pack"]


def has_packer() -> bool:
    """Whether ``hiredis`` is there to pack commands (the ``redis`` extra)."""
    return _pack is not None


def pack(args: tuple[Any, ...]) -> bytes:
    """The RESP bytes of one command whose name is one word (only with hiredis)."""
    packer = _pack
    assert packer is not None  # callers check connection_class() first
    try:
        return packer(args)
    except TypeError as exc:
        raise DataError(str(exc)) from exc


class HiredisPackingConnection(Connection):
    """A TCP connection whose commands are packed by ``hiredis`` (C) instead of Python."""

    def pack_command(self, *args: Any) -> list[bytes]:
        """The RESP bytes of one command, as redis-py's own packer would produce them."""
        first = args[0]
        if isinstance(first, str):
            if " " in first:
                args = (*first.encode().split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        pack = _pack
        assert pack is not None  # only used when hiredis is installed
        try:
            return [pack(args)]
        except TypeError:
            cleaned = tuple(bytes(a) if isinstance(a, bytearray | memoryview) else a for a in args)
            try:
                return [pack(cleaned)]
            except TypeError as exc:
                raise DataError(str(exc)) from exc


def connection_class(url: str) -> type[Connection] | None:
    """The packing connection for a plain ``redis://`` URL when hiredis is there, else None."""
    if _pack is None or not url.startswith("redis://"):
        return None
    return HiredisPackingConnection
