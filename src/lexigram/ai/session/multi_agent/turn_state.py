"""The group's turn-taking state, stored in the metadata of every turn it records.

Each turn a group run appends carries ``metadata["group"]``: the run id, the round
and step of the turn, who spoke it, who speaks next, the roster, who has spoken so
far, the round budget and whether the run is still going. It travels in the same
atomic append as the turn, so the newest turn of the session always tells where the
run stands and a resume reads only that turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from lexigram.contracts.ai.session import SessionTurn

from lexigram.ai.session.exceptions import SessionValidationError
from lexigram.ai.session.multi_agent._checks import require_int

__all__ = ["GROUP_KEY", "RunStatus", "GroupTurnState"]

GROUP_KEY = "group"
"""Key of the turn-taking state in a turn's metadata."""

RunStatus = Literal["running", "finished", "failed"]
_STATUSES: tuple[str, ...] = ("running", "finished", "failed")
_VERSION = 1


@dataclass(frozen=True, slots=True)
class GroupTurnState:
    """Where a group run stands after the turn that carries this state.

    ``round`` is 0 for the opening message and 1, 2, ... for agent turns; ``step`` is
    the turn's index within its round. ``next_speaker`` is None once the run has
    ended (``status`` ``finished`` or ``failed``, with ``reason``).
    """

    run_id: str
    round: int
    step: int
    speaker: str | None
    next_speaker: str | None
    roster: tuple[str, ...]
    spoken: tuple[str, ...]
    max_rounds: int
    status: RunStatus = "running"
    reason: str | None = None

    @property
    def running(self) -> bool:
        """Whether the run can go on (a resume continues it)."""
        return self.status == "running" and self.next_speaker is not None

    def next_position(self, roster_size: int) -> tuple[int, int]:
        """Round and step of the turn after this one in a group of ``roster_size`` agents."""
        if self.round == 0 or self.step + 1 >= max(roster_size, 1):
            return self.round + 1, 0
        return self.round, self.step + 1

    def to_metadata(self) -> dict[str, Any]:
        """The JSON-ready form stored under ``metadata["group"]``."""
        return {
            "v": _VERSION,
            "run": self.run_id,
            "round": self.round,
            "step": self.step,
            "speaker": self.speaker,
            "next": self.next_speaker,
            "roster": list(self.roster),
            "spoken": list(self.spoken),
            "max_rounds": self.max_rounds,
            "status": self.status,
            "reason": self.reason,
        }

    @classmethod
    def from_turn(cls, turn: SessionTurn) -> GroupTurnState | None:
        """The state a turn carries; None for a turn no group run recorded.

        A present but malformed state raises ``SessionValidationError`` naming the field.
        """
        data = (turn.metadata or {}).get(GROUP_KEY)
        if data is None:
            return None
        return cls.from_metadata(data)

    @classmethod
    def from_metadata(cls, data: Any) -> GroupTurnState:
        """Decode the stored form (see :meth:`to_metadata`)."""
        where = f"turn.metadata.{GROUP_KEY}"
        if not isinstance(data, dict):
            raise SessionValidationError(where, f"expected a dict, got {type(data).__name__}")
        status = data.get("status")
        if status not in _STATUSES:
            raise SessionValidationError(
                f"{where}.status", f"expected one of {list(_STATUSES)}, got {status!r}"
            )
        return cls(
            run_id=_str(data, "run", where),
            round=_int(data, "round", where, 0),
            step=_int(data, "step", where, 0),
            speaker=_opt_str(data, "speaker", where),
            next_speaker=_opt_str(data, "next", where),
            roster=_names(data, "roster", where),
            spoken=_names(data, "spoken", where),
            max_rounds=_int(data, "max_rounds", where, 1),
            status=status,
            reason=_opt_str(data, "reason", where),
        )


def _str(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise SessionValidationError(f"{where}.{key}", f"must be a non-empty string, got {value!r}")
    return value


def _opt_str(data: dict[str, Any], key: str, where: str) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise SessionValidationError(f"{where}.{key}", f"expected a string or null, got {value!r}")
    return value


def _int(data: dict[str, Any], key: str, where: str, minimum: int) -> int:
    value = data.get(key)
    return require_int(f"{where}.{key}", value, minimum)


def _names(data: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = data.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SessionValidationError(f"{where}.{key}", f"expected a list of names, got {value!r}")
    return tuple(value)
