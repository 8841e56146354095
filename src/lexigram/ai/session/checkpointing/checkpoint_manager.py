"""``CheckpointManager``: create, list, restore, delete and prune checkpoints.

The class is defined in :mod:`lexigram.ai.session.manager.checkpoints` (the session
manager checkpoints through it, and the manager layer never imports a feature
package); this module keeps the public import path.
"""

from __future__ import annotations

from lexigram.ai.session.manager.checkpoints import CheckpointManager, new_checkpoint_id

__all__ = ["CheckpointManager", "new_checkpoint_id"]
