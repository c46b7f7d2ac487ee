"""The model card gathered from a trainer and written: :func:`build_card_data` fills the card data from a trainer (its
card callback's records, arguments, model, data and log history), :func:`write_model_card` (what
``KOTrainer.create_model_card`` and hence ``push_to_hub`` call) draws the pictures and writes ``README.md``.

Trainer's own card is wrong for a custom optimizer (it reports ``args.optim`` and the default learning rate, a
"multi-GPU" setup on a CPU run, an empty base-model link for local models). Nothing here touches the network, and the
card only reads the trainer: it builds no arguments object (a new ``TrainingArguments`` resets accelerate's shared
state under the running trainer) and changes no state. The KO settings it records are those ``ko_hf.settings``
declares, read when the card is made.
"""

from __future__ import annotations

import copy
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from transformers.utils import logging

from .base_model import BaseModelOrigin, is_hub_id, resolve_base_model
from .callback import KOModelCardCallback, local_copy
from .data import RESULT_METRICS, KOModelCardData, card_tags
from .facts import (adapter_facts, framework_versions, non_default_hyperparameters, record_run, record_settings,
                    split_metrics, unwrap_model)
from .non_default import non_default_fields
from .pictures import draw_card_plots
from .portable import Machine, portable_directory, portable_path, portable_values, scrub_text
from .render import render_model_card
from .reproduce import python_snippet, scratch_command
from ..hub import is_repo_id
from ..logged_metrics import is_number
from ..redaction import redact_mapping, redact_text

logger = logging.get_logger(__name__)

__all__ = ["DATA_FACTS", "card_data_from_arguments", "divergence", "build_card_data", "write_model_card"]


def card_data_from_arguments(args: Any, **values: Any) -> KOModelCardData:
    """The card data of a run with these arguments before anything ran: its KO settings, non-default training
    arguments and reproduce snippet (``values`` fill other fields: ``model_name``, ``targets``...)."""
    d = KOModelCardData(**values)
    record_settings(d, args)
    machine = Machine.here()
    d.output_dir = d.output_dir or portable_path(str(args.output_dir), machine=machine)
    d.non_default_hyperparameters = redact_mapping(portable_values(non_default_hyperparameters(args), machine))
    d.reproduce_snippet = python_snippet(d)
    return d


#: Facts a data set may record besides its name, source, splits, labels and citation, read by the card when present:
#: its text column(s) (two: a pair), its label column, whether validation was carved from train (the share, and the
#: seed of the carve and of the subsets), and the rows dropped per split because their label never occurs in train.
DATA_FACTS = ("text_columns", "label_column", "validation_carved", "validation_fraction", "seed", "dropped_unseen")


def _dataset_facts(dataset_info: Any) -> dict[str, Any]:
    """What a ``TextClassificationData`` (or a dict with the same keys) says about the data."""
    if dataset_info is None:
        return {}
    if isinstance(dataset_info, Mapping):
        get = dataset_info.get
        splits = get("splits") or {}
        splits = {k: int(v) for k, v in splits.items()} if isinstance(splits, Mapping) else {}
    else:
        def get(key: str) -> Any:
            return getattr(dataset_info, key, None)

        dataset = get("dataset")
        splits = {split: len(ds) for split, ds in dataset.items()} if dataset is not None else {}
    facts = {key: get(key) for key in ("name", "source", "citation", *DATA_FACTS)}
    return {**facts, "splits": splits, "label_names": list(get("label_names") or [])}


def _metrics_from_history(log_history: list[dict[str, Any]], prefix: str) -> dict[str, float]:
    for entry in reversed(log_history):
        values = split_metrics(entry, prefix)
        if any(key in RESULT_METRICS or key == "loss" for key in values):
            return values
    return {}


def _card_callback(trainer: Any) -> KOModelCardCallback:
    """The trainer's card callback (the one in its callback handler: Trainer may have restored a new instance
    from a checkpoint), or a fresh one that has recorded nothing."""
    for callback in getattr(getattr(trainer, "callback_handler", None), "callbacks", []):
        if isinstance(callback, KOModelCardCallback):
            return callback
    return getattr(trainer, "model_card_callback", None) or KOModelCardCallback(trainer=trainer)


def _looks_local(name: str | None) -> bool:
    return bool(name) and ("/" in name or "\\" in name or name.startswith(("~", ".")) or os.path.isabs(name)) \
        and not is_hub_id(name)


def _local_name(name: str, machine: Machine) -> str:
    """A local data set's folder or file name (what the card calls it), unless that is a user's name."""
    path = Path(machine.cwd, Path(str(name).rstrip("/\\")).expanduser())
    local = Path(os.path.normpath(path)).name
    return local if local and not machine.names_user([local]) else "local data"


def _record_model(d: KOModelCardData, model: Any, inner: Any, origin: BaseModelOrigin) -> None:
    """The base model, the class that was trained (``inner``, under any wrapper), its size and PEFT adapter."""
    d.base_model, d.base_model_evidence = origin.hub_id, origin.evidence
    if inner is not None:
        d.architecture = type(inner).__name__  # the class that was trained, not the checkpoint's `architectures`
        d.num_parameters = sum(p.numel() for p in inner.parameters())
        d.num_trainable_parameters = sum(p.numel() for p in inner.parameters() if p.requires_grad)
    d.adapter = adapter_facts(model)
    d.library_name = "peft" if d.adapter else "transformers"


def _record_dataset(d: KOModelCardData, trainer: Any, config: Any, dataset_info: Any, dataset_tags: Any,
                    dataset: Any, dataset_args: Any, machine: Machine) -> None:
    """Which data set (a Hub id, else a local name marked local), its splits, columns, labels and citation, and how
    its validation split came about."""
    facts = _dataset_facts(dataset_info)
    hub_datasets = [dataset_tags] if isinstance(dataset_tags, str) else list(dataset_tags or [])
    source = facts.get("source")
    if not hub_datasets and isinstance(source, str):
        if source.startswith("hub:"):
            hub_datasets = [source[len("hub:"):]]
        elif is_hub_id(source) and "/" in source:
            hub_datasets = [source]
    names = [dataset] if isinstance(dataset, str) else list(dataset or [])
    name = names[0] if names else facts.get("name") or (hub_datasets[0] if hub_datasets else None)
    local_source = isinstance(source, str) and not source.startswith(("hub:", "package:")) and not hub_datasets
    if not hub_datasets and name:
        from ..data import DATASET_RECIPES

        recipe = DATASET_RECIPES.get(name)
        if recipe is not None and recipe.hub_id and local_source:  # a local copy of a recipe's Hub data set
            hub_datasets = [recipe.hub_id]
    d.dataset_local = bool(local_source or (not hub_datasets and _looks_local(name)))
    invalid = [x for x in hub_datasets if not is_repo_id(x)]
    if invalid:
        logger.warning("dataset_tags %s are no Hub dataset ids (owner/name): left out of the model card's metadata",
                       invalid)
    d.datasets = [x for x in hub_datasets if x not in invalid]
    d.dataset_name = _local_name(name, machine) if _looks_local(name) else name
    configs = [dataset_args] if isinstance(dataset_args, str) else list(dataset_args or [])
    d.dataset_config = configs[0] if configs else None
    d.dataset_source = portable_path(source, machine=machine) if local_source else source
    columns = facts.get("text_columns")
    d.text_columns = [columns] if isinstance(columns, str) else [str(c) for c in columns or []]
    d.label_column = facts.get("label_column")
    if isinstance(facts.get("validation_carved"), bool):
        d.validation_carved = facts["validation_carved"]
    if is_number(facts.get("validation_fraction")):
        d.validation_fraction = float(facts["validation_fraction"])
    if is_number(facts.get("seed")):
        d.data_seed = int(facts["seed"])
    d.dropped_unseen = {str(k): int(v) for k, v in (facts.get("dropped_unseen") or {}).items() if v}
    d.dataset_splits = facts.get("splits") or {}
    if not d.dataset_splits:
        for split, ds in (("train", trainer.train_dataset), ("validation", trainer.eval_dataset)):
            if ds is not None and not isinstance(ds, dict) and hasattr(ds, "__len__"):
                d.dataset_splits[split] = len(ds)
    d.label_names = facts.get("label_names") or []
    if not d.label_names and config is not None and getattr(config, "id2label", None):
        id2label = config.id2label
        if not all(str(v) == f"LABEL_{k}" for k, v in id2label.items()):  # generic names say nothing
            d.label_names = [str(id2label[k]) for k in sorted(id2label)]
    d.dataset_citation = facts.get("citation")


def _finetune_options(d: KOModelCardData, options: Any, seed: int, machine: Machine,
                      origin: BaseModelOrigin) -> dict:
    """What ``finetune``'s options add to the card (input length, subsets, how validation is made, columns given),
    and the non-default ones for the snippet, their paths portable."""
    d.max_length = getattr(options, "max_length", None)
    if d.validation_fraction is None and is_number(getattr(options, "validation_fraction", None)):
        d.validation_fraction = float(options.validation_fraction)
    d.drop_unseen_eval_labels = bool(getattr(options, "drop_unseen_eval_labels", False))
    if not d.text_columns and getattr(options, "text_column", None):  # given explicitly, not recorded by the data
        given = options.text_column
        d.text_columns = [given] if isinstance(given, str) else [str(c) for c in given]
    d.label_column = d.label_column or getattr(options, "label_column", None)
    limits = {"train": getattr(options, "max_train_samples", None),
              "validation": getattr(options, "max_eval_samples", None),
              "test": getattr(options, "max_eval_samples", None)}
    d.subsets = {split: int(limit) for split, limit in limits.items()
                 if limit is not None and d.dataset_splits.get(split) == limit}  # (a smaller split was not cut)
    d.data_seed = int(seed) if d.data_seed is None else d.data_seed
    shown = portable_values(non_default_fields(options), machine, origin)
    shown.setdefault("max_length", d.max_length)
    return redact_mapping(shown)


def divergence(log_history: list[dict[str, Any]], weights: Mapping[str, torch.Tensor]) -> list[str]:
    """Why a run is taken as diverged (empty for a healthy one): its last logged training loss or its final
    training loss is not finite, or a collision target holds non-finite values."""
    reasons = []
    for key, label in (("loss", "the last logged training loss"), ("train_loss", "the final training loss")):
        values = [entry[key] for entry in log_history if is_number(entry.get(key))]
        if values and not math.isfinite(values[-1]):
            reasons.append(f"{label} is {float(values[-1])}")
    broken = [name for name, weight in weights.items() if not bool(torch.isfinite(local_copy(weight)).all())]
    if broken:
        reasons.append("non-finite values in " + ", ".join(broken))
    return reasons


def _record_resume(d: KOModelCardData, trainer: Any, machine: Machine) -> None:
    """Which checkpoint a resumed run continued (by its name when it is the run's own), at which step, and which
    of its state files were missing (``KOTrainer.resume_report``; the step as the callback saw it at the start of
    training)."""
    report = getattr(trainer, "resume_report", None)
    if report is None or not getattr(report, "checkpoint", None):
        return
    checkpoint = os.path.normpath(os.path.join(machine.cwd, str(report.checkpoint)))
    output_dir = os.path.normpath(os.path.join(machine.cwd, str(trainer.args.output_dir)))
    checkpoint = (os.path.relpath(checkpoint, output_dir) if os.path.dirname(checkpoint) == output_dir
                  else portable_path(checkpoint, machine=machine))  # one of the run's own: by its name
    step = (d.resumed or {}).get("step")
    if step is None:
        match = re.search(r"(\d+)$", Path(str(report.checkpoint)).name)
        step = int(match.group(1)) if match else None
    d.resumed = {"checkpoint": checkpoint, "step": step, "missing": [str(m) for m in report.missing or []]}


def _gathered_warnings(trainer: Any) -> list[str]:
    """``trainer.collision_warnings`` (warnings about how the collision acted on this run), once each."""
    found = getattr(trainer, "collision_warnings", None) or []
    return list(dict.fromkeys(redact_text(str(w)) for w in ([found] if isinstance(found, str) else found)))


def build_card_data(
    trainer: Any,
    *,
    language: str | list[str] | None = None,
    license: str | None = None,
    tags: str | list[str] | None = None,
    model_name: str | None = None,
    finetuned_from: str | None = None,
    tasks: str | list[str] | None = None,
    dataset_tags: str | list[str] | None = None,
    dataset: str | list[str] | None = None,
    dataset_args: str | list[str] | None = None,
    dataset_info: Any = None,
    finetune_options: Any = None,
    reproduce_command: str | None = None,
    metrics: Mapping[str, float] | None = None,
    plots: bool | None = None,
    output_dir: str | os.PathLike | None = None,
) -> KOModelCardData:
    """Fill a :class:`KOModelCardData` from a trainer (its card callback's records, args, model, log history).

    Reads only: the trainer, its arguments and accelerate's state are left exactly as they were. Every local path
    the card shows is portable (:mod:`ko_hf.card.portable`: relative to the directory the run started in, ``~/...``, no
    user name) and every secret redacted (``ko_hf.redaction``).
    """
    callback = _card_callback(trainer)
    args = trainer.args
    d = copy.deepcopy(callback.card_data)  # the card's additions do not leak into what the callback recorded
    model = trainer.model
    output_dir = Path(output_dir or args.output_dir)
    machine = Machine.here()

    if not callback.trained:  # card written without train(): describe what there is now
        d.targets = [{"name": n, "shape": list(p.shape)} for n, p in callback._targets(model, args)]
        record_run(d, args, trainer.optimizer, args.train_batch_size)
    if model is not None and not d.condensation_end:
        d.condensation_end = callback.measure(model, args)

    # model and its origin; where it is (the folder the run wrote, the Hub repository it is pushed to)
    d.hub_model_id = getattr(trainer, "hub_model_id", None) or args.hub_model_id
    d.output_dir = portable_path(str(args.output_dir), machine=machine)
    d.model_name = model_name or d.model_name or (args.hub_model_id.split("/")[-1] if args.hub_model_id
                                                  else output_dir.name)
    inner = unwrap_model(model)
    config = getattr(inner, "config", None)
    origin = resolve_base_model(finetuned_from or getattr(config, "_name_or_path", None)
                                or getattr(inner, "name_or_path", None) or "")
    _record_model(d, model, inner, origin)
    d.base_model_path = portable_path(origin.path, machine=machine) if origin.path else None
    d.language = language
    if license:
        d.license, d.license_name, d.license_link, d.license_source = license, None, None, "given"
    elif origin.license:
        d.license, d.license_name, d.license_link = origin.license, origin.license_name, origin.license_link
        d.license_source = "base model"
    d.tags = card_tags(d.collision, list(tags) if isinstance(tags, (list, tuple)) else tags)
    if d.adapter:  # what PEFT's own card tags an adapter with (its base-model tag only for a Hub id)
        extra = d.adapter["tags"] + ([f"base_model:adapter:{d.base_model}"] if d.base_model else [])
        d.tags += [t for t in extra if t not in d.tags]
    if tasks:
        d.pipeline_tag = tasks if isinstance(tasks, str) else list(tasks)[0]

    _record_dataset(d, trainer, config, dataset_info, dataset_tags, dataset, dataset_args, machine)
    options = (_finetune_options(d, finetune_options, args.seed, machine, origin) if finetune_options is not None
               else None)

    # results: the callback's records, else the log history; explicit metrics win
    history = trainer.state.log_history
    if not d.eval_metrics:
        d.eval_metrics = _metrics_from_history(history, "eval_")
    if not d.test_metrics:
        d.test_metrics = _metrics_from_history(history, "test_")
    for key, value in (metrics or {}).items():
        if key.startswith("test_"):
            d.test_metrics[key[5:]] = float(value)
        else:
            d.eval_metrics[key.removeprefix("eval_")] = float(value)
    if not d.ko_history:
        d.ko_history = [{"step": e.get("step", 0), **{k: v for k, v in e.items() if k.startswith("ko/")}}
                        for e in history if any(k.startswith("ko/") for k in e)]

    # run: how it went (diverged? resumed?), its settings, how to reproduce it
    d.diverged = divergence(history, dict(callback._targets(model, args)))
    _record_resume(d, trainer, machine)
    d.warnings = _gathered_warnings(trainer)
    d.non_default_hyperparameters = redact_mapping(portable_values(non_default_hyperparameters(args), machine))
    if d.global_step is None and trainer.state.global_step:
        d.global_step = int(trainer.state.global_step)
    runtimes = [e["train_runtime"] for e in history if "train_runtime" in e]
    d.train_runtime = float(runtimes[-1]) if runtimes else None
    d.versions = framework_versions()
    if d.adapter:
        d.versions["PEFT"] = d.adapter["version"]
    command = callback.command or reproduce_command
    scratch = scratch_command(command, machine, origin) if command else None
    d.reproduce_command, d.reproduce_placeholders = scratch if scratch else (None, False)
    d.reproduce_directory = portable_directory(machine) if d.reproduce_command else None
    d.reproduce_snippet = python_snippet(d, getattr(config, "num_labels", None), options)

    d.plots, d.plots_note = [], None
    if callback.plots if plots is None else plots:
        from ..targets import unwrapped_named_parameters

        weights = dict(unwrapped_named_parameters(model)) if model is not None else {}
        draw_card_plots(d, weights, callback.start_weights, callback.start_weights_step, output_dir)
    return d


def write_model_card(trainer: Any, **kwargs: Any) -> Path | None:
    """Write ``README.md`` (and the condensation pictures) into ``args.output_dir``; main process only.

    Takes ``Trainer.create_model_card``'s arguments plus ``dataset_info`` (a ``TextClassificationData`` or a
    dict with name / source / splits / label_names / citation, and the facts of :data:`DATA_FACTS` when known),
    ``reproduce_command``, ``metrics`` (extra results, e.g. ``{"test_accuracy": 0.93}``) and ``plots`` (override
    the callback's setting). Returns the card's path (None on other processes).
    """
    if not trainer.is_world_process_zero():
        return None
    output_dir = Path(kwargs.pop("output_dir", None) or trainer.args.output_dir)
    card_data = build_card_data(trainer, output_dir=output_dir, **kwargs)
    text = redact_text(scrub_text(render_model_card(card_data), Machine.here()))  # last guards: see each
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "README.md"
    path.write_text(text, encoding="utf-8")
    logger.info("model card written to %s", path)
    return path
