"""ko-hf 0.2's and 0.3's path of :mod:`ko_hf.run.folder` (a run's output folder: its lock, its results), kept for
their imports.
"""

from .run.folder import (
    LOCK_NAME,
    RESULT_FILES,
    RUN_TRACES,
    OutputWriteError,
    RunFolderLock,
    claim_run_folder,
    clear_run_results,
    lock_run_folder,
    run_results,
    write_json_atomic,
    write_text_atomic,
    writing_into,
)

__all__ = [
    "LOCK_NAME",
    "RESULT_FILES",
    "RunFolderLock",
    "claim_run_folder",
    "clear_run_results",
    "lock_run_folder",
    "run_results",
    "RUN_TRACES",
    "OutputWriteError",
    "write_json_atomic",
    "write_text_atomic",
    "writing_into",
]
