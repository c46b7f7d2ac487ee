"""A run's life around its training: its settings, checked before it starts, its model loaded and checked, its
output folder, what defined it, its checkpoints and their resume, its progress.

* :mod:`~ko_hf.run.preflight`: the checks of a run's settings that need no heavy import (``ko-finetune`` runs them
  before torch is imported), ``RUN_DEFAULTS``, ``--set`` pairs and YAML files, :class:`FinetuneError`;
* :mod:`~ko_hf.run.folder`: the output folder: an OS lock for the run's life, another run's results refused,
  files written whole;
* :mod:`~ko_hf.run.record`: ``ko_run.json``, the settings that defined the run, which a resume keeps;
* :mod:`~ko_hf.run.checkpoints`: which checkpoint a run resumes from, and whether it is whole;
* :mod:`~ko_hf.run.config`: :class:`FinetuneOptions` and :func:`parse_config`, a flat mapping made into the run's
  two dataclasses (values typed, a resumed run's settings filled in, this machine's needs added);
* :mod:`~ko_hf.run.model`: the model's config, tokenizer and weights loaded (local folder, Hub or its cache) and
  checked before training;
* :mod:`~ko_hf.run.resume`: the checkpoint a run resumes from, and its settings checked against that run's record;
* :mod:`~ko_hf.run.progress`: the step timer and the progress lines of a training run.

``import ko_hf.run`` and its ``preflight``, ``folder`` and ``record`` modules import neither torch nor
transformers (the other modules do); every public name here loads on first use.
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
    **{name: "config" for name in (
        "FinetuneOptions", "check_run_numbers", "config_keys", "parse_config", "typed_config",
        "with_saved_collision_settings",
    )},
    **{name: "model" for name in (
        "check_finite_weights", "check_max_length", "check_mismatched_weights", "check_sequence_classification",
        "load_model_config", "load_tokenizer",
    )},
    **{name: "resume" for name in ("check_resumed_settings", "resolve_resume", "run_settings")},
    **{name: "progress" for name in ("StepProgressCallback", "StepTimerCallback")},
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
__all__ = list(_LAZY)
