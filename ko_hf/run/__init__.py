"""A run's life around its training: checked before it starts, its output folder, what defined it, its checkpoints.

* :mod:`~ko_hf.run.preflight`: the checks of a run's settings that need no heavy import (``ko-finetune`` runs them
  before torch is imported), ``RUN_DEFAULTS``, ``--set`` pairs and YAML files, :class:`FinetuneError`;
* :mod:`~ko_hf.run.folder`: the output folder: an OS lock for the run's life, another run's results refused,
  files written whole;
* :mod:`~ko_hf.run.record`: ``ko_run.json``, the settings that defined the run, which a resume keeps;
* :mod:`~ko_hf.run.checkpoints`: which checkpoint a run resumes from, and whether it is whole.

``import ko_hf.run`` and its ``preflight``, ``folder`` and ``record`` modules import neither torch nor
transformers; every public name here loads on first use.
"""

from .._lazy import lazy_exports

_LAZY = {
    **{name: "preflight" for name in (
        "RUN_DEFAULTS", "FinetuneError", "check_run_settings", "load_config_file", "merge_settings",
        "parse_set_values",
    )},
    **{name: "folder" for name in (
        "OutputWriteError", "RunFolderLock", "claim_run_folder", "clear_run_results", "lock_run_folder",
    )},
    **{name: "record" for name in ("read_run_record", "with_checkpoint_run", "write_run_record")},
    **{name: "checkpoints" for name in (
        "CheckpointError", "CheckpointReport", "find_resume_checkpoint", "inspect_checkpoint", "verify_checkpoint",
    )},
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
__all__ = list(_LAZY)
