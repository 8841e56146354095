"""Every error of the package survives pickling (process pools, multiprocessing, Celery)."""

from __future__ import annotations

import asyncio
import copy
import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

from lexigram.ai.session.exceptions import (
    CorruptRecordError,
    DuplicateTurnError,
    EncryptionKeyError,
    SessionError,
    SessionExpiredTransitionError,
    SessionNotFoundError,
    SessionTransitionError,
    SessionValidationError,
    TurnLimitReachedError,
)

ERRORS: list[SessionError] = [
    SessionValidationError("turns[1].cost", "must be finite"),
    DuplicateTurnError("s1", "t1"),
    SessionTransitionError("s1", "active", "closed"),
    SessionExpiredTransitionError("s1", "closed"),
    TurnLimitReachedError("s1", 3),
    CorruptRecordError("session 's1'", "bad JSON"),
    EncryptionKeyError("session 's1'", "A", "is not in encryption_keys"),
    SessionNotFoundError("s1"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_an_error_round_trips_through_pickle_and_deepcopy(error: SessionError) -> None:
    """Errors taking several arguments failed to unpickle (a worker's error broke its
    ProcessPoolExecutor)."""
    for copied in (pickle.loads(pickle.dumps(error)), copy.deepcopy(error)):
        assert type(copied) is type(error)
        assert str(copied) == str(error) and copied.code == error.code
        assert vars(copied) == vars(error)


def _raise_validation() -> None:
    raise SessionValidationError("user_id", "must be a non-empty string, got ''")


async def test_a_worker_process_error_reaches_the_caller_as_itself() -> None:
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(max_workers=1) as pool:
        with pytest.raises(SessionValidationError) as caught:
            await loop.run_in_executor(pool, _raise_validation)
        assert caught.value.field == "user_id"
        with pytest.raises(SessionValidationError):  # the pool still works
            await loop.run_in_executor(pool, _raise_validation)
