"""ko-hf 0.3's path of :mod:`ko_hf.run.record` (what defined a run; a resume keeps it), kept for its imports."""

from .run.record import (
    EXTEND_KEYS,
    RECORD_NAME,
    TRAINING_KEYS,
    checkpoint_run_record,
    extension_problem,
    plain_value,
    read_run_record,
    record_folder,
    setting_differences,
    with_checkpoint_run,
    without_unknown_recorded,
    write_run_record,
)

__all__ = [
    "EXTEND_KEYS",
    "RECORD_NAME",
    "TRAINING_KEYS",
    "checkpoint_run_record",
    "extension_problem",
    "plain_value",
    "read_run_record",
    "record_folder",
    "setting_differences",
    "with_checkpoint_run",
    "without_unknown_recorded",
    "write_run_record",
]
