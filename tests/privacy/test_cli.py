"""Keys, erasure and export through ``python -m lexigram.ai.session.cli``, one process per step.

Write under key A (process 1); rotate to B (process 2, keys "B,A"); read with "B,A"
and retire A (process 3 is refused before the rotation, allowed after); read with
key B alone. Then export-user / import, and erase-user.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lexigram.ai.session.encryption.keyring import new_key_text
from tests.services import POSTGRES_URL, REDIS_URL, require_postgres, require_redis

WRITE = """
import asyncio, sys
from lexigram.ai.session.cli.operations import build_config, open_store
from lexigram.ai.session.manager.core import SessionManagerImpl

async def main(user, secret):
    config = build_config(**TARGET)
    async with open_store(config) as store:
        assert type(store).__name__ == "EncryptedSessionStore", store
        manager = SessionManagerImpl(store, config)
        ids = []
        for n in range(3):
            state = await manager.create(user, {"note": secret + "-meta"},
                                         variables={"v": secret + "-var"})
            await manager.add_message(state.session_id, "user", secret + "-content",
                                      tool_calls=[{"name": "f", "arguments": {"a": secret}}])
            await manager.checkpoint(state.session_id)
            ids.append(state.session_id)
        print(",".join(ids))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""

READ = """
import asyncio, sys
from lexigram.ai.session.cli.operations import build_config, open_store

async def main(ids):
    config = build_config(**TARGET)
    async with open_store(config) as store:
        for sid in ids.split(","):
            state = await store.load(sid)
            print(state.turns[0].content, state.variables["v"], state.metadata["note"])

asyncio.run(main(sys.argv[1]))
"""


class Target:
    """One durable backend: CLI options, the same as build_config() keywords."""

    def __init__(self, name: str, tmp: Path) -> None:
        self.name = name
        tag = uuid.uuid4().hex[:10]
        if name == "sqlite":
            self.options = {"database_url": f"sqlite+aiosqlite:///{tmp / 'sessions.db'}"}
        elif name == "postgres":
            require_postgres()
            self.options = {"database_url": POSTGRES_URL, "table_prefix": f"k{tag}_"}
        else:
            require_redis()
            self.options = {"redis_url": REDIS_URL, "key_prefix": f"lxkeys:{tag}"}

    def args(self) -> list[str]:
        """The global CLI options."""
        out: list[str] = []
        for key, value in self.options.items():
            out += ["--" + key.replace("_", "-"), value]
        return out

    def script(self, body: str) -> str:
        """``body`` with ``TARGET`` bound to this backend."""
        return f"TARGET = {self.options!r}\n" + body


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    made = Target(request.param, tmp_path)
    yield made
    if made.name == "postgres":
        subprocess.run(
            [sys.executable, "-c", "import asyncio; from lexigram.ai.session.stores.database "
             "import drop_schema; asyncio.run(drop_schema("
             f"{POSTGRES_URL!r}, table_prefix={made.options['table_prefix']!r}))"],
            check=True, timeout=60,
        )
    elif made.name == "redis":
        subprocess.run(
            [sys.executable, "-c", "import redis; r = redis.Redis.from_url("
             f"{REDIS_URL!r}); [r.unlink(k) for k in "
             f"r.scan_iter(match={made.options['key_prefix'] + ':*'!r})]"],
            check=True, timeout=60,
        )


def run(keys: str, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """One process with ``encryption_keys`` from the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEX_AI_SESSION__")}
    env["LEX_AI_SESSION__ENCRYPTION_KEYS"] = keys
    return subprocess.run(
        [sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )


def cli(target: Target, keys: str, *argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m lexigram.ai.session.cli [global options] argv...``."""
    return run(keys, "-m", "lexigram.ai.session.cli", *target.args(), *argv, cwd=cwd)


@pytest.mark.slow
def test_rotation_across_processes(target: Target, tmp_path: Path) -> None:
    key_a, key_b = new_key_text("A"), new_key_text("B")
    secret = f"SECRET{uuid.uuid4().hex[:8]}"
    written = run(key_a, "-c", target.script(WRITE), "ana", secret, cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    ids = written.stdout.strip().splitlines()[-1]

    refused = cli(target, f"{key_b},{key_a}", "keys", "retire", "A", cwd=tmp_path)
    assert refused.returncode == 1 and "still wraps" in refused.stderr
    alone = run(key_b, "-c", target.script(READ), ids, cwd=tmp_path)
    assert alone.returncode != 0 and "'A'" in alone.stderr  # key A is needed, by name

    rotated = cli(target, f"{key_b},{key_a}", "keys", "rotate", "--batch", "2", cwd=tmp_path)
    assert rotated.returncode == 0, rotated.stderr
    assert "re-wrapped" in rotated.stdout and "batch 1:" in rotated.stderr
    assert key_a.split(":")[1] not in rotated.stdout + rotated.stderr  # keys never printed

    both = run(f"{key_b},{key_a}", "-c", target.script(READ), ids, cwd=tmp_path)
    assert both.returncode == 0, both.stderr
    retired = cli(target, f"{key_b},{key_a}", "keys", "retire", "A", cwd=tmp_path)
    assert retired.returncode == 0, retired.stderr
    assert "remove it from encryption_keys" in retired.stdout
    status = cli(target, key_b, "keys", "status", cwd=tmp_path)
    assert status.returncode == 0 and status.stdout.startswith("B: ")

    after = run(key_b, "-c", target.script(READ), ids, cwd=tmp_path)  # A is gone
    assert after.returncode == 0, after.stderr
    lines = after.stdout.strip().splitlines()[-3:]
    assert lines == [f"{secret}-content {secret}-var {secret}-meta"] * 3


@pytest.mark.slow
def test_export_user_imports_and_erase_user_removes(target: Target, tmp_path: Path) -> None:
    key = new_key_text("K")
    secret = f"SECRET{uuid.uuid4().hex[:8]}"
    written = run(key, "-c", target.script(WRITE), "bruno", secret, cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    ids = written.stdout.strip().splitlines()[-1].split(",")

    exported = cli(target, key, "export-user", "bruno", "-o", str(tmp_path / "b.json"),
                   cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    document = json.loads((tmp_path / "b.json").read_text())
    assert {s["header"]["session_id"] for s in document["sessions"]} == set(ids)
    assert all(s["turns"][0]["content"] == f"{secret}-content" for s in document["sessions"])
    assert all(len(s["checkpoints"]) == 1 for s in document["sessions"])

    erased = cli(target, key, "erase-user", "bruno", "--json", cwd=tmp_path)
    assert erased.returncode == 0, erased.stderr
    report = json.loads(erased.stdout)
    assert sorted(report["sessions"]) == sorted(ids) and report["checkpoints"] == 3
    assert report["complete"] is True

    listed = cli(target, key, "list", "bruno", "--json", cwd=tmp_path)
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    imported = cli(target, key, "import", str(tmp_path / "b.json"), cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    back = run(key, "-c", target.script(READ), ",".join(ids), cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert back.stdout.strip().splitlines()[-3:] == [
        f"{secret}-content {secret}-var {secret}-meta"
    ] * 3


PLAIN = """
import asyncio, sys
from lexigram.ai.session.cli.operations import build_config, open_store
from lexigram.ai.session.manager.core import SessionManagerImpl

async def main(user):
    config = build_config(**TARGET)
    async with open_store(config) as store:
        state = await SessionManagerImpl(store, config).create(user)
        await SessionManagerImpl(store, config).add_message(state.session_id, "user", "hi")
        print(state.session_id)

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("keys", ["", "OTHER"])
def test_export_without_the_key_writes_the_readable_sessions_and_names_the_rest(
    target: Target, tmp_path: Path, keys: str
) -> None:
    # Before: both commands wrote nothing (exit 1, "cannot decrypt") when one of the
    # user's sessions was sealed under a key the process lacks; the docs promise the
    # healthy sessions, with the sealed ones named on stderr.
    key = new_key_text("K")
    written = run(key, "-c", target.script(WRITE), "cleo", "SECRETX", cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    sealed = written.stdout.strip().splitlines()[-1].split(",")
    made = run("", "-c", target.script(PLAIN), "cleo", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    plain = made.stdout.strip().splitlines()[-1]
    process_keys = new_key_text("OTHER") if keys else ""
    for argv in (["export", "--user", "cleo"], ["export-user", "cleo"]):
        result = cli(target, process_keys, *argv, cwd=tmp_path)
        assert result.returncode == 1, (argv, result.stderr)
        document = json.loads(result.stdout)
        assert [s["header"]["session_id"] for s in document["sessions"]] == [plain], argv
        assert "SECRETX" not in result.stdout
        for session_id in sealed:
            assert session_id in result.stderr and "key 'K'" in result.stderr, argv
