"""The SQL and Redis stores behave exactly like the reference ``InMemorySessionStore``.

A seeded random sequence of store operations (ids drawn from small pools so that
duplicates, missing sessions, closed sessions, caps and expiries all happen) runs on
both stores with the same clock; every result, or the type and message of every
error, must be the same.

On Redis every session keeps one owner: a whole-state ``save`` that hands a session to
another user lists it as that user's newest there (per-user ordinals, one hash slot
per user), where SQL and the in-memory store keep its place by creation order
(``docs/backend-redis.md``).
"""

from __future__ import annotations

import os
import random
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.encryption.keyring import Keyring, new_key_text, parse_keys
from lexigram.ai.session.stores.base import SessionPatch, SessionStore
from lexigram.ai.session.stores.cache import CacheSessionStore
from lexigram.ai.session.stores.database import DatabaseSessionStore, drop_schema
from lexigram.ai.session.stores.encrypted.store import EncryptedSessionStore
from lexigram.ai.session.stores.in_memory import InMemorySessionStore
from lexigram.ai.session.stores.sql.runner import SqliteRunner
from tests.services import (
    MARIADB_URL,
    POSTGRES_URL,
    REDIS_URL,
    require_mariadb,
    require_postgres,
    require_redis,
)
from tests.stores.backends.redis import drop_prefix

T0 = datetime(2026, 1, 1, tzinfo=UTC)
_S = list(SessionStatus)


class Clock:
    """A clock both stores share."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _norm(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _norm(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_norm(v) for v in value]
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


async def _outcome(call: Callable[[SessionStore], Any], store: SessionStore) -> Any:
    try:
        return ("ok", _norm(await call(store)))
    except Exception as exc:
        return ("error", type(exc).__name__, str(exc))


class Script:
    """Random operations over small pools of ids."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.turn_no = 0

    def sid(self) -> str:
        return f"s{self.rng.randrange(6)}"

    def cid(self) -> str:
        return f"c{self.rng.randrange(8)}"

    def turn(self) -> SessionTurn:
        self.turn_no += 1
        return SessionTurn(
            turn_id=f"t{self.rng.randrange(12)}",
            role=self.rng.choice(["user", "assistant"]),
            content=f"message {self.turn_no}",
            timestamp=T0 + timedelta(seconds=self.turn_no),
            tokens_used=self.rng.randrange(5),
            cost=self.rng.choice([0.0, 0.1, 0.25, 1.5]),
            metadata={"n": self.turn_no} if self.rng.random() < 0.3 else {},
        )

    def state(self, sid: str) -> SessionState:
        return SessionState(
            session_id=sid,
            user_id=self.rng.choice(["alice", "bob"]),
            status=SessionStatus.ACTIVE,
            created_at=T0,
            updated_at=T0,
            variables={"v": self.rng.randrange(3)},
        )

    def patch(self) -> SessionPatch:
        rng = self.rng
        return SessionPatch(
            variables={"p": rng.randrange(3)} if rng.random() < 0.5 else None,
            metadata={"m": 1} if rng.random() < 0.3 else None,
            active_tools=["x"] if rng.random() < 0.3 else None,
            system_prompt="hi" if rng.random() < 0.3 else None,
            clear_system_prompt=rng.random() < 0.1,
        )

    def operation(self, clock: Clock) -> tuple[str, Callable[[SessionStore], Any]]:
        rng = self.rng
        kind = rng.choice(
            ["create", "append", "append", "append", "update", "transition", "pop", "clear",
             "checkpoint", "restore", "delete_cp", "fork", "page", "count", "turns", "load",
             "record", "expire", "purge", "delete", "tick", "save", "list", "branches"]
        )
        sid = self.sid()
        if kind == "create":
            state, cap = self.state(sid), rng.choice([None, 2, 3])
            return kind, lambda s: s.create_session(state, max_live_per_user=cap)
        if kind == "append":
            batch = [self.turn() for _ in range(rng.choice([1, 1, 2, 3]))]
            cap = rng.choice([None, None, 8])
            patch = self.patch() if rng.random() < 0.2 else None
            return kind, lambda s: s.append_turns(sid, batch, max_turns=cap, patch=patch)
        if kind == "update":
            patch = self.patch()
            return kind, lambda s: s.update_session(sid, patch)
        if kind == "transition":
            to = rng.choice(_S)
            allowed = frozenset(rng.sample(_S, rng.randrange(1, 4)))
            return kind, lambda s: s.transition(sid, to, allowed_from=allowed)
        if kind == "pop":
            return kind, lambda s: s.pop_turn(sid)
        if kind == "clear":
            return kind, lambda s: s.clear_turns(sid)
        if kind == "checkpoint":
            cid, keep, full = self.cid(), rng.choice([None, 2]), rng.random() < 0.5
            return kind, lambda s: s.create_checkpoint(
                sid, checkpoint_id=cid, max_checkpoints=keep, include_turns=full,
                metadata={"k": 1},
            )
        if kind == "restore":
            cid = self.cid()
            return kind, lambda s: s.restore_checkpoint(cid)
        if kind == "delete_cp":
            cid = self.cid()
            return kind, lambda s: s.delete_checkpoint(cid)
        if kind == "fork":
            branch = SessionState(
                session_id=self.sid(), user_id="alice", status=SessionStatus.ACTIVE,
                created_at=T0, updated_at=T0, parent_session_id=sid, branch_name="b",
            )
            cp = self.cid() if rng.random() < 0.4 else None
            limits = rng.choice([None, 1, 2]), rng.choice([None, 3])
            return kind, lambda s: s.fork_session(
                sid, branch, from_checkpoint=cp, max_branches=limits[0],
                max_live_per_user=limits[1],
            )
        if kind == "page":
            user, status = rng.choice(["alice", "bob"]), rng.choice([None, *_S])

            async def pages(s: SessionStore) -> list[Any]:
                out, cursor = [], None
                for _ in range(10):
                    page = await s.list_user_sessions(user, status=status, limit=2, cursor=cursor)
                    out.append(page.items)
                    cursor = page.next_cursor
                    if cursor is None:
                        break
                return out

            return kind, pages
        if kind == "count":
            user = rng.choice(["alice", "bob"])
            return kind, lambda s: s.count_live_sessions(user)
        if kind == "turns":
            last, after, limit = rng.choice([None, 0, 2, 50]), rng.choice([None, 2]), None
            if last is None and rng.random() < 0.5:
                limit = rng.choice([0, 1, 3])

            async def turns(s: SessionStore) -> Any:
                if last is None:
                    return await s.get_turn_seqs(sid, after_seq=after, limit=limit)
                return await s.get_turns(sid, last=last)

            return kind, turns
        if kind == "load":
            return kind, lambda s: s.load(sid)
        if kind == "record":
            return kind, lambda s: s.load_record(sid)
        if kind == "expire":
            return kind, lambda s: s.mark_expired(sid)
        if kind == "purge":
            until = clock.now + timedelta(seconds=rng.choice([0, 100]))
            return kind, lambda s: s.purge(sid, tombstone_until=until)
        if kind == "delete":
            return kind, lambda s: s.delete(sid)
        if kind == "save":
            state = self.state(sid)
            turns = [self.turn() for _ in range(rng.randrange(3))]
            full = SessionState(**{**state.__dict__, "turns": turns, "turn_count": len(turns)})
            return kind, lambda s: s.save(full)
        if kind == "list":
            user = rng.choice(["alice", "bob"])
            return kind, lambda s: s.list_sessions(user)
        if kind == "branches":
            return kind, lambda s: s.list_branches(sid)

        async def tick(_s: SessionStore) -> None:
            return None

        return kind, tick


class OneOwnerScript(Script):
    """:class:`Script` where each session id always belongs to the same user."""

    def state(self, sid: str) -> SessionState:
        state = super().state(sid)
        return SessionState(**{**state.__dict__, "user_id": "alice"})


SEEDS = [int(s) for s in os.environ.get("PARITY_SEEDS", "1,2,3,4,5,6,7,8,9,10").split(",")]


@pytest.mark.parametrize(
    "backend",
    ["sqlite", "sqlite-public-api", "postgres", "mariadb", "redis", "sqlite+enc", "redis+enc"],
)
@pytest.mark.parametrize("seed", SEEDS)
async def test_same_results_and_errors_as_the_in_memory_store(
    seed: int, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend == "sqlite-public-api":  # aiosqlite without the one-hop shortcut
        monkeypatch.setattr(SqliteRunner, "one_hop", False)
    clock = Clock()
    memory = InMemorySessionStore(session_ttl=50, clock=clock)
    prefix = f"p{uuid.uuid4().hex[:12]}_"
    with tempfile.TemporaryDirectory(prefix="lexi-parity-") as tmp:
        if backend == "postgres":
            require_postgres()
            url = POSTGRES_URL
        elif backend == "mariadb":
            require_mariadb()
            url = MARIADB_URL
        else:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'p.db'}"
        inner: SessionStore
        if backend.startswith("redis"):
            require_redis()
            inner = CacheSessionStore(
                REDIS_URL, key_prefix=f"lxtest:{prefix}", session_ttl=50, clock=clock
            )
        else:
            inner = DatabaseSessionStore(url, table_prefix=prefix, session_ttl=50, clock=clock)
        sql: SessionStore = inner
        if backend.endswith("+enc"):  # encryption at rest on: the same answers
            sql = EncryptedSessionStore(inner, Keyring(parse_keys(new_key_text("parity"))))
        await sql.initialize()
        script = OneOwnerScript(seed) if backend.startswith("redis") else Script(seed)
        try:
            for step in range(300):
                kind, call = script.operation(clock)
                if kind == "tick":
                    clock.now += timedelta(seconds=script.rng.choice([1, 10, 30]))
                    continue
                if kind in ("expire",):
                    found = sorted(await memory.find_expired()), sorted(await sql.find_expired())
                    assert found[0] == found[1], f"step {step}: find_expired"
                expected = await _outcome(call, memory)
                got = await _outcome(call, sql)
                assert got == expected, f"step {step} ({kind}): {got} != {expected}"
                clock.now += timedelta(milliseconds=1)
            older = clock.now + timedelta(days=1)
            assert sorted(await memory.find_purgeable(older_than=older)) == sorted(
                await sql.find_purgeable(older_than=older)
            )
        finally:
            if isinstance(inner, CacheSessionStore):
                await drop_prefix(inner.client, inner.keys.pattern)
            await sql.close()
            if backend in ("postgres", "mariadb"):
                await drop_schema(url, table_prefix=prefix)
