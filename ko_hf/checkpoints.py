"""ko-hf 0.2's and 0.3's path of :mod:`ko_hf.run.checkpoints` (which checkpoint a run resumes, and is it whole),
kept for their imports.
"""

from .run.checkpoints import (
    RESTARTED,
    RNG_STATE_NAME,
    STATE_FILES,
    CheckpointError,
    CheckpointReport,
    checkpoint_param_groups,
    find_resume_checkpoint,
    inspect_checkpoint,
    restarted_parts,
    verify_checkpoint,
)

__all__ = [
    "CheckpointError",
    "CheckpointReport",
    "STATE_FILES",
    "checkpoint_param_groups",
    "find_resume_checkpoint",
    "inspect_checkpoint",
    "verify_checkpoint",
    "RESTARTED",
    "RNG_STATE_NAME",
    "restarted_parts",
]
