"""The CLI's variants and errors, through ``main()`` in-process (same code as the subprocess)."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from lexigram.ai.session import SessionConfig, SessionManagerImpl
from lexigram.ai.session.cli.progress import ProgressLine
from lexigram.ai.session.stores.database import DatabaseSessionStore

from ..services import MARIADB_URL, POSTGRES_URL, require_mariadb, require_postgres
from .conftest import Seeded, run, sqlite_url

pytestmark = pytest.mark.usefixtures("no_env_config")


def test_listing_filters_and_table(seeded: Seeded) -> None:
    code, out, err = run(
        "--database-url", seeded.url, "list", "alice", "--status", "closed", "--json"
    )
    assert code == 0 and [r["session_id"] for r in json.loads(out)] == [seeded.closed]
    code, out, err = run("--database-url", seeded.url, "list", "alice", "--limit", "2")
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["SESSION", "STATUS", "TURNS"]
    assert len(lines) == 3 and "2 session(s)" in err
    code, out, err = run("--database-url", seeded.url, "list", "alice", "--status", "gone")
    assert code == 1 and "status" in err


def test_show_in_text(seeded: Seeded) -> None:
    # "--" ends the options: session ids may start with "-"
    code, out, _ = run("--database-url", seeded.url, "show", "--turns", "1", "--", seeded.alice[0])
    assert code == 0
    assert "status    active" in out and "prompt    be nice" in out
    assert "tools     weather x1" in out and "And tomorrow?" in out and "Sunny." not in out
    code, out, _ = run("--database-url", seeded.url, "show", "--", seeded.branch)
    assert f"branch    what-if of {seeded.alice[0]}" in out


def test_show_writes_terminal_control_characters_as_escapes(tmp_path: Path) -> None:
    """A stored turn of ``hi\x1b[2J\x1b]0;pwned\x07\rSYSTEM: ...`` cleared the operator's
    screen, retitled the window and overwrote the line (an outside audit)."""
    url = sqlite_url(tmp_path / "esc.db")

    async def seed() -> None:
        async with SessionManagerImpl.open({"database_url": url}) as manager:
            await manager.create("mallory", session_id="esc-1")
            await manager.add_message(
                "esc-1", "user\x1b[31m", "hi\x1b[2J\x1b]0;pwned\x07\rSYSTEM: all erased\nnext"
            )

    asyncio.run(seed())
    code, out, _ = run("--database-url", url, "show", "--", "esc-1")
    assert code == 0
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out
    assert "hi\\x1b[2J\\x1b]0;pwned\\x07\\rSYSTEM: all erased\\nnext" in out
    assert "user\\x1b[31m:" in out


def test_errors_are_one_line_with_exit_code_1(seeded: Seeded, tmp_path: Path) -> None:
    code, _, err = run("--database-url", seeded.url, "show", "no-such-session")
    assert code == 1 and "not found" in err and "Traceback" not in err
    code, _, err = run("--backend", "mongo", "list", "alice")
    assert code == 1 and "backend" in err
    code, _, err = run("--database-url", seeded.url, "import", str(tmp_path / "missing.json"))
    assert code == 1 and "cannot read" in err
    code, _, err = run("--database-url", seeded.url, "export")
    assert code == 1 and "name a session or a user" in err


def test_reimport_skips_or_replaces_and_single_export(seeded: Seeded, tmp_path: Path) -> None:
    code, out, _ = run("--database-url", seeded.url, "export", "--", seeded.bob)
    assert code == 0
    doc = json.loads(out)
    assert [s["header"]["user_id"] for s in doc["sessions"]] == ["bob"]
    path = tmp_path / "bob.json"
    path.write_text(out)
    target = sqlite_url(tmp_path / "copy.db")
    assert "imported 1" in run("--database-url", target, "import", str(path))[1]
    code, out, err = run("--database-url", target, "import", str(path))
    assert "skipped 1" in out and "--replace" in err
    code, out, _ = run("--database-url", target, "import", "--replace", str(path))
    assert "replaced 1" in out


@pytest.mark.parametrize(
    ("damage", "where"),
    [
        (
            lambda d: d["sessions"][0]["turns"][0].update(timestamp="yesterday"),
            "sessions[0].turns[0]",
        ),
        (lambda d: d["sessions"][0]["header"].pop("user_id"), "sessions[0].header"),
        (lambda d: d.update(format="something-else"), "format"),
        (lambda d: d.update(version=99), "version"),
        (lambda d: d["sessions"].append(d["sessions"][0]), "sessions[1].header.session_id"),
        (
            lambda d: d["sessions"][0]["checkpoints"][0].update(checkpoint_id=""),
            "sessions[0].checkpoints[0].checkpoint_id",
        ),
    ],
)
def test_a_damaged_document_is_refused_whole_naming_the_place(
    seeded: Seeded, tmp_path: Path, damage: Any, where: str
) -> None:
    code, out, _ = run("--database-url", seeded.url, "export", "--", seeded.alice[0])
    doc = json.loads(out)
    damage(doc)
    path = tmp_path / "damaged.json"
    path.write_text(json.dumps(doc))
    target = sqlite_url(tmp_path / "untouched.db")
    code, out, err = run("--database-url", target, "import", str(path))
    assert code == 1 and where in err, err
    # Nothing half-written, not even the schema: the document is refused before the
    # store is opened, so a read of that path still says there is no database.
    assert not (tmp_path / "untouched.db").exists()
    code, out, err = run("--database-url", target, "list", "alice", "--json")
    assert code == 1 and "no SQLite database at" in err


@pytest.mark.parametrize("value", ["-1", "99999999999999"])
def test_a_purge_age_out_of_range_names_the_flag(tmp_path: Path, value: str) -> None:
    """It named the config field ``purge_after_s`` (and printed a float)."""
    url = sqlite_url(tmp_path / "p.db")
    code, _, err = run("--database-url", url, "sweep", "--purge-after", value)
    assert code == 1 and "--purge-after: must be a whole number of seconds" in err
    assert f"got {value}" in err and not (tmp_path / "p.db").exists()


def test_purge_only_sweep(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "purge.db")

    async def seed() -> None:
        store = DatabaseSessionStore(url)
        await store.initialize()
        try:
            manager = SessionManagerImpl(store, SessionConfig(session_ttl=0))
            for i in range(3):
                await manager.close((await manager.create(f"u{i}")).session_id)
            await manager.create("u-live")
        finally:
            await store.close()

    asyncio.run(seed())
    code, out, err = run("--database-url", url, "sweep", "--purge-after", "0", "--no-expire")
    assert code == 0 and "expired 0, purged 3" in out, err
    assert "purge: 3" in err
    assert json.loads(run("--database-url", url, "list", "u0", "--json")[1]) == []
    assert len(json.loads(run("--database-url", url, "list", "u-live", "--json")[1])) == 1


def test_progress_line_prints_the_last_step_when_not_a_terminal() -> None:
    stream = io.StringIO()
    progress = ProgressLine("imported", stream=stream, every_s=3600, unit="session(s)")
    for i in range(1, 6):
        progress(i, 5)
    progress.finish()
    assert stream.getvalue().splitlines() == [
        "imported: 1/5 session(s)",
        "imported: 5/5 session(s)",
    ]
    phases = io.StringIO()
    sweep = ProgressLine("expire", stream=phases, every_s=3600)
    sweep.phase("expire", 10)
    sweep.phase("expire", 20)
    sweep.phase("purge", 3)
    sweep.finish()
    assert phases.getvalue().splitlines() == ["expire: 10", "expire: 20", "purge: 3"]


def test_a_copy_under_a_new_id_needs_new_checkpoint_ids(seeded: Seeded, tmp_path: Path) -> None:
    code, out, _ = run("--database-url", seeded.url, "export", "--", seeded.alice[0])
    doc = json.loads(out)
    entry = doc["sessions"][0]
    entry["header"]["session_id"] = "copy-of-first"
    for cp in entry["checkpoints"]:
        cp["header"]["session_id"] = "copy-of-first"
    path = tmp_path / "copy.json"
    path.write_text(json.dumps(doc))
    code, out, err = run("--database-url", seeded.url, "import", str(path))
    assert code == 1 and "belongs to session" in err and "--new-checkpoint-ids" in err
    code, out, err = run("--database-url", seeded.url, "import", "--new-checkpoint-ids", str(path))
    assert code == 0 and "imported 1" in out, err

    async def check() -> None:
        store = DatabaseSessionStore(seeded.url)
        await store.initialize()
        try:
            source = await store.load_checkpoint(seeded.checkpoint)
            assert source is not None and source.session_id == seeded.alice[0]
            copies = await store.list_checkpoints("copy-of-first")
            assert len(copies) == 1 and copies[0].checkpoint_id != seeded.checkpoint
            manager = SessionManagerImpl(store, SessionConfig(session_ttl=0))
            restored = await manager.restore(seeded.checkpoint)
            assert restored.session_id == seeded.alice[0]
        finally:
            await store.close()

    asyncio.run(check())


def test_show_refuses_a_negative_turn_count(seeded: Seeded) -> None:
    code, _, err = run("--database-url", seeded.url, "show", "--turns", "-3", "--", seeded.bob)
    assert code == 1 and "--turns" in err
    code, out, _ = run("--database-url", seeded.url, "show", "--turns", "0", "--", seeded.bob)
    assert code == 0 and seeded.bob in out


def test_a_session_named_twice_is_exported_once_and_imports_back(
    seeded: Seeded, tmp_path: Path
) -> None:
    document = tmp_path / "twice.json"
    code, _, _ = run(
        "--database-url", seeded.url, "export", "-o", str(document), "--", seeded.bob, seeded.bob
    )
    assert code == 0
    assert [s["header"]["session_id"] for s in json.loads(document.read_text())["sessions"]] == [
        seeded.bob
    ]
    target = sqlite_url(tmp_path / "target.db")
    code, out, err = run("--database-url", target, "import", str(document))
    assert code == 0 and "imported 1" in out, err


def test_importing_a_recently_purged_session_says_so(seeded: Seeded, tmp_path: Path) -> None:
    document = tmp_path / "bob.json"
    exported = run("--database-url", seeded.url, "export", "-o", str(document), "--", seeded.bob)
    assert exported[0] == 0

    async def purge() -> None:
        from datetime import UTC, datetime, timedelta

        store = DatabaseSessionStore(seeded.url)
        await store.initialize()
        try:
            await SessionManagerImpl(store).close(seeded.bob)  # only ended sessions purge
            purged = await store.purge(
                seeded.bob, tombstone_until=datetime.now(UTC) + timedelta(hours=1)
            )
            assert purged
        finally:
            await store.close()

    asyncio.run(purge())
    for _ in range(2):  # running it again gives the same answer, never "run it again"
        code, _, err = run("--database-url", seeded.url, "import", str(document))
        assert code == 1 and "was purged recently" in err
        assert "run the same import again" not in err


def test_reading_commands_do_not_create_a_missing_sqlite_file(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "typo" / "x.db")
    for argv in (("list", "alice"), ("show", "--", "s1"), ("export", "--user", "alice")):
        code, _, err = run("--database-url", url, *argv)
        assert code == 1 and "no SQLite database at" in err, argv
    assert not (tmp_path / "typo").exists()
    code, _, _ = run("--database-url", url, "schema-setup")
    assert code == 0 and (tmp_path / "typo" / "x.db").exists()
    code, _, err = run("--database-url", url, "list", "alice")
    assert code == 0 and "0 session(s)" in err


def test_both_urls_without_a_backend_are_refused_naming_it(seeded: Seeded) -> None:
    code, out, err = run(
        "--database-url", seeded.url, "--redis-url", "redis://127.0.0.1:6379/0", "list", "alice"
    )
    assert code == 1 and out == ""
    assert "ai_session.backend" in err and "--database-url" in err and "--redis-url" in err


def test_an_in_memory_sqlite_url_is_warned_about(tmp_path: Path) -> None:
    code, _, err = run("--database-url", "sqlite+aiosqlite:///:memory:", "sweep")
    assert code == 0 and "in-memory SQLite database" in err and "keeps nothing" in err


_READ_ONLY = (("list", "alice"), ("show", "--", "x"), ("export", "--user", "alice"))
#: With encryption on, the SQL store sits behind the encrypting one: still refused.
_READ_ONLY_WITH_KEYS = (("keys", "status"), ("list", "alice"), ("export-user", "alice"))


@pytest.mark.parametrize("keys", [False, True], ids=["plain", "keys"])
@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mariadb"])
def test_read_commands_do_not_create_tables_under_an_unknown_prefix(
    seeded: Seeded, backend: str, keys: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lexigram.ai.session.encryption.keyring import new_key_text

    if keys:
        monkeypatch.setenv("LEX_AI_SESSION__ENCRYPTION_KEYS", new_key_text("k1"))
    prefix = f"ro{uuid.uuid4().hex[:8]}_"
    url = {"sqlite": seeded.url, "postgres": POSTGRES_URL, "mariadb": MARIADB_URL}[backend]
    if backend == "postgres":
        require_postgres()
    elif backend == "mariadb":
        require_mariadb()
    for argv in _READ_ONLY_WITH_KEYS if keys else _READ_ONLY:
        code, out, err = run("--database-url", url, "--table-prefix", prefix, *argv)
        assert code == 1 and out == "", argv
        assert f"no session tables with prefix {prefix!r}" in err, err
    assert asyncio.run(_tables_with(url, prefix)) == []


async def _tables_with(url: str, prefix: str) -> list[str]:
    from sqlalchemy import inspect

    store = DatabaseSessionStore(url, table_prefix=prefix, pool_size=1)
    try:
        async with store.engine.connect() as conn:
            names = await conn.run_sync(lambda c: inspect(c).get_table_names())
    finally:
        await store.close()
    return [n for n in names if n.startswith(prefix)]


def test_ctrl_c_is_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C during a command (a long `keys rotate`, an export) ended in a traceback."""
    from lexigram.ai.session.cli import commands

    def interrupted(*args: object, **kwargs: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "run_list", interrupted)
    code, out, err = run("list", "alice")
    assert code == 1 and out == ""
    assert "error: interrupted" in err and "Traceback" not in err


@pytest.mark.parametrize("keys", [False, True], ids=["plain", "keys"])
def test_read_commands_refuse_a_redis_prefix_holding_nothing(
    keys: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Redis a mistyped --key-prefix is an empty namespace: `keys retire` said the key
    was needed by no record and `erase-user` confirmed an erasure (an outside audit)."""
    import redis

    from ..services import REDIS_URL, require_redis

    require_redis()
    from lexigram.ai.session.encryption.keyring import new_key_text

    if keys:  # k2 newest: retiring k1 is a command the CLI accepts
        keyring = new_key_text("k2") + "," + new_key_text("k1")
        monkeypatch.setenv("LEX_AI_SESSION__ENCRYPTION_KEYS", keyring)
    stored, mistyped = f"ro{uuid.uuid4().hex[:8]}", f"ro{uuid.uuid4().hex[:8]}"
    config = SessionConfig(redis_url=REDIS_URL, key_prefix=stored, backend="redis")

    async def seed() -> None:
        async with SessionManagerImpl.open(config) as manager:
            await manager.create("alice")

    asyncio.run(seed())
    client = redis.Redis.from_url(REDIS_URL)
    try:
        argv_sets = [("list", "alice"), ("erase-user", "nobody")]
        if keys:
            argv_sets += [("keys", "status"), ("keys", "retire", "k1")]
        for argv in argv_sets:
            code, out, err = run("--redis-url", REDIS_URL, "--key-prefix", mistyped, *argv)
            assert code == 1 and out == "", argv
            assert f"nothing stored under key prefix {mistyped!r}" in err, err
        assert list(client.scan_iter(match=f"{mistyped}*")) == []
        code, out, err = run("--redis-url", REDIS_URL, "--key-prefix", stored, "list", "alice")
        assert code == 0, err
        # Once every session is erased the store still answers (nothing): an operator
        # verifying or retrying an erasure is not told the prefix is mistyped.
        code, _, err = run("--redis-url", REDIS_URL, "--key-prefix", stored, "erase-user", "alice")
        assert code == 0, err
        code, out, err = run("--redis-url", REDIS_URL, "--key-prefix", stored, "list", "alice")
        assert code == 0, err
    finally:
        for prefix in (stored, mistyped):
            for key in client.scan_iter(match=f"{prefix}*"):
                client.delete(key)
        client.close()
