"""What the file keeps across a restart, the URL it refuses, and writers closing at once."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

# Installed by .ci/run (where it must not skip); elsewhere: pip install -e examples/plugin_backend
if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
    pytest.importorskip("lexigram_jsonfile", reason="pip install -e examples/plugin_backend")
from lexigram_jsonfile import JsonFileSessionStore
from lexigram_jsonfile.store import write_atomically

from lexigram.ai.session.config import SessionConfig
from lexigram.ai.session.exceptions import SessionValidationError


def _state(session_id: str, status: SessionStatus = SessionStatus.ACTIVE) -> SessionState:
    now = datetime.now(UTC)
    return SessionState(
        session_id=session_id, user_id="u1", status=status, created_at=now, updated_at=now
    )


async def _snapshot(store: JsonFileSessionStore, ids: list[str]) -> dict[str, object]:
    return {sid: (await store.load(sid), await store.list_checkpoints(sid)) for sid in ids}


async def test_branches_tombstones_turns_and_checkpoints_survive_a_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "sessions.json"
    store = JsonFileSessionStore(path)
    await store.initialize()
    await store.create_session(_state("mmm-parent"))
    turn = SessionTurn(turn_id="t1", role="user", content="hi", timestamp=datetime.now(UTC))
    await store.append_turns("mmm-parent", [turn])
    await store.create_checkpoint("mmm-parent", checkpoint_id="cp1")
    # Ids sorting before and after the parent's: the file must not be read in id order.
    forks = [f"{prefix}-{i}" for prefix in ("aaa", "zzz") for i in range(4)]
    for fork in forks:
        await store.fork_session("mmm-parent", _state(fork))
    await store.create_session(_state("gone", SessionStatus.CLOSED))
    assert await store.purge("gone", tombstone_until=datetime.now(UTC) + timedelta(days=7))
    before = await _snapshot(store, ["mmm-parent", *forks])
    await store.close()

    again = JsonFileSessionStore(path)
    await again.initialize()
    branches = await again.list_branches("mmm-parent")
    assert sorted(b.state.session_id for b in branches) == sorted(forks)
    assert await _snapshot(again, ["mmm-parent", *forks]) == before
    with pytest.raises(SessionValidationError, match="already exists"):
        await again.create_session(_state("gone"))
    await again.close()

    third = JsonFileSessionStore(path)  # the tombstone is written again by the next close
    await third.initialize()
    with pytest.raises(SessionValidationError, match="already exists"):
        await third.create_session(_state("gone"))
    await third.close()


@pytest.mark.parametrize("url", ["jsonfile://data/sessions.json", "jsonfile://localhost/s.json"])
def test_a_url_with_a_host_is_refused(url: str) -> None:
    # jsonfile://data/sessions.json reads as host "data" and the file /sessions.json.
    with pytest.raises(Exception, match="database_url: a file has no host"):
        SessionConfig(backend="jsonfile", database_url=url)


def test_a_relative_path_is_accepted() -> None:
    config = SessionConfig(backend="jsonfile", database_url="jsonfile:data/sessions.json")
    assert config.database_url == "jsonfile:data/sessions.json"


def test_writers_closing_at_once_never_share_a_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process writes the file between this writer's write and its rename: with
    # one shared temp name, this rename failed (FileNotFoundError).
    path = tmp_path / "sessions.json"
    replace = os.replace

    def replace_after_another_writer(src: str, dst: str) -> None:
        monkeypatch.setattr(os, "replace", replace)
        write_atomically(path, b"the other writer's")
        replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_after_another_writer)
    write_atomically(path, b"this writer's")
    assert path.read_bytes() == b"this writer's"  # the last to rename wins
    assert os.listdir(tmp_path) == ["sessions.json"]  # no temp file left behind
