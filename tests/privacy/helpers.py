"""Sessions full of recognisable private values, for the raw scans."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from lexigram.contracts.ai.session import SessionState, SessionStatus, SessionTurn

from lexigram.ai.session.encryption.keyring import Keyring, new_key_text, parse_keys
from lexigram.ai.session.stores.base import SessionPatch, SessionStore
from lexigram.ai.session.testing import make_turn

from ..stores.backends import all_specs

#: Every backend of the conformance suite without encryption (the tests here put an
#: ``EncryptedSessionStore`` over each), on its real server.
PLAIN = [
    pytest.param(spec, id=spec.name, marks=spec.marks)
    for spec in all_specs()
    if not spec.name.endswith("+enc")
]


def header(session_id: str, user_id: str = "ivy", **fields: Any) -> SessionState:
    """A new ACTIVE session header, now, with no turns."""
    now = datetime.now(UTC)
    return SessionState(
        session_id=session_id,
        user_id=user_id,
        status=SessionStatus.ACTIVE,
        created_at=now,
        updated_at=now,
        **fields,
    )


def keyring(*ids: str) -> Keyring:
    """A keyring of fresh random keys named ``ids`` (newest first)."""
    return Keyring(parse_keys(",".join(new_key_text(i) for i in ids)))


@dataclass
class Secrets:
    """The private values written into one session (each unique to the test)."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    def value(self, what: str) -> str:
        """A marker that appears nowhere else."""
        return f"SECRET{what}{self.tag}"

    def all(self) -> list[str]:
        """Every marker written by :func:`fill_session`."""
        return [
            self.value(w)
            for w in ("CONTENT", "TOOLARG", "SKILL", "TURNMETA", "META", "VAR", "PROMPT",
                      "PATCHVAR", "CPMETA", "BRANCHVAR")
        ]


async def fill_session(store: SessionStore, user_id: str, secrets: Secrets) -> str:
    """A session of ``user_id`` holding every marker: header, turns, patch, checkpoint, fork."""
    now = datetime.now(UTC)
    session_id = f"s-{secrets.tag}-{uuid.uuid4().hex[:6]}"
    state = SessionState(
        session_id=session_id,
        user_id=user_id,
        status=SessionStatus.ACTIVE,
        metadata={"address": secrets.value("META")},
        variables={"name": secrets.value("VAR")},
        system_prompt=secrets.value("PROMPT"),
        created_at=now,
        updated_at=now,
    )
    await store.create_session(state)
    turn = SessionTurn(
        turn_id="t1",
        role="user",
        content=secrets.value("CONTENT"),
        timestamp=now,
        tool_calls=[{"name": "lookup", "arguments": {"ssn": secrets.value("TOOLARG")}}],
        skill_results=[{"skill": "s", "output": secrets.value("SKILL")}],
        metadata={"note": secrets.value("TURNMETA")},
        tokens_used=5,
        cost=0.01,
    )
    await store.append_turns(session_id, [turn])
    await store.update_session(session_id, SessionPatch(variables={"p": secrets.value("PATCHVAR")}))
    await store.create_checkpoint(
        session_id, checkpoint_id=f"cp-{session_id}", metadata={"label": secrets.value("CPMETA")}
    )
    branch = SessionState(
        session_id=f"{session_id}-b",
        user_id=user_id,
        status=SessionStatus.ACTIVE,
        variables={"b": secrets.value("BRANCHVAR")},
        parent_session_id=session_id,
        branch_name="alt",
        created_at=now,
        updated_at=now,
    )
    await store.fork_session(session_id, branch)
    await store.update_session(
        f"{session_id}-b", SessionPatch(variables={"b": secrets.value("BRANCHVAR")})
    )
    return session_id


def mixed_turn(n: int, prefix: str = "t") -> SessionTurn:
    """Every third turn carries a tool call and metadata (a JSON body), the rest are text."""
    if n % 3:
        return make_turn(n, turn_id=f"{prefix}{n}", content=f"text {n}")
    return make_turn(
        n,
        turn_id=f"{prefix}{n}",
        content=f"call {n}",
        tool_calls=[{"name": "f", "arguments": {"n": n}}],
        metadata={"k": n},
    )
