"""One fine-tuning run, from names to a saved model: what ``ko-finetune`` and ``ko_hf.compare`` call.

:func:`finetune` = :func:`prepare_finetune` (every check a user's input can fail, and all loading, *before* any
training step) + :func:`run_prepared` (train, evaluate on validation and test, save model, tokenizer, metrics JSON
and model card). Settings come as a :class:`FinetuneOptions` (model, data) and a
:class:`~ko_hf.trainer.KOTrainingArguments` (everything ``TrainingArguments`` has, plus the collision settings);
:func:`parse_config` builds both from one flat mapping (a YAML recipe, CLI flags), rejecting unknown keys.

The pieces live in :mod:`ko_hf.run` (:mod:`~ko_hf.run.config`: the settings; :mod:`~ko_hf.run.model`: model and
tokenizer loaded and checked; :mod:`~ko_hf.run.resume`; :mod:`~ko_hf.run.progress`); this module puts them together,
and its public names of 0.2 stay importable from here.

Library code: nothing is printed; progress goes through ``transformers.utils.logging``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import transformers
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding
from transformers.trainer_callback import PrinterCallback, ProgressCallback
from transformers.utils import logging

from .arguments import KOArgumentsMixin, KOTrainingArguments
from .card.callback import KOModelCardCallback
from .data import TextClassificationData, load_text_classification
from .hub import hub_offline_flag
from .load_report import from_pretrained_quietly
from .logged_metrics import CONDENSATION_METRICS, layer_condensation, logged_metric
from .lora import apply_lora, check_lora_settings, save_head_config
from .metrics import compute_metrics
from .run.config import FinetuneOptions, check_run_numbers, config_keys, parse_config
from .run.config import typed_config  # noqa: F401 - importable from here, as in 0.2
from .run.folder import (
    RunFolderLock,
    claim_run_folder,
    clear_run_results,
    write_json_atomic,
    write_text_atomic,
    writing_into,
)
from .run.model import (
    check_finite_weights,
    check_max_length,
    check_mismatched_weights,
    check_sequence_classification,
    first_line,
    load_model_config,
    load_tokenizer,
)
from .run.preflight import FinetuneError, is_main_process, load_config_file, resume_request
from .run.progress import StepProgressCallback, StepTimerCallback
from .run.record import write_run_record
from .run.resume import check_resumed_settings, resolve_resume, run_settings
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
    check_run_numbers(options, args)
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
    resume = resolve_resume(args)
    if resume is not None:
        check_resumed_settings(options, args, resume)

    model_name = options.model_name_or_path
    config, local_only = load_model_config(model_name)
    check_sequence_classification(model_name, config)
    if options.lora:
        check_lora_settings(options.lora_r, options.lora_alpha, options.lora_dropout, options.lora_target_modules,
                            config.model_type)
    tokenizer = load_tokenizer(options.tokenizer_name or model_name, local_only)
    check_max_length(options.max_length, config, tokenizer)
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
        raise FinetuneError(f"cannot load {model_name!r} for sequence classification: {first_line(err)}") from err
    check_mismatched_weights(model, loading.get("mismatched_keys") or (), model_name)
    check_finite_weights(model, model_name)
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
