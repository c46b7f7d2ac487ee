"""One fine-tuning run, from names to a saved model: what ``ko-finetune`` and ``ko_hf.compare`` call.

:func:`finetune` = :func:`prepare_finetune` (every check a user's input can fail, and all loading, *before* any
training step) + :func:`run_prepared` (train, evaluate on validation and test, save model, tokenizer, metrics JSON
and model card). Settings come as a :class:`FinetuneOptions` (model, data) and a
:class:`~ko_hf.trainer.KOTrainingArguments` (everything ``TrainingArguments`` has, plus the collision settings);
:func:`parse_config` builds both from one flat mapping (a YAML recipe, CLI flags), rejecting unknown keys.

Library code: nothing is printed; progress goes through ``transformers.utils.logging``.
"""

from __future__ import annotations

import difflib
import inspect
import json
import math
import os
import statistics
import time
from argparse import Action, ArgumentTypeError
from collections.abc import Callable, Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    HfArgumentParser,
    TrainerCallback,
)
from transformers.hf_argparser import string_to_bool
from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
from transformers.trainer_callback import ExportableState, PrinterCallback, ProgressCallback
from transformers.utils import logging

from . import arguments
from .arguments import KOArgumentsMixin, KOTrainingArguments
from .run.checkpoints import CheckpointError, checkpoint_param_groups, find_resume_checkpoint, verify_checkpoint
from .data import TextClassificationData, load_text_classification
from .hub import hub_offline_flag, hub_unreachable, is_cached
from .load_report import from_pretrained_quietly
from .logged_metrics import CONDENSATION_METRICS, layer_condensation, logged_metric
from .lora import apply_lora, check_lora_settings, save_head_config
from .metrics import compute_metrics
from .card.callback import KOModelCardCallback
from .run.preflight import FinetuneError, check_run_settings, is_main_process, load_config_file, resume_request, truthy
from .run.folder import (
    RunFolderLock,
    claim_run_folder,
    clear_run_results,
    write_json_atomic,
    write_text_atomic,
    writing_into,
)
from .run.record import (
    EXTEND_KEYS,
    TRAINING_KEYS,
    checkpoint_run_record,
    extension_problem,
    read_run_record,
    record_folder,
    setting_differences,
    with_checkpoint_run,
    without_unknown_recorded,
    write_run_record,
)
from .optim import fill_saved_group
from .settings import group_setting_names, read_settings, setting_names
from .trainer import KOTrainer

logger = logging.get_logger(__name__)

__all__ = [
    "FinetuneError",
    "FinetuneOptions",
    "FinetuneResult",
    "PreparedFinetune",
    "StepProgressCallback",
    "StepTimerCallback",
    "config_keys",
    "finetune",
    "load_config_file",
    "parse_config",
    "prepare_finetune",
    "run_prepared",
]

#: ``tokenizer.model_max_length`` above this is transformers' "no limit known" sentinel (``int(1e30)``).
_NO_TOKENIZER_LIMIT = 1_000_000


@dataclass
class FinetuneOptions:
    """What to fine-tune on what: the settings that are not ``TrainingArguments``."""

    model_name_or_path: str = field(
        metadata={"help": "Pretrained encoder: a local folder or a Hugging Face Hub id (e.g. bert-base-cased)."}
    )
    dataset: str = field(
        metadata={"help": "Dataset: a recipe name (imdb, snips, demo), name=/local/path, a local file or folder "
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


@dataclass
class FinetuneResult:
    """What a run produced. Metric dicts carry Trainer's prefixes (``train_``, ``eval_``, ``test_``)."""

    output_dir: str
    train_metrics: dict[str, float]
    eval_metrics: dict[str, float]
    test_metrics: dict[str, float] | None
    label_names: list[str]
    median_step_time: float | None
    log_history: list[dict[str, Any]]
    card_path: str | None
    metrics_path: str | None
    #: Condensation of the collision targets (the head) after training: ``weight_correlation``,
    #: ``neuron_similarity`` (see :mod:`ko_hf.collision`); empty when the model has no 2-D head weights.
    head_metrics: dict[str, float] = field(default_factory=dict)
    #: The same, per target weight: ``{"classifier.weight": {"weight_correlation": ..., ...}}``. With several
    #: targets ``head_metrics`` aggregates them; this is what compares layer with layer across settings.
    head_layers: dict[str, dict[str, float]] = field(default_factory=dict)
    #: False on the non-zero ranks of a distributed run (which save nothing and should print nothing).
    is_world_process_zero: bool = True
    #: True when training diverged: the final training loss is not finite, or the trained weights hold NaN/inf
    #: (the model is saved all the same; ``ko-finetune`` exits with code 3). See ``KOTrainer.diverged``.
    diverged: bool = False
    #: The KO optimizer's guard-rail warnings (``KOTrainer.collision_warnings``): targets the collision cannot act
    #: on, and targets whose gradient it turned around on average.
    collision_warnings: list[str] = field(default_factory=list)


class StepTimerCallback(TrainerCallback, ExportableState):
    """Wall time of every optimizer step, from ``on_step_begin`` to ``on_step_end`` (seconds).

    The durations are saved with every checkpoint (``trainer_state.json``) and come back on resume, so the median
    covers the whole run, also when the resumed part has no step left to time.
    """

    def __init__(self) -> None:
        self.durations: list[float] = []
        self._start: float | None = None

    def state(self) -> dict[str, Any]:
        return {"args": {}, "attributes": {"durations": [round(d, 6) for d in self.durations]}}

    def on_train_begin(self, args, state, control, **kwargs):
        saved = state.stateful_callbacks.get(type(self).__name__)
        if isinstance(saved, list):
            saved = saved[0] if saved else None
        durations = ((saved or {}).get("attributes") or {}).get("durations")
        if durations and not self.durations:  # resumed: the steps timed before the checkpoint
            self.durations = [float(d) for d in durations]

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._start is not None:
            self.durations.append(time.perf_counter() - self._start)
            self._start = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.durations) if self.durations else None


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class StepProgressCallback(TrainerCallback):
    """A few progress lines per run instead of a progress bar: ``label: step 40/132 (30%), 0.8 s/step, ETA 1 min
    14 s`` at every ``every`` share of the steps (and at least once a ``max_quiet`` seconds), then one line at the
    end. Lines go to ``say`` (the CLI prints them); main process only."""

    def __init__(self, say: Callable[[str], None], label: str, every: float = 0.1, max_quiet: float = 60.0) -> None:
        self.say, self.label, self.every, self.max_quiet = say, label, every, max_quiet
        self._start = self._last_said = 0.0
        self._first_step = self._next_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._start = self._last_said = time.perf_counter()
        self._first_step = state.global_step
        self._next_step = state.global_step + max(1, math.ceil(self.every * state.max_steps))
        if state.is_world_process_zero:
            resumed = f", resuming at step {state.global_step}" if state.global_step else ""
            self.say(f"{self.label}: training, {state.max_steps} steps{resumed}")

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        if state.global_step < self._next_step and now - self._last_said < self.max_quiet:
            return
        self._next_step = state.global_step + max(1, math.ceil(self.every * state.max_steps))
        self._last_said = now
        done = state.global_step - self._first_step
        per_step = (now - self._start) / max(done, 1)
        if state.is_world_process_zero and state.global_step < state.max_steps:
            self.say(f"{self.label}: step {state.global_step}/{state.max_steps} "
                     f"({100 * state.global_step / max(state.max_steps, 1):.0f}%), {per_step:.2f} s/step, "
                     f"ETA {_duration(per_step * (state.max_steps - state.global_step))}")

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.say(f"{self.label}: trained {state.global_step - self._first_step} steps in "
                     f"{_duration(time.perf_counter() - self._start)}")


# --------------------------------------------------------------------------------------------------- config


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


# --------------------------------------------------------------------------------------------------- checks


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


def _looks_like_local_path(name: str) -> bool:
    """``./x``, ``/x``, ``~/x``, ``x/`` or ``a/b/c`` -- not a Hub id ``owner/name`` or ``name``."""
    return name.startswith((".", "/", "~")) or name.endswith("/") or name.count("/") > 1


def _load_model_config(name: str) -> tuple[Any, bool]:
    """The model's config, and whether the rest must come from the local cache only (the Hub is unreachable)."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FinetuneError(f"model path {name} is a file; pass the model's folder (with config.json)")
        if not (path / "config.json").is_file():
            raise FinetuneError(f"model folder {name} has no config.json (not a saved transformers model)")
    elif _looks_like_local_path(name):
        raise FinetuneError(f"model path does not exist: {name}")
    local_only = False
    if not path.exists():
        local_only = _hub_access(name)
    try:
        return AutoConfig.from_pretrained(name, local_files_only=local_only), local_only
    except Exception as err:  # noqa: BLE001 - every failure becomes one clear message
        if path.exists():
            raise FinetuneError(f"cannot read the model config in {name}: {_first_line(err)}") from err
        raise FinetuneError(
            f"cannot load model {name!r} from the Hugging Face Hub ({_first_line(err)}); check the id, or pass a "
            "local model folder"
        ) from err


def _hub_access(name: str) -> bool:
    """Checks that the Hub id ``name`` can be loaded; True when only from the local cache (the Hub is unreachable)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError as err:
        raise FinetuneError(f"model {name!r} is neither a local folder nor a valid Hub id ({err})") from None
    cached = is_cached(name)
    flag = hub_offline_flag()
    if flag is not None:
        if not cached:
            raise FinetuneError(
                f"model {name!r} is not a local folder and not in the local Hugging Face cache, and {flag} is set "
                "(offline mode), so the Hub is not asked: unset it to download the model once, or pass a local model folder instead "
                "of the Hub id (ko-finetune /path/to/folder ..., or model_name_or_path: in a config)")
        return False  # transformers reads the cache itself
    problem = hub_unreachable()
    if problem is None:
        return False
    if not cached:
        raise FinetuneError(
            f"cannot reach the Hugging Face Hub to download model {name!r} ({problem}), and it is not in the local "
            "cache; no offline flag (HF_HUB_OFFLINE) is set. Check the network or proxy (HTTPS_PROXY), or pass a "
            "local model folder instead of the Hub id")
    logger.warning("the Hugging Face Hub is unreachable (%s): using the cached copy of %s", problem, name)
    return True


def _check_sequence_classification(name: str, config) -> None:
    if config.model_type not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        raise FinetuneError(
            f"model {name!r} (model_type {config.model_type!r}) has no sequence-classification class in "
            "transformers (AutoModelForSequenceClassification); use a text encoder such as bert, roberta, "
            "distilbert, deberta-v2 or an all-MiniLM checkpoint"
        )


def _load_tokenizer(name: str, local_only: bool = False):
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local_only)
    except Exception as err:  # noqa: BLE001
        flag = hub_offline_flag()
        hint = f" ({flag} is set: pass a local tokenizer folder)" if flag and not Path(name).exists() else ""
        raise FinetuneError(f"cannot load a tokenizer from {name!r}{hint}: {_first_line(err)}") from err
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise FinetuneError(f"the tokenizer of {name!r} has neither a pad nor an eos token to pad batches with")
        tokenizer.pad_token = tokenizer.eos_token  # decoder-only models (GPT-2, Llama): pad with eos
    return tokenizer


def _check_max_length(max_length: int, config, tokenizer) -> None:
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
        raise FinetuneError(f"max_length must be a positive integer, got {max_length!r}")
    positions = getattr(config, "max_position_embeddings", None)
    tokenizer_limit = getattr(tokenizer, "model_max_length", None)
    limits = {}
    if isinstance(positions, int) and positions > 0:
        limits["max_position_embeddings"] = positions
    if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < _NO_TOKENIZER_LIMIT:
        limits["tokenizer model_max_length"] = tokenizer_limit
    if limits and max_length > min(limits.values()):
        shown = ", ".join(f"{k}={v}" for k, v in limits.items())
        raise FinetuneError(f"max_length {max_length} exceeds the model's limit ({shown}); "
                            f"set max_length (--max-length) to {min(limits.values())} or less")


def _resolve_resume(args: KOTrainingArguments) -> str | None:
    """The checkpoint a run resumes from, its files checked (the collision settings are checked by the trainer)."""
    request = resume_request(args.resume_from_checkpoint)
    if request is None:
        return None
    if request is True:
        return find_resume_checkpoint(args.output_dir, allow_incomplete=args.resume_incomplete_checkpoint).path
    return verify_checkpoint(request, allow_incomplete=args.resume_incomplete_checkpoint).path


def run_settings(options: FinetuneOptions, args: KOTrainingArguments) -> dict[str, Any]:
    """The settings that define a run's experiment (what :mod:`ko_hf.run.record` records and a resume keeps): every
    :class:`FinetuneOptions` field but how the run is carried out, the training length, batch, optimizer, schedule,
    seeds and intervals of ``args`` (:data:`~ko_hf.run.record.TRAINING_KEYS`), and the KO settings."""
    settings = {f.name: getattr(options, f.name) for f in fields(options) if f.init and f.name not in _NOT_DEFINING}
    settings.update({key: getattr(args, key) for key in TRAINING_KEYS if hasattr(args, key)})
    settings.update({name: getattr(args, name) for name in setting_names() if hasattr(args, name)})
    return settings


def _check_resumed_settings(options: FinetuneOptions, args: KOTrainingArguments, checkpoint: str) -> None:
    """A resumed run continues its checkpoint's run: the settings that defined it must be the same (a larger
    ``max_steps``/``num_train_epochs`` with ``extend_run``)."""
    recorded = checkpoint_run_record(checkpoint)
    if recorded is None:
        logger.warning("the run of %s kept no record of its settings (ko_run.json; a run of ko-hf 0.1?): its data, "
                       "schedule and intervals cannot be checked against this run's", checkpoint)
        return
    current = run_settings(options, args)
    differences = setting_differences(recorded, current, extend=options.extend_run)
    if differences:
        raise FinetuneError(
            f"cannot resume from {checkpoint}: its run was started with other settings than this one gives "
            f"({'; '.join(differences)}). A resumed run continues its checkpoint's experiment: leave these settings "
            "out (they are taken from the checkpoint's run) or give its values; to train a run further, raise "
            f"{' or '.join(EXTEND_KEYS)} with extend_run=true (--set extend_run=true); or start a new run in another "
            "output_dir")
    problem = extension_problem(recorded, current) if options.extend_run else None
    if problem is not None:
        raise FinetuneError(problem)


def _check_run_numbers(options: FinetuneOptions, args: KOTrainingArguments) -> None:
    """The checks ``ko-finetune`` makes of a config's numbers, made of the dataclasses a Python caller built (a
    ``num_train_epochs`` of 0 would save the untrained model)."""
    keys = ("max_steps", "num_train_epochs", "per_device_train_batch_size", "per_device_eval_batch_size",
            "gradient_accumulation_steps", "learning_rate", "max_length", "max_train_samples", "max_eval_samples")
    values = {**{f.name: getattr(options, f.name) for f in fields(options)}, **vars(args)}
    check_run_settings({key: values[key] for key in keys if values.get(key) is not None})


def _check_mismatched_weights(model: torch.nn.Module, mismatched: Any, name: str) -> None:
    """Only the new classification head may differ in shape from the pretrained checkpoint (it is initialised
    afresh for the data's labels); a weight of the encoder that does not fit would be re-initialised silently."""
    prefix = getattr(model, "base_model_prefix", "")
    encoder = sorted((key, tuple(saved), tuple(wanted)) for key, saved, wanted in mismatched
                     if prefix and key.startswith(f"{prefix}."))
    if encoder:
        key, saved, wanted = encoder[0]
        more = f" (and {len(encoder) - 1} more weights)" if len(encoder) > 1 else ""
        raise FinetuneError(f"model {name!r}: the weight {key} has shape {list(saved)} in the checkpoint but the "
                            f"model its config describes needs {list(wanted)}{more}; only the classification head "
                            "may differ (it is new for the data's labels). The weight files and config.json do not "
                            "belong together: save the model again")


def _check_finite_weights(model: torch.nn.Module, name: str) -> None:
    """A corrupted weight file trains silently to NaN: refuse a model whose loaded weights are not finite."""
    bad = [key for key, tensor in model.state_dict().items()
           if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise FinetuneError(f"model {name!r} has non-finite weights (NaN or inf) in {bad[0]}{more}: the weight file "
                            "is corrupt; download or save the model again")


# --------------------------------------------------------------------------------------------------- run


@dataclass
class PreparedFinetune:
    """Everything loaded and checked; :func:`run_prepared` trains it."""

    options: FinetuneOptions
    args: KOTrainingArguments
    data: TextClassificationData
    trainer: KOTrainer
    timer: StepTimerCallback
    test_dataset: Any
    resume_from_checkpoint: str | None
    reproduce_command: str | None = None
    #: This process's lock of the output folder (None on other ranks); released when the run ends.
    lock: RunFolderLock | None = None


def prepare_finetune(options: FinetuneOptions, args: KOTrainingArguments, *, callbacks: list | None = None,
                     reproduce_command: str | None = None, progress: Callable[[str], None] | None = None,
                     progress_label: str | None = None) -> PreparedFinetune:
    """Check the inputs, load dataset, tokenizer and model, build the :class:`KOTrainer`; no training.

    Locks the output folder (refusing one that holds another run's results unless resuming or
    ``options.overwrite_output_dir``). ``progress``: where to send a few progress lines instead of Trainer's
    progress bar and log dicts (:class:`StepProgressCallback`, labelled ``progress_label``).
    Raises :class:`FinetuneError` / :class:`~ko_hf.data.DatasetError` (both ``ValueError``) on bad input.
    """
    if not isinstance(args, KOArgumentsMixin):
        raise FinetuneError(f"finetune needs KOTrainingArguments, got {type(args).__name__}")
    flag = hub_offline_flag()
    if args.push_to_hub and flag is not None:
        raise FinetuneError(f"push_to_hub needs the Hugging Face Hub, but {flag} is set; unset it or drop push_to_hub")
    _check_run_numbers(options, args)
    lock = claim_run_folder(args.output_dir, resuming=resume_request(args.resume_from_checkpoint) is not None,
                            overwrite=options.overwrite_output_dir, main_process=is_main_process(),
                            model=options.model_name_or_path)
    try:
        return _prepare(options, args, callbacks, reproduce_command, progress, progress_label, lock)
    except BaseException:
        if lock is not None:
            lock.release()
        raise


def _prepare(options: FinetuneOptions, args: KOTrainingArguments, callbacks: list | None,
             reproduce_command: str | None, progress: Callable[[str], None] | None, progress_label: str | None,
             lock: RunFolderLock | None) -> PreparedFinetune:
    # transformers 5 multiplies the loss by the world size under DDP when the model's forward takes **kwargs
    # (to undo a token-count average across ranks), but a sequence-classification loss is a plain per-rank mean:
    # we measured doubled gradients under torchrun with 2 processes. Per-rank means + DDP's gradient average are
    # already right.
    args.average_tokens_across_devices = False
    resume = _resolve_resume(args)
    if resume is not None:
        _check_resumed_settings(options, args, resume)

    model_name = options.model_name_or_path
    config, local_only = _load_model_config(model_name)
    _check_sequence_classification(model_name, config)
    if options.lora:
        check_lora_settings(options.lora_r, options.lora_alpha, options.lora_dropout, options.lora_target_modules,
                            config.model_type)
    tokenizer = _load_tokenizer(options.tokenizer_name or model_name, local_only)
    _check_max_length(options.max_length, config, tokenizer)
    data = load_text_classification(
        options.dataset,
        text_column=options.text_column,
        label_column=options.label_column,
        validation_fraction=options.validation_fraction,
        seed=args.seed,
        max_train_samples=options.max_train_samples,
        max_eval_samples=options.max_eval_samples,
        drop_unseen_eval_labels=options.drop_unseen_eval_labels,
    )

    transformers.set_seed(args.seed)  # the new head's initialisation is part of the run's seed
    try:  # transformers' LOAD REPORT once, as what it means (load_report): a new head, or fresh encoder weights
        model, loading = from_pretrained_quietly(
            AutoModelForSequenceClassification,
            model_name,
            num_labels=data.num_labels,
            id2label=data.id2label,
            label2id=data.label2id,
            ignore_mismatched_sizes=True,  # a checkpoint that already has a head with another number of labels:
            output_loading_info=True,      # any other mismatch is refused below
            local_files_only=local_only,
            # with peft installed, transformers looks for adapter_config.json on the Hub without passing
            # local_files_only on (transformers 5.24): a cache-only load would sit through the retries again
            **({"adapter_kwargs": {"local_files_only": True}} if local_only else {}),
        )
    except Exception as err:  # noqa: BLE001
        raise FinetuneError(f"cannot load {model_name!r} for sequence classification: {_first_line(err)}") from err
    _check_mismatched_weights(model, loading.get("mismatched_keys") or (), model_name)
    _check_finite_weights(model, model_name)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if options.lora:
        model = apply_lora(model, r=options.lora_r, alpha=options.lora_alpha, dropout=options.lora_dropout,
                           target_modules=options.lora_target_modules, collision_targets=args.collision_targets)

    tokenized = _tokenize(data, tokenizer, options.max_length)
    timer = StepTimerCallback()
    extra = [timer, *_card_callbacks(options, callbacks, reproduce_command)]
    if progress is not None:
        extra.append(StepProgressCallback(progress, progress_label or Path(args.output_dir).name))
    trainer = KOTrainer(
        model=model,
        args=args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
        callbacks=extra,
    )
    if progress is not None:  # the progress lines replace the bar and the printed log dicts
        for callback in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(callback)
    if resume is not None:
        trainer.resolve_resume_checkpoint(resume)  # the checkpoint's collision settings against the arguments
    elif options.overwrite_output_dir and is_main_process():
        clear_run_results(args.output_dir)  # only now that everything loaded: a mistake above deletes nothing
    if is_main_process():  # what a resume of this run continues (an extended run records its new length)
        write_run_record(args.output_dir, run_settings(options, args))
    logger.info("prepared %s on %s: %d labels, collision=%s on %s", model_name, data.summary(), data.num_labels,
                args.collision, trainer.collision_targets)
    return PreparedFinetune(options, args, data, trainer, timer, tokenized.get("test"), resume, reproduce_command,
                            lock)


def _tokenize(data: TextClassificationData, tokenizer, max_length: int):
    """Every split tokenized: ``text``, or the pair ``text`` + ``text_pair`` (``tokenizer(a, b)``: separator and
    segment ids as the model was pretrained with; truncation shortens the longer sentence first)."""
    def tokenize(batch):
        pair = batch["text_pair"] if data.is_pair else None
        return tokenizer(batch["text"], pair, truncation=True, max_length=max_length)

    texts = [name for name in data.dataset["train"].column_names if name != "label"]
    return data.dataset.map(tokenize, batched=True, remove_columns=texts, desc="Tokenizing")


def _card_callbacks(options: FinetuneOptions, callbacks: list | None, command: str | None = None) -> list:
    """The user's callbacks, plus a model-card callback that knows ``options.plots`` and the command that started
    the run (kept in every checkpoint, so a resumed run's card shows it), unless one is given."""
    callbacks = list(callbacks or [])
    if not any(isinstance(c, KOModelCardCallback) for c in callbacks):
        callbacks.append(KOModelCardCallback(plots=options.plots, command=command))
    return callbacks


def _card_kwargs(trainer: KOTrainer, prepared: PreparedFinetune) -> dict[str, Any]:
    options, data = prepared.options, prepared.data
    kwargs: dict[str, Any] = {
        "model_name": Path(prepared.args.output_dir).name,
        "finetuned_from": options.model_name_or_path,
        "tasks": "text-classification",
        "dataset": data.name,
        "tags": ["ko-hf", "text-classification"],
    }
    if data.source.startswith("hub:"):
        kwargs["dataset_tags"] = data.source[len("hub:"):]
    try:
        parameters = inspect.signature(trainer.create_model_card).parameters
    except (TypeError, ValueError):
        parameters = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    extras = {"dataset_info": data, "plots": options.plots, "reproduce_command": prepared.reproduce_command,
              "finetune_options": options}
    for key, value in extras.items():  # what the KO model card (ko_hf.card) understands
        if value is not None and (takes_any or key in parameters):
            kwargs[key] = value
    return kwargs


def run_prepared(prepared: PreparedFinetune) -> FinetuneResult:
    """Train, evaluate (validation, then test), save model + tokenizer + metrics JSON + model card; then release
    the output folder."""
    try:
        return _run(prepared)
    finally:
        if prepared.lock is not None:
            prepared.lock.release()


def run_train_loss(log_history: list[dict[str, Any]]) -> float | None:
    """The mean training loss over every logged step of a run: each logged ``loss`` is the mean over the steps
    since the previous log, so it is weighted by that many steps. None when nothing was logged."""
    total = steps = 0.0
    previous = 0
    for entry in log_history:
        if "loss" in entry and isinstance(entry.get("step"), int) and entry["step"] > previous:
            total += float(entry["loss"]) * (entry["step"] - previous)
            steps += entry["step"] - previous
            previous = entry["step"]
    return total / steps if steps else None


def _save_metrics(trainer: KOTrainer, split: str, metrics: dict[str, Any]) -> None:
    """``Trainer.save_metrics``, each file written whole or not at all (a full disk leaves no empty
    ``train_results.json``)."""
    if not trainer.is_world_process_zero():
        return
    folder = Path(trainer.args.output_dir)
    write_json_atomic(folder / f"{split}_results.json", metrics)
    combined = folder / "all_results.json"
    everything = json.loads(combined.read_text(encoding="utf-8")) if combined.is_file() else {}
    write_json_atomic(combined, {**everything, **metrics})


def _save_state(trainer: KOTrainer) -> None:
    """``Trainer.save_state`` (``trainer_state.json``), written whole or not at all."""
    if trainer.is_world_process_zero():
        write_text_atomic(Path(trainer.args.output_dir) / "trainer_state.json",
                          json.dumps(asdict(trainer.state), indent=2, sort_keys=True) + "\n")


def _run(prepared: PreparedFinetune) -> FinetuneResult:
    with writing_into(prepared.args.output_dir):  # a full disk: one clear error, not a traceback
        return _train_and_save(prepared)


def _train_and_save(prepared: PreparedFinetune) -> FinetuneResult:
    trainer, args = prepared.trainer, prepared.args
    if prepared.resume_from_checkpoint:
        logger.info("resuming from %s", prepared.resume_from_checkpoint)
    train_output = trainer.train(resume_from_checkpoint=prepared.resume_from_checkpoint)
    train_metrics = dict(train_output.metrics)
    if prepared.resume_from_checkpoint:
        # Trainer's train_loss covers only the steps of this call (0.0 when the checkpoint was the last step)
        whole_run = run_train_loss(trainer.state.log_history)
        if whole_run is not None:
            train_metrics["train_loss"] = whole_run
    eval_metrics = trainer.evaluate(metric_key_prefix="eval")
    test_metrics = (trainer.evaluate(prepared.test_dataset, metric_key_prefix="test")
                    if prepared.test_dataset is not None else None)
    condensation = trainer.collision_metrics()
    head_metrics = {k: v for k in CONDENSATION_METRICS if (v := logged_metric(condensation, k)) is not None}
    head_layers = layer_condensation(condensation)

    _save_metrics(trainer, "train", train_metrics)
    _save_metrics(trainer, "eval", eval_metrics)
    if test_metrics is not None:
        _save_metrics(trainer, "test", test_metrics)
    if head_metrics:
        _save_metrics(trainer, "head", {f"head_{k}": v for k, v in head_metrics.items()})
    _save_state(trainer)
    if prepared.options.lora and trainer.is_world_process_zero():  # before the upload: it goes with the adapter
        save_head_config(trainer.model, args.output_dir)  # the labels, for ko_hf.lora.load_lora_classifier
    card_kwargs = _card_kwargs(trainer, prepared)
    if args.push_to_hub:  # saves the model, writes the card and uploads, once
        trainer.push_to_hub(commit_message="ko-finetune", blocking=True, **card_kwargs)
    else:
        trainer.save_model()
        trainer.create_model_card(**card_kwargs)

    output_dir = Path(args.output_dir)
    card = output_dir / "README.md"
    metrics = output_dir / "all_results.json"
    return FinetuneResult(
        output_dir=str(output_dir),
        train_metrics=train_metrics,
        eval_metrics=eval_metrics,
        test_metrics=test_metrics,
        label_names=list(prepared.data.label_names),
        median_step_time=prepared.timer.median,
        log_history=list(trainer.state.log_history),
        card_path=str(card) if card.is_file() else None,
        metrics_path=str(metrics) if metrics.is_file() else None,
        head_metrics=head_metrics,
        head_layers=head_layers,
        is_world_process_zero=trainer.is_world_process_zero(),
        diverged=trainer.diverged,
        collision_warnings=trainer.collision_warnings,
    )


def finetune(options: FinetuneOptions, args: KOTrainingArguments, *, callbacks: list | None = None,
             reproduce_command: str | None = None, progress: Callable[[str], None] | None = None,
             progress_label: str | None = None) -> FinetuneResult:
    """Fine-tune ``options.model_name_or_path`` on ``options.dataset`` with KO collisions as ``args`` says.

    All inputs are checked (and :class:`FinetuneError` / ``DatasetError`` raised) before the first training step.
    ``args.resume_from_checkpoint``: a checkpoint folder, or ``True``/``"last"`` for the last ``checkpoint-*`` in
    ``args.output_dir``. ``callbacks`` are added to the trainer's; ``reproduce_command`` goes into the model card;
    ``progress``/``progress_label``: see :func:`prepare_finetune`.
    """
    return run_prepared(prepare_finetune(options, args, callbacks=callbacks, reproduce_command=reproduce_command,
                                         progress=progress, progress_label=progress_label))
