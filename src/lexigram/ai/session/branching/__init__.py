"""Timeline branching: fork a session, merge a branch back."""

from lexigram.ai.session.branching.branch_manager import BranchManager
from lexigram.ai.session.branching.merge import (
    AppendMerge,
    MergePlan,
    MergeStrategy,
    SelectiveMerge,
)

__all__ = ["AppendMerge", "BranchManager", "MergePlan", "MergeStrategy", "SelectiveMerge"]
