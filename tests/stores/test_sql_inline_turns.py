"""Checkpoint turns stored inline (SQL) decode as live turns do."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session.exceptions import CorruptRecordError
from lexigram.ai.session.stores.sql.rows import turns_from_json, turns_to_json


def _turn(turn_id: str, offset: timedelta) -> SessionTurn:
    stamp = datetime(2026, 1, 1, 12, tzinfo=timezone(offset))
    return SessionTurn(turn_id=turn_id, role="user", content=turn_id, timestamp=stamp)


def test_any_iso_offset_reads_back_as_a_datetime_timezone() -> None:
    # Written by an earlier release: an offset in seconds was refused by the old decoder.
    turns = [_turn("a", timedelta(hours=5, minutes=30, seconds=15)), _turn("b", timedelta(0))]
    back = turns_from_json(turns_to_json(turns), "checkpoint 'c'")
    assert back == turns
    assert all(type(t.timestamp.tzinfo) is timezone for t in back)


def test_a_damaged_inline_turn_is_named() -> None:
    data = json.loads(turns_to_json([_turn("a", timedelta(0)), _turn("b", timedelta(0))]))
    data[1]["timestamp"] = "yesterday"
    with pytest.raises(CorruptRecordError) as info:
        turns_from_json(json.dumps(data), "checkpoint 'c'")
    assert "turn #1" in str(info.value) and "timestamp" in str(info.value)
