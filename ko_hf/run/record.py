"""What defined a run, recorded in its output folder, so that a resumed run continues the same experiment.

A run writes :data:`RECORD_NAME` (``ko_run.json``) into its output folder when it starts, after every check has
passed: the values of the settings that define its experiment -- the data (data set, columns, subset sizes,
validation carve-out), the model, the training length (``max_steps``, ``num_train_epochs``), batch size and gradient
accumulation, the optimizer and its LR schedule (warm-up included), the seeds, the logging / evaluation / save
intervals and the KO settings. A checkpoint belongs to the run of the folder it lies in.

Resuming from it:

* :func:`with_checkpoint_run` fills every such setting that a command line or a config mapping does not give
  with the checkpoint's run's value (``ko-finetune MODEL --dataset D -o out --resume-from-checkpoint last`` continues
  a run started with many more flags);
* :func:`setting_differences` lists the settings given with another value than the checkpoint's run had, which
  :func:`ko_hf.finetune.prepare_finetune` refuses, naming each with both values. ``extend_run`` allows one thing on
  purpose: a larger ``max_steps`` or ``num_train_epochs``, to train a (finished) run further.

Standard library only (and :mod:`ko_hf.settings`): the command line reads it before importing torch.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from .preflight import FinetuneError, resume_request
from ..redaction import redact_value
from .folder import RECORD_NAME, write_json_atomic

__all__ = ["EXTEND_KEYS", "RECORD_NAME", "TRAINING_KEYS", "checkpoint_run_record", "extension_problem",
           "plain_value", "read_run_record", "record_folder", "setting_differences", "with_checkpoint_run",
           "without_unknown_recorded", "write_run_record"]

#: The ``TrainingArguments`` fields that define a run's experiment (the data and KO settings come besides).
TRAINING_KEYS = ("max_steps", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps",
                 "learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps", "weight_decay", "optim",
                 "optim_args", "adam_beta1", "adam_beta2", "adam_epsilon", "max_grad_norm", "label_smoothing_factor",
                 "seed", "data_seed", "logging_strategy", "logging_steps", "eval_strategy", "eval_steps",
                 "save_strategy", "save_steps")
#: The settings ``extend_run`` lets a resumed run raise.
EXTEND_KEYS = ("max_steps", "num_train_epochs")
#: Settings whose value may name a local file or folder: compared (and recorded) as absolute paths.
_LOCATION_KEYS = ("model_name_or_path", "tokenizer_name", "dataset")
_FORMAT = 1


def plain_value(value: Any) -> Any:
    """``value`` as JSON holds it: an enum as its value, a tuple as a list, a path as text."""
    if isinstance(value, Enum):
        return plain_value(value.value)
    if isinstance(value, (list, tuple)):
        return [plain_value(item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): plain_value(v) for k, v in value.items()}
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return str(value)


def _location(value: Any) -> Any:
    """A local path (also the ``/path`` of ``name=/path``) made absolute; anything else (a Hub id, a recipe name)
    as it is."""
    if not isinstance(value, str) or not value:
        return value
    name, sep, path = value.partition("=")
    if sep and name and Path(path).expanduser().exists():
        return f"{name}={Path(path).expanduser().resolve()}"
    if Path(value).expanduser().exists():
        return str(Path(value).expanduser().resolve())
    return value


def _normalized(key: str, value: Any) -> Any:
    value = plain_value(value)
    return _location(value) if key in _LOCATION_KEYS else value


def record_folder(output_dir: str | os.PathLike | None, request: str | bool | None) -> Path | None:
    """The folder whose run a resume continues: ``output_dir`` for ``last``, the folder a named checkpoint lies in."""
    if request is None or request is False:
        return None
    if request is True:
        return Path(output_dir).expanduser() if output_dir else None
    return Path(request).expanduser().parent


def read_run_record(folder: str | os.PathLike | None) -> dict[str, Any] | None:
    """The recorded settings of the run in ``folder`` (None when it has no record: no run, or one of ko-hf 0.1);
    :class:`FinetuneError` for a record that cannot be read."""
    if folder is None:
        return None
    path = Path(folder) / RECORD_NAME
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise FinetuneError(f"cannot read {path}, the record of the run to resume ({err}); restore it, or start "
                            "the run again (--overwrite-output-dir)") from None
    settings = content.get("settings") if isinstance(content, dict) else None
    if not isinstance(settings, dict):
        raise FinetuneError(f"{path} is not a record of a run's settings; restore it, or start the run again "
                            "(--overwrite-output-dir)")
    return settings


def checkpoint_run_record(checkpoint: str | os.PathLike) -> dict[str, Any] | None:
    """The recorded settings of the run a checkpoint belongs to (None when that run kept no record)."""
    return read_run_record(Path(checkpoint).parent)


def write_run_record(folder: str | os.PathLike, settings: Mapping[str, Any]) -> Path:
    """Record a run's defining ``settings`` in ``folder`` (whole or not at all), paths made absolute."""
    path = Path(folder) / RECORD_NAME
    write_json_atomic(path, {"format": _FORMAT,
                             "settings": {key: _normalized(key, value) for key, value in settings.items()}}, indent=2)
    return path


def _resumed_run_record(mapping: Mapping[str, Any]) -> dict[str, Any] | None:
    return read_run_record(record_folder(mapping.get("output_dir"),
                                         resume_request(mapping.get("resume_from_checkpoint"))))


def with_checkpoint_run(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """``mapping`` (a run's config: flags, ``--set`` pairs, YAML) with each setting it does not give taken from the
    run of the checkpoint it resumes from (unchanged when it does not resume, or that run kept no record)."""
    record = _resumed_run_record(mapping)
    if record is None:
        return dict(mapping)
    return {**{key: value for key, value in record.items() if key not in mapping}, **mapping}


def without_unknown_recorded(mapping: Mapping[str, Any], known: set[str]) -> tuple[dict[str, Any], list[str]]:
    """``mapping`` without the settings that came from the checkpoint's run but that this version does not know (a
    field renamed since), and their names; a setting given that is unknown stays, for the caller to refuse."""
    record = _resumed_run_record(mapping) or {}
    dropped = sorted(key for key, value in mapping.items()
                     if key not in known and key in record and _same(key, record[key], value))
    return {key: value for key, value in mapping.items() if key not in dropped}, dropped


def _ko_setting_applies(key: str, recorded: Mapping[str, Any]) -> bool:
    """A KO setting counts only for the collision types it acts on (soft and no collision ignore the pairing)."""
    from ..settings import ko_settings

    setting = next((s for s in ko_settings() if s.name == key), None)
    if setting is None or key == "collision":
        return True
    return recorded.get("collision") in setting.applies_to


def _same(key: str, then: Any, now: Any) -> bool:
    then, now = _normalized(key, then), _normalized(key, now)
    if isinstance(then, (int, float)) and isinstance(now, (int, float)) and not isinstance(then, bool):
        return then == now or (isinstance(then, float) and isinstance(now, float) and math.isnan(then)
                               and math.isnan(now))
    return then == now


def _raised(key: str, then: Any, now: Any) -> bool:
    """``now`` trains longer than ``then`` (``max_steps`` -1 means: by epochs, so any positive count extends it)."""
    if not isinstance(now, (int, float)) or not isinstance(then, (int, float)):
        return False
    if key == "max_steps" and then <= 0:
        return now > 0
    return now > then


def setting_differences(recorded: Mapping[str, Any], current: Mapping[str, Any], *,
                        extend: bool = False) -> list[str]:
    """The settings of ``current`` (a run's values) that differ from the checkpoint's run's (``recorded``):
    ``"max_steps: checkpoint 30, arguments 60"``, ... With ``extend``, a raised :data:`EXTEND_KEYS` setting is no
    difference; sorted by name. Settings one of them lacks (recorded by another version) are not compared."""
    differences = []
    for key, then in sorted(recorded.items()):
        if key not in current or not _ko_setting_applies(key, recorded):
            continue
        now = current[key]
        if _same(key, then, now) or (extend and key in EXTEND_KEYS and _raised(key, then, now)):
            continue
        shown = [redact_value(key, _normalized(key, value)) for value in (then, now)]
        differences.append(f"{key}: checkpoint {shown[0]!r}, arguments {shown[1]!r}")
    return differences


def extension_problem(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """Why ``extend_run`` does not extend the checkpoint's run with ``current``'s values (None when it does): the
    length that counts (``max_steps`` when positive, else ``num_train_epochs``) must be raised."""
    steps = recorded.get("max_steps")
    if isinstance(steps, (int, float)) and steps > 0:
        if not _raised("max_steps", steps, current.get("max_steps")):
            return (f"extend_run: the checkpoint's run stops at max_steps={steps}; give a larger max_steps "
                    "(--max-steps) to train it further")
        return None
    if not (_raised("max_steps", -1, current.get("max_steps"))
            or _raised("num_train_epochs", recorded.get("num_train_epochs"), current.get("num_train_epochs"))):
        return (f"extend_run: the checkpoint's run trains for num_train_epochs={recorded.get('num_train_epochs')}; "
                "give more epochs (--epochs) or a max_steps (--max-steps) to train it further")
    return None
