"""A run's settings as two dataclasses: :class:`FinetuneOptions` (model, data) and ``KOTrainingArguments``, built by
:func:`parse_config` from one flat mapping (a YAML recipe, CLI flags, ``--set``): keys and values checked, a resumed
run's settings filled in from its checkpoint, and what this machine needs added."""

from __future__ import annotations

import difflib
import os
from argparse import Action, ArgumentTypeError
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from enum import Enum
from typing import Any

import torch
from transformers import HfArgumentParser
from transformers.hf_argparser import string_to_bool
from transformers.utils import logging

from .. import arguments
from ..arguments import KOTrainingArguments
from ..data.recipes import DATASET_RECIPES
from ..optim import fill_saved_group
from ..settings import group_setting_names, read_settings
from .checkpoints import CheckpointError, checkpoint_param_groups, find_resume_checkpoint
from .preflight import FinetuneError, check_run_settings, resume_request, truthy
from .record import read_run_record, record_folder, with_checkpoint_run, without_unknown_recorded

logger = logging.get_logger(__name__)

__all__ = ["FinetuneOptions", "check_run_numbers", "config_keys", "parse_config", "typed_config",
           "with_saved_collision_settings"]


@dataclass
class FinetuneOptions:
    """What to fine-tune on what: the settings that are not ``TrainingArguments``."""

    model_name_or_path: str = field(
        metadata={"help": "Pretrained encoder: a local folder or a Hugging Face Hub id (e.g. bert-base-cased)."}
    )
    dataset: str = field(
        metadata={"help": f"Dataset: a recipe name ({', '.join(DATASET_RECIPES)}), name=/local/path, a local file or folder "
                          "(aclImdb tree, Snips JSON, seq.in/label, CSV/TSV/JSON/JSONL/Parquet) or a Hub id."}
    )
    text_column: list[str] | None = field(
        default=None, metadata={"help": "Text column (default: auto-detected), or two for sentence pairs (premise "
                                        "hypothesis), tokenized as a pair; one name may be given as a plain string."}
    )
    label_column: str | None = field(default=None, metadata={"help": "Label column (default: auto-detected)."})
    max_length: int = field(default=128, metadata={"help": "Truncate inputs to this many tokens."})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use a seeded, label-stratified subset of this many training examples."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Cap the validation and test splits at this many examples (stratified)."}
    )
    validation_fraction: float = field(
        default=0.1, metadata={"help": "Share of train carved out as validation when the dataset has none."}
    )
    drop_unseen_eval_labels: bool = field(
        default=False, metadata={"help": "Drop validation/test rows whose label never occurs in train."}
    )
    plots: bool = field(default=True, metadata={"help": "Draw the model card's pictures (needs matplotlib)."})
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer folder or Hub id, when not the model's own."}
    )
    lora: bool = field(
        default=False, metadata={"help": "Train LoRA adapters (peft) in the encoder instead of all its weights; the "
                                         "head (and the other collision targets) train in full."}
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: float = field(default=16, metadata={"help": "LoRA alpha (the update is scaled by alpha / r)."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA branch."})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Modules that get adapters (default: peft's for the model type, e.g. "
                                        "query, value for BERT)."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Train into an output folder that holds another run's results, deleting those results "
                          "(checkpoints included). Without it such a folder is refused unless the run resumes."},
    )
    extend_run: bool = field(
        default=False,
        metadata={"help": "Resume with a larger max_steps or num_train_epochs than the checkpoint's run had, to train "
                          "a (finished) run further; its LR schedule is stretched to the new length."},
    )


#: FinetuneOptions fields that say how a run is carried out, not what it computes (not recorded for resume).
_NOT_DEFINING = ("plots", "overwrite_output_dir", "extend_run")


def _arguments_class() -> type:
    """``ko_hf.arguments.KOTrainingArguments``, looked up at call time: a class rebuilt there with settings added
    since (:func:`ko_hf.arguments.ko_arguments_class`) is what configs are parsed into."""
    return arguments.KOTrainingArguments


def config_keys() -> dict[str, type]:
    """Every key a config mapping may hold -> the dataclass it belongs to."""
    return {f.name: cls for cls in (FinetuneOptions, _arguments_class()) for f in fields(cls) if f.init}


_TEXT_BOOLS = {"on": "true", "off": "false"}  # besides string_to_bool's yes/no, true/false, t/f, y/n, 1/0


def _typed_value(key: str, value: Any, kind: Any, choices: Any, wanted: str = "{}") -> Any:
    """One config value read as ``HfArgumentParser`` reads its field (the argparse ``type`` and ``choices``): text
    converted by the field's type (YAML reads ``2e-5`` as text), a value of another type refused, a choice
    checked. ``wanted``: how the error names the type (``"list of {}"`` for an item of a list)."""
    def bad() -> FinetuneError:
        name = "bool (true or false)" if kind is string_to_bool else getattr(kind, "__name__", str(kind))
        return FinetuneError(f"{key} must be a {wanted.format(name)}, got {value!r}")

    if value is None or isinstance(value, Enum):
        return value
    if kind is string_to_bool:
        if isinstance(value, str):
            try:
                return string_to_bool(_TEXT_BOOLS.get(value.strip().lower(), value.strip()))
            except ArgumentTypeError:
                raise bad() from None
        if not isinstance(value, bool):
            raise bad()
        return value
    if kind in (int, float):
        if isinstance(value, str):
            try:
                return kind(value.strip())
            except ValueError:
                raise bad() from None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
            raise bad()
        return int(value) if kind is int else value
    if value is False and key != "resume_from_checkpoint":
        value = "no"  # YAML 1.1 reads `save_strategy: no` as False
    if choices is not None:
        chosen = kind(value) if isinstance(value, str) and kind is not None else value
        if chosen not in choices:
            raise FinetuneError(f"{key}={value!r} is invalid; valid: {', '.join(map(str, choices))}")
        return chosen
    return value


def _typed_field(key: str, value: Any, action: Action) -> Any:
    if action.nargs != "+":
        return _typed_value(key, value, action.type, action.choices)
    if not isinstance(value, (list, tuple)):  # a single text stays as given (peft's "all-linear", one module name)
        return value
    if action.type is str and not all(isinstance(item, str) for item in value):
        raise FinetuneError(f"{key} must be a list of str, got {value!r}")
    return [_typed_value(key, item, action.type, action.choices, "list of {}") for item in value]


def typed_config(parser: HfArgumentParser, mapping: Mapping[str, Any]) -> dict[str, Any]:
    """``mapping``'s values type-checked against the fields of ``parser``'s dataclasses as ``HfArgumentParser``
    reads them from a command line (:class:`FinetuneError` naming the key, the value and the type or the choices),
    the KO settings by their declarations (:func:`ko_hf.settings.read_settings`). Keys of no field stay as they
    are."""
    actions: dict[str, Action] = {}
    for action in parser._actions:  # the field's own action, not its --no_<field> complement
        actions.setdefault(action.dest, action)
    try:
        ko = read_settings(mapping)
    except ValueError as err:
        raise FinetuneError(str(err)) from None
    return {key: ko[key] if key in ko else _typed_field(key, value, actions[key]) if key in actions else value
            for key, value in mapping.items()}


def with_saved_collision_settings(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """``mapping`` with each collision setting it does not give taken from the param groups of the checkpoint it
    resumes, when that checkpoint's run kept no record (ko-hf 0.1 and 0.2 wrote none): such a run continues with
    what it ran with (a setting it had no key for means that release's behaviour: ``fill_saved_group``), whatever
    today's defaults are. A run with a record (:func:`ko_hf.run.record.with_checkpoint_run`) or no checkpoint to
    read is left as it is."""
    request = resume_request(mapping.get("resume_from_checkpoint"))
    folder = record_folder(mapping.get("output_dir"), request)
    if folder is None or read_run_record(folder) is not None:
        return dict(mapping)
    try:
        checkpoint = find_resume_checkpoint(folder, allow_incomplete=True).path if request is True else str(request)
        groups = checkpoint_param_groups(checkpoint)
    except (CheckpointError, OSError, RuntimeError, ValueError):  # the resume itself says what is wrong
        return dict(mapping)
    if groups is None:
        return dict(mapping)
    flagged = [fill_saved_group(dict(g)) for g in groups if g.get("collision", "none") != "none"]
    saved = {name: flagged[0][name] for name in group_setting_names()} if flagged else {"collision": "none"}
    return {**{key: value for key, value in saved.items() if key not in mapping}, **mapping}


def parse_config(mapping: dict[str, Any]) -> tuple[FinetuneOptions, KOTrainingArguments]:
    """A flat mapping of :class:`FinetuneOptions` + ``KOTrainingArguments`` fields -> both dataclasses.

    Unknown keys raise :class:`FinetuneError` naming them (with close matches); so does a value of the wrong type
    (checked as ``HfArgumentParser`` reads the field) or a bad KO setting; the dataclasses raise their own
    ``ValueError`` for the rest (e.g. an ``eval_strategy`` that needs ``eval_steps``).

    A mapping that resumes (``resume_from_checkpoint``) takes each setting that defines the experiment and that it
    does not give from the checkpoint's run (:func:`ko_hf.run.record.with_checkpoint_run`).
    """
    known = config_keys()
    mapping, dropped = without_unknown_recorded(with_saved_collision_settings(with_checkpoint_run(mapping)), set(known))
    if dropped:
        logger.warning("the checkpoint's run recorded settings this version does not know, left out: %s",
                       ", ".join(dropped))
    check_run_settings(mapping)
    unknown = [k for k in mapping if k not in known]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)
            hints.append(f"{key!r}" + (f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""))
        raise FinetuneError(f"unknown setting(s): {', '.join(hints)}; settings are FinetuneOptions and "
                            "KOTrainingArguments (TrainingArguments) fields")
    missing = [f.name for f in fields(FinetuneOptions)
               if f.init and f.default is MISSING and f.default_factory is MISSING and f.name not in mapping]
    if missing:
        raise FinetuneError(f"missing required setting(s): {missing}")
    parser = HfArgumentParser((FinetuneOptions, _arguments_class()))
    values = typed_config(parser, _machine_settings(mapping))
    try:
        options, args = parser.parse_dict(values, allow_extra_keys=False)
    except TypeError as err:  # e.g. a list where a number is needed
        raise FinetuneError(f"invalid settings: {err}") from err
    return options, args


def _machine_settings(mapping: dict[str, Any]) -> dict[str, Any]:
    """What this machine needs of a config: settings it cannot run, or would run wrongly, and the defaults that
    follow from its hardware. Not part of a run's recorded config (a comparison moves between machines)."""
    if torch.accelerator.is_available():
        return mapping
    world_size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    use_cpu = truthy(mapping["use_cpu"]) if "use_cpu" in mapping else None
    if world_size > 1 and use_cpu is False:
        raise FinetuneError(f"use_cpu: false under a {world_size}-process launch on a machine without GPU would "
                            f"train {world_size} independent copies into one folder; drop use_cpu: false")
    wants_bf16 = truthy(mapping.get("bf16", False))
    if wants_bf16 and not (use_cpu or world_size > 1):
        raise FinetuneError("bf16 (bfloat16 mixed precision) needs a GPU, and this machine has none: pass --no-bf16 "
                            "(bf16: false in a YAML), or --set use_cpu=true for bfloat16 autocast on the CPU (slow "
                            "on CPUs without bf16 instructions)")
    defaults: dict[str, Any] = {"dataloader_pin_memory": False}  # no pinned memory without an accelerator
    if world_size > 1:
        # Without use_cpu, transformers sets up no process group on a CPU-only machine: every process would train
        # its own copy on all the data. use_cpu gives DDP over gloo.
        defaults["use_cpu"] = True
    return {**defaults, **mapping}


def check_run_numbers(options: FinetuneOptions, args: KOTrainingArguments) -> None:
    """The checks ``ko-finetune`` makes of a config's numbers, made of the dataclasses a Python caller built (a
    ``num_train_epochs`` of 0 would save the untrained model)."""
    keys = ("max_steps", "num_train_epochs", "per_device_train_batch_size", "per_device_eval_batch_size",
            "gradient_accumulation_steps", "learning_rate", "max_length", "max_train_samples", "max_eval_samples")
    values = {**{f.name: getattr(options, f.name) for f in fields(options)}, **vars(args)}
    check_run_settings({key: values[key] for key in keys if values.get(key) is not None})
