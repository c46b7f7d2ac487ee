"""ko-hf 0.2's and 0.3's path of :mod:`ko_hf.run.preflight` (a run's checks that need no heavy import), kept for
their imports.
"""

from .run.preflight import (
    RUN_DEFAULTS,
    FinetuneError,
    check_model_folder_kept,
    check_output_dir,
    check_run_settings,
    is_known_model_name,
    is_main_process,
    load_config_file,
    merge_settings,
    parse_set_values,
    resume_request,
    truthy,
)

__all__ = [
    "RUN_DEFAULTS",
    "FinetuneError",
    "check_output_dir",
    "check_run_settings",
    "is_known_model_name",
    "is_main_process",
    "load_config_file",
    "merge_settings",
    "parse_set_values",
    "resume_request",
    "truthy",
    "check_model_folder_kept",
]
