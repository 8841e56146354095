"""The hiredis command packer produces exactly redis-py's own bytes."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from lexigram.ai.session.stores.redis.packing import HiredisPackingConnection, connection_class

pytest.importorskip("hiredis")

CASES = [
    ("EVALSHA", "abc", 2, "k1", "k2", 1.5, b"\x00\xff", 2**70, "é"),
    ("SCRIPT LOAD", "return 1"),
    (b"CLIENT SETNAME", b"name"),
    ("SET", bytearray(b"k"), memoryview(b"value")),
    ("ZADD", "z", 0.1 + 0.2, "m", -3),
]


@pytest.mark.parametrize("args", CASES)
def test_same_bytes_as_redis_py(args: tuple[object, ...]) -> None:
    ours = b"".join(HiredisPackingConnection().pack_command(*args))
    theirs = b"".join(bytes(c) for c in Connection().pack_command(*args))
    assert ours == theirs


@pytest.mark.parametrize("bad", [None, True, object()])
def test_unpackable_argument_is_data_error(bad: object) -> None:
    with pytest.raises(DataError):
        HiredisPackingConnection().pack_command("SET", "k", bad)


def test_used_only_for_plain_tcp_urls() -> None:
    assert connection_class("redis://127.0.0.1:6379/0") is HiredisPackingConnection
    assert connection_class("rediss://127.0.0.1:6379/0") is None
    assert connection_class("unix:///tmp/redis.sock") is None
