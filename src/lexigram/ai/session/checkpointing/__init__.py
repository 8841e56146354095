"""Checkpoints (cheap snapshots of a session) and ``StateDiff``."""

from lexigram.ai.session.checkpointing.checkpoint_manager import (
    CheckpointManager,
    new_checkpoint_id,
)
from lexigram.ai.session.checkpointing.diff import StateDiff

__all__ = ["CheckpointManager", "StateDiff", "new_checkpoint_id"]
