"""Export and import keep each branch's fork point; a refused import creates nothing;
a checkpoint is never imported under another user (an outside audit, three defects).

1. ``export-user``/``export`` then ``import`` lost a branch's fork point: its
   ``SessionRecord.fork_seq`` was None on the target, so ``merge`` took the branch's
   inherited turns for its own and raised ``DuplicateTurnError`` (on the source it
   appended only the branch's own turns).
2. A refused ``import`` still created the schema (a SQLite file with tables,
   PostgreSQL/MariaDB tables under a new prefix, Redis keys), which then defeated the
   read-only commands' guard against a mistyped path or prefix.
3. A checkpoint whose header named another user than its session was imported.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionState, SessionTurn

from lexigram.ai.session import SessionConfig, SessionManagerImpl
from lexigram.ai.session.branching import BranchManager
from lexigram.ai.session.cli.importing import import_document
from lexigram.ai.session.cli.transfer import dump_document, session_to_dict
from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.stores.base import SessionRecord, SessionStore
from lexigram.ai.session.stores.database import DatabaseSessionStore
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from tests.stores.backends import BackendSpec, all_specs

from ..services import (
    MARIADB_URL,
    POSTGRES_URL,
    REDIS_URL,
    require_mariadb,
    require_postgres,
    require_redis,
)
from .conftest import run, sqlite_url

SPECS = [s for s in all_specs() if s.name != "redis_cluster"]
_CONFIG = {"auto_checkpoint_interval": None, "session_ttl": 0}


pytestmark = pytest.mark.usefixtures("no_env_config")


def _turn(n: int) -> SessionTurn:
    return SessionTurn(
        turn_id=f"t{n}", role="user", content=f"m{n}", timestamp=datetime.now(UTC)
    )


async def _repro(store: SessionStore) -> tuple[str, str]:
    """The audit's repro: ``alice-main`` with t1,t2; checkpoint; t3,t4; a branch from
    the checkpoint with t5 of its own. Returns (main id, branch id)."""
    manager = SessionManagerImpl(store, _CONFIG)
    main_state = await manager.create("alice", session_id="alice-main")
    sid = main_state.session_id
    for n in (1, 2):
        await manager.add_turn(sid, _turn(n))
    cp = await manager.checkpoint(sid)
    for n in (3, 4):
        await manager.add_turn(sid, _turn(n))
    branch = await BranchManager(manager).fork(sid, "br1", from_checkpoint=cp.checkpoint_id)
    await manager.add_turn(branch.session_id, _turn(5))
    return sid, branch.session_id


async def _merged_ids(store: SessionStore, parent: str, branch: str) -> list[str]:
    merged = await BranchManager(SessionManagerImpl(store, _CONFIG)).merge(parent, branch)
    return [t.turn_id for t in merged.turns]


# ----------------------------------------------------------------- 1. fork points
@pytest.mark.parametrize("command", [("export-user", "alice"), ("export", "--user", "alice")])
def test_the_audits_repro_merges_only_the_branchs_own_turns_after_import(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    source, target = sqlite_url(tmp_path / "source.db"), sqlite_url(tmp_path / "target.db")

    async def seed() -> tuple[str, str]:
        async with SessionManagerImpl.open(SessionConfig(database_url=source)) as manager:
            return await _repro(manager.store)

    parent, branch = asyncio.run(seed())
    document = tmp_path / "a.json"
    code, _, err = run("--database-url", source, *command, "-o", str(document))
    assert code == 0, err
    code, out, err = run("--database-url", target, "import", str(document))
    assert code == 0 and "imported 2" in out, err

    async def check(url: str) -> tuple[SessionRecord | None, list[str]]:
        store = DatabaseSessionStore(url)
        await store.initialize()
        try:
            record = await store.load_record(branch)
            return record, await _merged_ids(store, parent, branch)
        finally:
            await store.close()

    record, merged = asyncio.run(check(target))  # raised DuplicateTurnError 't1'
    assert record is not None and record.fork_seq == 2
    assert merged == ["t1", "t2", "t3", "t4", "t5"]
    _, on_source = asyncio.run(check(source))
    assert on_source == merged  # the same as on the store it came from
    entries = {e["header"]["session_id"]: e for e in json.loads(document.read_text())["sessions"]}
    assert entries[branch]["fork_seq"] == 2
    assert "fork_seq" not in entries[parent]  # written for a branch only


@pytest.fixture(params=[pytest.param(s, id=s.name, marks=s.marks) for s in SPECS])
async def spec(request: pytest.FixtureRequest) -> BackendSpec:
    found: BackendSpec = request.param
    return found


async def _export(store: SessionStore, *session_ids: str) -> dict[str, Any]:
    entries = []
    for sid in session_ids:
        state = await store.load(sid)
        assert state is not None
        checkpoints = await store.list_checkpoints(sid)
        if state.parent_session_id is None:
            entries.append(session_to_dict(state, checkpoints))
            continue
        # Imported here: the tests of the other defects run on a release without it.
        from lexigram.ai.session.cli.transfer import fork_point

        fork_seq = await fork_point(store, state)
        entries.append(session_to_dict(state, checkpoints, fork_seq=fork_seq))
    doc: dict[str, Any] = json.loads(dump_document(entries))
    return doc


async def test_export_and_import_keep_the_fork_point_on_every_backend(spec: BackendSpec) -> None:
    """From an in-memory source into each backend (the encrypted ones too)."""
    source = InMemorySessionStore()
    parent, branch = await _repro(source)
    doc = await _export(source, parent, branch)
    async with spec.open() as factory:
        store = await factory()
        report = await import_document(store, json.dumps(doc))
        assert sorted(report.imported) == sorted([parent, branch])
        record = await store.load_record(branch)
        assert record is not None and record.fork_seq == 2
        assert record.state.parent_session_id == parent
        assert [r.state.session_id for r in await store.list_branches(parent)] == [branch]
        assert await _merged_ids(store, parent, branch) == ["t1", "t2", "t3", "t4", "t5"]
        # ...and exported from there again, the document says the same.
        again = await _export(store, branch)
        assert again["sessions"][0]["fork_seq"] == 2


async def test_a_turn_popped_from_a_branch_is_not_counted_as_inherited() -> None:
    """The document's fork point counts the inherited turns the branch still has: the
    imported branch's turns after it are exactly those a merge appends on the source."""
    source = InMemorySessionStore()
    manager = SessionManagerImpl(source, _CONFIG)
    parent = (await manager.create("alice")).session_id
    for n in (1, 2, 3):
        await manager.add_turn(parent, _turn(n))
    branch = (await BranchManager(manager).fork(parent, "b")).session_id
    await source.pop_turn(branch)  # t3, inherited
    await manager.add_turn(branch, _turn(9))
    record = await source.load_record(branch)
    assert record is not None and record.fork_seq == 3
    doc = await _export(source, parent, branch)
    assert doc["sessions"][1]["fork_seq"] == 2
    on_source = await _merged_ids(source, parent, branch)
    target = InMemorySessionStore()
    await import_document(target, json.dumps(doc))
    assert await _merged_ids(target, parent, branch) == on_source == ["t1", "t2", "t3", "t9"]


async def test_a_document_of_an_earlier_release_imports_as_before() -> None:
    """No ``fork_seq`` in the document: imported, with no fork point (as before)."""
    source = InMemorySessionStore()
    parent, branch = await _repro(source)
    doc = await _export(source, parent, branch)
    for entry in doc["sessions"]:
        entry.pop("fork_seq", None)
    target = InMemorySessionStore()
    report = await import_document(target, json.dumps(doc))
    assert len(report.imported) == 2
    record = await target.load_record(branch)
    assert record is not None and record.fork_seq is None


@pytest.mark.parametrize(
    ("index", "value", "problem"),
    [
        (1, -1, "must be in 0..3"),
        (1, 4, "must be in 0..3"),
        (1, True, "expected an integer"),
        (1, "2", "expected an integer"),
        (1, 2.0, "expected an integer"),
        (0, 0, "only a branch"),
    ],
)
async def test_a_bad_fork_point_in_a_document_is_refused_naming_it(
    index: int, value: Any, problem: str
) -> None:
    source = InMemorySessionStore()
    parent, branch = await _repro(source)
    doc = await _export(source, parent, branch)
    doc["sessions"][index]["fork_seq"] = value
    target = InMemorySessionStore()
    with pytest.raises(SessionValidationError) as caught:
        await import_document(target, json.dumps(doc))
    assert caught.value.field == f"sessions[{index}].fork_seq"
    assert problem in str(caught.value)
    assert await target.load_record(parent) is None and await target.load_record(branch) is None


class _EarlierContractStore(InMemorySessionStore):
    """A plugin backend written against the contract before ``fork_seq``."""

    async def create_session(  # type: ignore[override]
        self, state: SessionState, *, max_live_per_user: int | None = None
    ) -> SessionRecord:
        return await super().create_session(state, max_live_per_user=max_live_per_user)


async def test_a_store_of_the_earlier_contract_refuses_a_branch_before_writing() -> None:
    source = InMemorySessionStore()
    parent, branch = await _repro(source)
    doc = await _export(source, parent, branch)
    from lexigram.ai.session.cli.importing import takes_fork_seq

    target = _EarlierContractStore()
    assert not takes_fork_seq(target) and takes_fork_seq(InMemorySessionStore())
    with pytest.raises(SessionValidationError) as caught:
        await import_document(target, json.dumps(doc))
    assert caught.value.field == "sessions[1].fork_seq"
    assert branch in str(caught.value) and "nothing was written" in str(caught.value)
    assert await target.load_record(parent) is None and await target.load_record(branch) is None
    # Documents without a fork point (no branch, or an earlier release's) still import.
    without = copy.deepcopy(doc)
    without["sessions"][1].pop("fork_seq")
    report = await import_document(target, json.dumps(without))
    assert len(report.imported) == 2


async def test_the_encrypted_store_passes_the_fork_point_and_checks_its_inner_store() -> None:
    pytest.importorskip("cryptography")
    from lexigram.ai.session.cli.importing import takes_fork_seq
    from lexigram.ai.session.encryption.keyring import Keyring, new_key_text
    from lexigram.ai.session.stores.encrypted.store import EncryptedSessionStore

    keyring = Keyring.from_config(new_key_text("k1"))
    assert keyring is not None
    source = InMemorySessionStore()
    parent, branch = await _repro(source)
    doc = await _export(source, parent, branch)
    old = EncryptedSessionStore(_EarlierContractStore(), keyring)
    assert not takes_fork_seq(old)
    with pytest.raises(SessionValidationError, match="fork_seq"):
        await import_document(old, json.dumps(doc))
    new = EncryptedSessionStore(InMemorySessionStore(), keyring)
    await import_document(new, json.dumps(doc))
    record = await new.load_record(branch)
    assert record is not None and record.fork_seq == 2


# ------------------------------------------------ 2. a refused import creates nothing
def _refused_document(tmp_path: Path) -> Path:
    """A document refused by validation (its second session's turn has a bad time)."""
    path = tmp_path / "refused.json"
    doc = {
        "format": "lexigram-ai-session/export",
        "version": 1,
        "sessions": [
            {"header": {"session_id": "ok", "user_id": "alice", "status": "active",
                        "created_at": "2026-01-01T00:00:00+00:00",
                        "updated_at": "2026-01-01T00:00:00+00:00"}},
            {"header": {"session_id": "bad", "user_id": "alice", "status": "active",
                        "created_at": "2026-01-01T00:00:00+00:00",
                        "updated_at": "2026-01-01T00:00:00+00:00"},
             "turns": [{"turn_id": "t1", "role": "user", "content": "x",
                        "timestamp": "yesterday"}]},
        ],
    }
    path.write_text(json.dumps(doc))
    return path


def test_a_refused_import_creates_no_sqlite_file(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path / "typo" / "x.db")
    code, _, err = run("--database-url", url, "import", str(_refused_document(tmp_path)))
    assert code == 1 and "sessions[1].turns[0].timestamp" in err, err
    assert not (tmp_path / "typo").exists()
    # ...so a read-only command still tells the mistyped path.
    code, _, err = run("--database-url", url, "list", "alice")
    assert code == 1 and "no SQLite database at" in err


@pytest.mark.parametrize("backend", ["postgres", "mariadb"])
def test_a_refused_import_creates_no_tables_under_a_new_prefix(
    tmp_path: Path, backend: str
) -> None:
    from .test_cli_inprocess import _tables_with

    (require_postgres if backend == "postgres" else require_mariadb)()
    url = POSTGRES_URL if backend == "postgres" else MARIADB_URL
    prefix = f"ri{uuid.uuid4().hex[:8]}_"
    try:
        code, _, err = run(
            "--database-url", url, "--table-prefix", prefix, "import",
            str(_refused_document(tmp_path)),
        )
        assert code == 1 and "sessions[1].turns[0].timestamp" in err, err
        assert asyncio.run(_tables_with(url, prefix)) == []
        code, _, err = run("--database-url", url, "--table-prefix", prefix, "list", "alice")
        assert code == 1 and f"no session tables with prefix {prefix!r}" in err
    finally:  # what a failing run created
        asyncio.run(_drop_tables(url, prefix))


async def _drop_tables(url: str, prefix: str) -> None:
    """Drop the tables (and MariaDB procedures) named with ``prefix``."""
    from sqlalchemy import MetaData, text

    store = DatabaseSessionStore(url, table_prefix=prefix, pool_size=1)
    try:
        async with store.engine.begin() as conn:
            meta = MetaData()
            await conn.run_sync(lambda c: meta.reflect(c, only=lambda n, _: n.startswith(prefix)))
            await conn.run_sync(meta.drop_all)
            if conn.dialect.name == "mysql":
                found = await conn.execute(
                    text(
                        "SELECT routine_name FROM information_schema.routines "
                        "WHERE routine_schema = DATABASE() AND routine_name LIKE :p"
                    ),
                    {"p": prefix.replace("_", "\\_") + "%"},
                )
                for (name,) in found.all():
                    await conn.execute(text(f"DROP PROCEDURE IF EXISTS `{name}`"))
    finally:
        await store.close()


def test_a_refused_import_writes_no_redis_key(tmp_path: Path) -> None:
    import redis

    require_redis()
    prefix = f"ri{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(REDIS_URL)
    try:
        code, _, err = run(
            "--redis-url", REDIS_URL, "--key-prefix", prefix, "import",
            str(_refused_document(tmp_path)),
        )
        assert code == 1 and "sessions[1].turns[0].timestamp" in err, err
        assert list(client.scan_iter(match=f"{prefix}*")) == []
        code, _, err = run("--redis-url", REDIS_URL, "--key-prefix", prefix, "list", "alice")
        assert code == 1 and f"nothing stored under key prefix {prefix!r}" in err
    finally:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()


# ---------------------------------------- 3. a checkpoint names its session's user
@pytest.fixture
async def memory() -> AsyncIterator[InMemorySessionStore]:
    store = InMemorySessionStore()
    await store.initialize()
    yield store
    await store.close()


async def test_a_checkpoint_of_another_user_is_refused_naming_the_field(
    memory: InMemorySessionStore,
) -> None:
    parent, _ = await _repro(memory)
    doc = await _export(memory, parent)
    doc["sessions"][0]["checkpoints"][0]["header"]["user_id"] = "someoneelse"
    target = InMemorySessionStore()
    with pytest.raises(SessionValidationError) as caught:
        await import_document(target, json.dumps(doc))
    assert caught.value.field == "sessions[0].checkpoints[0].header.user_id"
    assert "someoneelse" in str(caught.value) and "alice" in str(caught.value)
    assert await target.load_record(parent) is None


def test_the_cli_refuses_a_checkpoint_of_another_user(tmp_path: Path) -> None:
    source = InMemorySessionStore()
    parent, _ = asyncio.run(_repro(source))
    doc = asyncio.run(_export(source, parent))
    doc["sessions"][0]["checkpoints"][0]["header"]["user_id"] = "someoneelse"
    path = tmp_path / "other.json"
    path.write_text(json.dumps(doc))
    target = sqlite_url(tmp_path / "target.db")
    code, _, err = run("--database-url", target, "import", str(path))
    assert code == 1 and "sessions[0].checkpoints[0].header.user_id" in err, err
    assert not (tmp_path / "target.db").exists()  # refused before the store was opened
