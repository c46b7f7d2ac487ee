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
import os
import statistics
import time
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import transformers
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    HfArgumentParser,
    TrainerCallback,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
from transformers.trainer_utils import get_last_checkpoint
from transformers.utils import logging

from .data import TextClassificationData, load_text_classification
from .metrics import compute_metrics
from .trainer import CONDENSATION_METRICS, KOTrainer, KOTrainingArguments, layer_condensation, logged_metric

logger = logging.get_logger(__name__)

__all__ = [
    "FinetuneError",
    "FinetuneOptions",
    "FinetuneResult",
    "PreparedFinetune",
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


class FinetuneError(ValueError):
    """A mistake in the user's input (model, options, config file), caught before training starts."""


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
    text_column: str | None = field(default=None, metadata={"help": "Text column (default: auto-detected)."})
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


class StepTimerCallback(TrainerCallback):
    """Wall time of every optimizer step, from ``on_step_begin`` to ``on_step_end`` (seconds)."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self._start: float | None = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self._start is not None:
            self.durations.append(time.perf_counter() - self._start)
            self._start = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.durations) if self.durations else None


# --------------------------------------------------------------------------------------------------- config


def config_keys() -> dict[str, type]:
    """Every key a config mapping may hold -> the dataclass it belongs to."""
    return {f.name: cls for cls in (FinetuneOptions, KOTrainingArguments) for f in fields(cls) if f.init}


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML (or JSON) recipe into a flat mapping of :class:`FinetuneOptions` / ``KOTrainingArguments`` keys."""
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise FinetuneError(f"config file does not exist: {path}")
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise FinetuneError(f"cannot parse config file {path}: {' '.join(str(err).split())}") from err
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise FinetuneError(f"config file {path} must hold a mapping of settings, got a {type(content).__name__}")
    return {str(k): v for k, v in content.items()}


def _scalar_type(annotation: Any) -> type | None:
    """``float`` for ``float``, ``float | None``, ... (None for anything else)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    scalars = [a for a in args if a in (bool, int, float)]
    return scalars[0] if len(scalars) == 1 and len(args) == 1 else None


def _coerce(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Strings -> numbers/booleans where the field wants one: YAML reads ``2e-5`` (no dot) as a string."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable annotations: leave the values as they are
        return values
    out = dict(values)
    for key, value in values.items():
        wanted = _scalar_type(hints.get(key))
        if value is False and key != "resume_from_checkpoint" and hints.get(key) is not None \
                and bool not in (hints[key], *typing.get_args(hints[key])):
            out[key] = "no"  # YAML 1.1 reads `save_strategy: no` as False
            continue
        if not isinstance(value, str) or wanted is None:
            continue
        text = value.strip()
        try:
            if wanted is bool:
                lowered = text.lower()
                if lowered not in ("true", "false", "yes", "no", "1", "0", "on", "off"):
                    raise ValueError
                out[key] = lowered in ("true", "yes", "1", "on")
            elif wanted is int:
                out[key] = int(text)
            else:
                out[key] = float(text)
        except ValueError:
            raise FinetuneError(f"{key} must be a {wanted.__name__}, got {value!r}") from None
    return out


def parse_config(mapping: dict[str, Any]) -> tuple[FinetuneOptions, KOTrainingArguments]:
    """A flat mapping of :class:`FinetuneOptions` + ``KOTrainingArguments`` fields -> both dataclasses.

    Unknown keys raise :class:`FinetuneError` naming them (with close matches); invalid values raise the
    dataclasses' own ``ValueError`` (e.g. a bad ``collision`` name or ``coll_coef``).
    """
    known = config_keys()
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
    values = {**_coerce(FinetuneOptions, {k: v for k, v in mapping.items() if known[k] is FinetuneOptions}),
              **_coerce(KOTrainingArguments, {k: v for k, v in mapping.items() if known[k] is KOTrainingArguments})}
    parser = HfArgumentParser((FinetuneOptions, KOTrainingArguments))
    try:
        options, args = parser.parse_dict(values, allow_extra_keys=False)
    except TypeError as err:  # e.g. a list where a number is needed
        raise FinetuneError(f"invalid settings: {err}") from err
    return options, args


# --------------------------------------------------------------------------------------------------- checks


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


def _looks_like_local_path(name: str) -> bool:
    """``./x``, ``/x``, ``~/x``, ``x/`` or ``a/b/c`` -- not a Hub id ``owner/name`` or ``name``."""
    return name.startswith((".", "/", "~")) or name.endswith("/") or name.count("/") > 1


def _load_model_config(name: str):
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise FinetuneError(f"model path {name} is a file; pass the model's folder (with config.json)")
        if not (path / "config.json").is_file():
            raise FinetuneError(f"model folder {name} has no config.json (not a saved transformers model)")
    elif _looks_like_local_path(name):
        raise FinetuneError(f"model path does not exist: {name}")
    try:
        return AutoConfig.from_pretrained(name)
    except Exception as err:  # noqa: BLE001 - every failure becomes one clear message
        if path.exists():
            raise FinetuneError(f"cannot read the model config in {name}: {_first_line(err)}") from err
        if _offline() or "offline" in str(err).lower():
            raise FinetuneError(
                f"model {name!r} is not a local folder and not in the local Hugging Face cache, and the Hub is "
                "offline (HF_HUB_OFFLINE=1): download it once with HF_HUB_OFFLINE unset, or pass a local model "
                "folder instead of the Hub id (ko-finetune /path/to/folder ..., or model_name_or_path: in a config)"
            ) from err
        raise FinetuneError(
            f"cannot load model {name!r} from the Hugging Face Hub ({_first_line(err)}); check the id and your "
            "connection, or pass a local model folder"
        ) from err


def _check_sequence_classification(name: str, config) -> None:
    if config.model_type not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        raise FinetuneError(
            f"model {name!r} (model_type {config.model_type!r}) has no sequence-classification class in "
            "transformers (AutoModelForSequenceClassification); use a text encoder such as bert, roberta, "
            "distilbert, deberta-v2 or an all-MiniLM checkpoint"
        )


def _load_tokenizer(name: str):
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except Exception as err:  # noqa: BLE001
        hint = " (the Hub is offline: pass a local tokenizer folder)" if _offline() and not Path(name).exists() else ""
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


def _resolve_resume(args: KOTrainingArguments) -> str | bool | None:
    resume = args.resume_from_checkpoint
    if isinstance(resume, str) and resume.strip().lower() in ("", "false", "no", "none"):
        return None
    if resume is True or (isinstance(resume, str) and resume.strip().lower() in ("true", "yes", "last")):
        last = get_last_checkpoint(args.output_dir) if os.path.isdir(args.output_dir) else None
        if last is None:
            raise FinetuneError(f"resume_from_checkpoint: no checkpoint-* folder in {args.output_dir} to resume from")
        return last
    if resume:
        if not os.path.isdir(resume):
            raise FinetuneError(f"resume_from_checkpoint: checkpoint folder does not exist: {resume}")
        return str(resume)
    return None


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


def prepare_finetune(options: FinetuneOptions, args: KOTrainingArguments, *, callbacks: list | None = None,
                     reproduce_command: str | None = None) -> PreparedFinetune:
    """Check the inputs, load dataset, tokenizer and model, build the :class:`KOTrainer`; no training.

    Raises :class:`FinetuneError` / :class:`~ko_hf.data.DatasetError` (both ``ValueError``) on bad input.
    """
    if not isinstance(args, KOTrainingArguments):
        raise FinetuneError(f"finetune needs KOTrainingArguments, got {type(args).__name__}")
    if args.push_to_hub and _offline():
        raise FinetuneError("push_to_hub needs the Hugging Face Hub, but it is offline (HF_HUB_OFFLINE=1)")
    # transformers 5 multiplies the loss by the world size under DDP when the model's forward takes **kwargs
    # (to undo a token-count average across ranks), but a sequence-classification loss is a plain per-rank mean:
    # we measured doubled gradients under torchrun with 2 processes. Per-rank means + DDP's gradient average are
    # already right.
    args.average_tokens_across_devices = False

    model_name = options.model_name_or_path
    config = _load_model_config(model_name)
    _check_sequence_classification(model_name, config)
    if options.lora:
        from .lora import check_lora_settings

        check_lora_settings(options.lora_r, options.lora_alpha, options.lora_dropout, options.lora_target_modules,
                            config.model_type)
    tokenizer = _load_tokenizer(options.tokenizer_name or model_name)
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
    resume = _resolve_resume(args)

    transformers.set_seed(args.seed)  # the new head's initialisation is part of the run's seed
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_name,
            num_labels=data.num_labels,
            id2label=data.id2label,
            label2id=data.label2id,
            ignore_mismatched_sizes=True,  # a checkpoint that already has a head with another number of labels
        )
    except Exception as err:  # noqa: BLE001
        raise FinetuneError(f"cannot load {model_name!r} for sequence classification: {_first_line(err)}") from err
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if options.lora:
        from .lora import apply_lora

        model = apply_lora(model, r=options.lora_r, alpha=options.lora_alpha, dropout=options.lora_dropout,
                           target_modules=options.lora_target_modules, collision_targets=args.collision_targets)

    def tokenize(batch):
        return tokenizer(batch["text"], truncation=True, max_length=options.max_length)

    tokenized = data.dataset.map(tokenize, batched=True, remove_columns=["text"], desc="Tokenizing")
    timer = StepTimerCallback()
    trainer = KOTrainer(
        model=model,
        args=args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=compute_metrics,
        callbacks=[timer, *_card_callbacks(options, callbacks)],
    )
    logger.info("prepared %s on %s: %d labels, collision=%s on %s", model_name, data.summary(), data.num_labels,
                args.collision, trainer.collision_targets)
    return PreparedFinetune(options, args, data, trainer, timer, tokenized.get("test"), resume, reproduce_command)


def _card_callbacks(options: FinetuneOptions, callbacks: list | None) -> list:
    """The user's callbacks, plus a model-card callback that knows ``options.plots`` (unless one is given)."""
    callbacks = list(callbacks or [])
    try:
        from .modelcard import KOModelCardCallback
    except ImportError:  # an older layout without the KO model card
        return callbacks
    if not any(isinstance(c, KOModelCardCallback) for c in callbacks):
        callbacks.append(KOModelCardCallback(plots=options.plots))
    return callbacks


def _card_kwargs(trainer: KOTrainer, prepared: PreparedFinetune) -> dict[str, Any]:
    import inspect

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
    for key, value in extras.items():  # what the KO model card (ko_hf.modelcard) understands
        if value is not None and (takes_any or key in parameters):
            kwargs[key] = value
    return kwargs


def run_prepared(prepared: PreparedFinetune) -> FinetuneResult:
    """Train, evaluate (validation, then test), save model + tokenizer + metrics JSON + model card."""
    trainer, args = prepared.trainer, prepared.args
    if prepared.resume_from_checkpoint:
        logger.info("resuming from %s", prepared.resume_from_checkpoint)
    train_output = trainer.train(resume_from_checkpoint=prepared.resume_from_checkpoint)
    train_metrics = dict(train_output.metrics)
    eval_metrics = trainer.evaluate(metric_key_prefix="eval")
    test_metrics = (trainer.evaluate(prepared.test_dataset, metric_key_prefix="test")
                    if prepared.test_dataset is not None else None)
    condensation = trainer.collision_metrics()
    head_metrics = {k: v for k in CONDENSATION_METRICS if (v := logged_metric(condensation, k)) is not None}
    head_layers = layer_condensation(condensation)

    trainer.save_metrics("train", train_metrics)
    trainer.save_metrics("eval", eval_metrics)
    if test_metrics is not None:
        trainer.save_metrics("test", test_metrics)
    if head_metrics:
        trainer.save_metrics("head", {f"head_{k}": v for k, v in head_metrics.items()})
    trainer.save_state()
    if prepared.options.lora and trainer.is_world_process_zero():  # before the upload: it goes with the adapter
        from .lora import save_head_config

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
    )


def finetune(options: FinetuneOptions, args: KOTrainingArguments, *, callbacks: list | None = None,
             reproduce_command: str | None = None) -> FinetuneResult:
    """Fine-tune ``options.model_name_or_path`` on ``options.dataset`` with KO collisions as ``args`` says.

    All inputs are checked (and :class:`FinetuneError` / ``DatasetError`` raised) before the first training step.
    ``args.resume_from_checkpoint``: a checkpoint folder, or ``True``/``"last"`` for the last ``checkpoint-*`` in
    ``args.output_dir``. ``callbacks`` are added to the trainer's; ``reproduce_command`` goes into the model card.
    """
    return run_prepared(prepare_finetune(options, args, callbacks=callbacks, reproduce_command=reproduce_command))
