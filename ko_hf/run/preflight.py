"""The checks of a run's settings that need no heavy import: ``ko-finetune`` runs them before torch/transformers.

A run is described by one flat mapping of :class:`~ko_hf.run.config.FinetuneOptions` and
:class:`~ko_hf.trainer.KOTrainingArguments` keys (a YAML recipe, ``--set key=value`` pairs and flags).
Importing transformers' Trainer takes seconds, so a mistake in that mapping that can be seen from its values alone
(a batch size of 0, a negative learning rate, an output folder that is a file) is reported here, at once.
:func:`ko_hf.run.config.parse_config` runs the same checks, so the library and the command line agree.

Only the standard library and PyYAML are imported here (and ``huggingface_hub.constants`` where named).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "RUN_DEFAULTS",
    "FinetuneError",
    "check_model_folder_kept",
    "check_output_dir",
    "check_run_settings",
    "is_known_model_name",
    "is_main_process",
    "load_config_file",
    "merge_settings",
    "parse_set_values",
    "resume_request",
    "truthy",
]


class FinetuneError(ValueError):
    """A mistake in the user's input (model, options, config file, output folder), caught before training."""


#: Defaults of ``ko-finetune train`` and ``ko-finetune compare`` that differ from ``TrainingArguments``'
#: (a ``--config`` file, ``--set`` or a flag overrides them). None of them changes what a run computes.
RUN_DEFAULTS: dict[str, Any] = {
    "logging_steps": 0.02,  # a ratio of the total steps: ~50 log points (condensation curves in the model card)
    "save_total_limit": 2,  # checkpoints of a base-size encoder with AdamW state are ~1.3 GB each
    "report_to": "none",
    # transformers replaces a NaN/inf step loss by the running mean (0 when every step is NaN): a diverged run
    # must show its NaN loss instead
    "logging_nan_inf_filter": False,
}

_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off", ""}


def is_main_process() -> bool:
    """True on global rank 0 of ``torchrun`` / ``accelerate launch`` (and in a plain process)."""
    return os.environ.get("RANK", "0").strip() in ("", "0")


def truthy(value: Any) -> bool:
    """A YAML/flag value read as a boolean: ``True``, ``"true"``, ``"yes"``, ``1`` ..."""
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return bool(value)


def resume_request(value: Any) -> str | bool | None:
    """``resume_from_checkpoint`` read: None (no resume), True (``true``/``last``: the newest complete checkpoint)
    or a checkpoint path."""
    if value is None or value is False:
        return None
    text = str(value).strip()
    if text.lower() in _FALSE | {"none"}:
        return None
    if value is True or text.lower() in _TRUE | {"last"}:
        return True
    return text


# --------------------------------------------------------------------------------------------------- reading


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML (or JSON) recipe into a flat mapping of :class:`FinetuneOptions` / ``KOTrainingArguments`` keys."""
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise FinetuneError(f"config file does not exist: {path}")
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        line = err.object[:err.start].count(b"\n") + 1
        raise FinetuneError(f"config file {path} is not UTF-8 text: byte 0x{err.object[err.start]:02x} at byte "
                            f"position {err.start} (line {line}: {err.reason}); save it as UTF-8") from None
    except yaml.YAMLError as err:
        raise FinetuneError(f"cannot parse config file {path}: {' '.join(str(err).split())}") from err
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise FinetuneError(f"config file {path} must hold a mapping of settings, got a {type(content).__name__}")
    return {str(k): v for k, v in content.items()}


def parse_set_values(pairs: Iterable[str]) -> dict[str, Any]:
    """``--set key=value`` pairs; values are read as YAML (``true``, ``1e-3``, ``[a, b]``), except that
    ``no``/``yes``/``on``/``off`` stay strings (the config parser turns them into booleans where a field wants one)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise FinetuneError(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, bool) and raw.strip().lower() not in ("true", "false"):
            value = raw.strip()  # YAML 1.1 reads no/yes/on/off as booleans: save_strategy=no means "no"
        if key.strip() in out:
            raise FinetuneError(f"--set {key.strip()} is given twice")
        out[key.strip()] = value
    return out


def merge_settings(config_file: str | os.PathLike | None, flags: Mapping[str, Any],
                   set_pairs: Iterable[str] = (), defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``defaults`` < the ``--config`` file < flags and ``--set`` pairs (``None`` flags = not given).

    A key given both as a flag and with ``--set`` is an error: which one was meant cannot be known.
    """
    mapping = dict(defaults or {})
    if config_file is not None:
        mapping.update(load_config_file(config_file))
    given = {k: v for k, v in flags.items() if v is not None}
    extra = parse_set_values(set_pairs)
    twice = sorted(set(given) & set(extra))
    if twice:
        raise FinetuneError(f"{', '.join(twice)} given twice: as a flag and with --set; keep one")
    mapping.update(given)
    mapping.update(extra)
    return mapping


# --------------------------------------------------------------------------------------------------- checks


def _number(value: Any) -> float | None:
    """The value as a number when it is one (YAML reads ``5e-3`` as a string); None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def check_run_settings(mapping: Mapping[str, Any]) -> None:
    """Raise :class:`FinetuneError` for values no run can use: the key, the value and what is valid.

    Values of the wrong type are left to :func:`ko_hf.run.config.parse_config`, which names the expected type.
    """
    max_steps = _number(mapping.get("max_steps"))
    if max_steps is not None and (max_steps != int(max_steps) or max_steps == 0 or max_steps < -1):
        raise FinetuneError(f"max_steps={mapping['max_steps']!r} is invalid; give a positive number of optimizer "
                            "steps (or -1, the default: train for num_train_epochs)")
    epochs = _number(mapping.get("num_train_epochs"))
    if epochs is not None and not (max_steps and max_steps > 0) and not (math.isfinite(epochs) and epochs > 0):
        raise FinetuneError(f"num_train_epochs={mapping['num_train_epochs']!r} is invalid; it must be a number > 0 "
                            "(or give max_steps > 0)")
    for key in ("per_device_train_batch_size", "per_device_eval_batch_size", "max_length", "max_train_samples",
                "max_eval_samples", "gradient_accumulation_steps"):
        value = _number(mapping.get(key))
        if value is not None and (value != int(value) or value < 1):
            raise FinetuneError(f"{key}={mapping[key]!r} is invalid; it must be a whole number >= 1")
    rate = _number(mapping.get("learning_rate"))
    if rate is not None and not (math.isfinite(rate) and rate >= 0):
        raise FinetuneError(f"learning_rate={mapping['learning_rate']!r} is invalid; it must be a finite number >= 0")
    if mapping.get("output_dir"):
        check_output_dir(mapping["output_dir"])
        if mapping.get("model_name_or_path"):
            check_model_folder_kept(mapping["output_dir"], mapping["model_name_or_path"])


def check_output_dir(path: str | os.PathLike) -> None:
    """An output folder must be a folder (or not exist yet) that this process can write into."""
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise FinetuneError(f"output_dir {path} is a file, not a folder; give a folder (it is created if missing)")
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise FinetuneError(f"output_dir {path} cannot be created: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == folder else f"cannot be created: {existing} is not writable"
        raise FinetuneError(f"output_dir {path} {what} (permission denied); choose another output_dir")


def check_model_folder_kept(output_dir: str | os.PathLike, model: str | os.PathLike) -> None:
    """A run's output folder may not be the pretrained model's local folder, nor inside or around it: the run
    writes its model there (and ``--overwrite-output-dir`` deletes an earlier run's weights and checkpoints)."""
    model_path = Path(model).expanduser()
    if not model_path.is_dir():
        return  # a Hub id, or a path the model checks report
    model_folder, folder = model_path.resolve(), Path(output_dir).expanduser().resolve()
    if folder == model_folder:
        where = "is the pretrained model's own folder"
    elif model_folder in folder.parents:
        where = f"is inside the pretrained model's folder {model}"
    elif folder in model_folder.parents:
        where = f"contains the pretrained model's folder {model}"
    else:
        return
    raise FinetuneError(f"output_dir {output_dir} {where}: the run would write its model over (or delete) the "
                        "pretrained weights it starts from; choose an --output-dir outside the model's folder")


def is_known_model_name(name: str) -> bool:
    """True for an existing local path or a Hub id whose files are in the local Hugging Face cache."""
    if Path(name).expanduser().exists():
        return True
    from huggingface_hub import constants  # light: constants only

    # the cache folder of a model repo, as huggingface_hub.file_download.repo_folder_name names it (that module's
    # import costs more than the rest of a mistyped command's check)
    folder = constants.REPO_ID_SEPARATOR.join(["models", *name.strip("/").split("/")])
    return (Path(constants.HF_HUB_CACHE) / folder).is_dir()
