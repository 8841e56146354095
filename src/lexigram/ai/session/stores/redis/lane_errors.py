"""What the lane raises when a connection fails, and how it spots a closed one."""

from __future__ import annotations

from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["LaneError", "closed_by_peer"]


class LaneError(Exception):
    """A lane call failed on the way to or from Redis.

    ``sent``: the command may have reached Redis (it was written before the
    failure); ``cause``: the failure as redis-py's connection error.
    """

    def __init__(self, cause: BaseException, *, sent: bool) -> None:
        super().__init__(str(cause))
        self.sent = sent
        self.cause: RedisConnectionError | RedisTimeoutError = (
            cause
            if isinstance(cause, RedisConnectionError | RedisTimeoutError)
            else RedisConnectionError(f"Error while talking to Redis: {cause}")
        )


def closed_by_peer(conn: Any) -> bool:
    """Whether an idle connection was closed (or reset) by the other end meanwhile."""
    reader = conn._reader
    return bool(reader.at_eof() or reader.exception() is not None or conn._writer.is_closing())
