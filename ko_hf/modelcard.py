"""The Hub model card of a KO run: how the model was trained and how KO shaped its head.

Trainer's own card is wrong for a custom optimizer (it reports ``args.optim`` and the default learning rate, a
"multi-GPU" setup on a CPU run, an empty base-model link for local models). Here, as in sentence-transformers:

* :class:`KOModelCardCallback` collects facts while training runs: the collision targets and their shapes,
  the optimizer actually built (class and real hyperparameters from its ``param_groups``), the condensation of
  every target at the start and at the end of training, the ``ko/`` metric history and the evaluation metrics;
* :class:`KOModelCardData` holds them;
* :func:`render_model_card` turns them into Markdown with YAML metadata that ``huggingface_hub.ModelCard``
  parses (base model, datasets, tags, ``model-index`` results);
* :func:`write_model_card` (what ``KOTrainer.create_model_card`` and hence ``push_to_hub`` call) fills the data
  from a trainer, draws the condensation pictures when matplotlib is installed, and writes ``README.md``.

Nothing here touches the network, and the card only reads the trainer: it builds no arguments object (a new
``TrainingArguments`` resets accelerate's shared state under the running trainer) and changes no state.

Every string that comes from the user or the data (labels, names, paths, ids) is escaped where the body shows
it (:func:`md_text`, :func:`md_code`, :func:`md_fence`); the YAML metadata is written by ``yaml.dump``, which
quotes what needs quoting, and holds no absolute local path.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import importlib.metadata
import json
import os
import platform
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from string import Template
from typing import Any, Iterator, Mapping

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState
from transformers.utils import logging

from .base_model import BaseModelOrigin, is_hub_id, resolve_base_model
from .card_escape import md_code, md_fence, md_text, visible
from .collision import neuron_similarity, weight_correlation
from .hub import hub_offline_flag
from .logs import logged_metric
from .non_default import field_default, non_default_fields, plain
from .portable import portable_command, portable_option, portable_path  # noqa: F401
from .targets import unwrap_model as _unwrap_model

logger = logging.get_logger(__name__)

__all__ = [
    "KO_CITATION",
    "KOModelCardData",
    "KOModelCardCallback",
    "render_model_card",
    "write_model_card",
    "is_hub_id",
    "hub_required",
    "BaseModelOrigin",
    "resolve_base_model",
    "ko_field_names",
    "non_default_fields",
    "portable_command",
    "md_text",
    "md_code",
    "md_fence",
]

KO_PAPER_URL = "https://arxiv.org/abs/2505.14777"
KO_CITATION = """@article{feng2025ko,
  title   = {KO: Kinetics-inspired Neural Optimizer with PDE Simulation Approaches},
  author  = {Feng, Mingquan and Huang, Yixin and Fu, Yifan and Wang, Shaobo and Yan, Junchi},
  journal = {arXiv preprint arXiv:2505.14777},
  year    = {2025}
}"""
PLOTS_INSTALL_HINT = 'pip install "ko-hf[plots]"'
CURVES_FILE = "ko_condensation.png"

#: What each hard-collision pairing does, for the KO section.
PAIRING_TEXT = {
    "dsmc": "(DSMC candidate pairs: a random perfect matching of the neurons each step; each accepted pair collides "
            "once as hard spheres, conserving momentum and energy)",
    "all": "(Eq. 8 as printed: every accepted pair of neurons at once; energy is not conserved)",
}
#: KO settings the KO section shows on lines of their own; every other KO field gets a generic line.
KO_FIELDS_SHOWN = (
    "collision",
    "coll_coef",
    "collision_targets",
    "collision_distance_scale",
    "collision_pairing",
    "collision_include_self",
    "collision_seed",
)
#: TrainingArguments fields that say nothing about how the model was trained (paths, logging, saving, Hub).
IGNORED_HYPERPARAMETERS = {
    "output_dir", "overwrite_output_dir", "logging_dir", "logging_strategy", "logging_first_step", "logging_steps",
    "logging_nan_inf_filter", "eval_strategy", "evaluation_strategy", "eval_steps", "eval_delay", "save_strategy",
    "save_steps", "save_total_limit", "save_safetensors", "save_on_each_node", "save_only_model", "report_to",
    "run_name", "disable_tqdm", "do_train", "do_eval", "do_predict", "push_to_hub", "hub_model_id",
    "hub_strategy", "hub_token", "hub_private_repo", "hub_always_push", "hub_revision", "push_to_hub_model_id",
    "push_to_hub_organization", "push_to_hub_token", "local_rank", "use_cpu", "no_cuda", "use_mps_device",
    "trackio_space_id", "project", "log_level", "log_level_replica", "log_on_each_node", "resume_from_checkpoint",
    "load_best_model_at_end", "metric_for_best_model", "greater_is_better", "ignore_data_skip",
    "include_for_metrics", "dataloader_num_workers", "dataloader_pin_memory", "dataloader_persistent_workers",
    "dataloader_prefetch_factor", "skip_memory_metrics", "print_config", "restore_callback_states_from_checkpoint",
}

#: Names under which evaluation metrics arrive, mapped to (model-index metric type, display name, metric args).
RESULT_METRICS = {
    "accuracy": ("accuracy", "Accuracy", None),
    "macro_f1": ("f1", "Macro F1", {"average": "macro"}),
    "f1_macro": ("f1", "Macro F1", {"average": "macro"}),
    "f1": ("f1", "F1", None),
    "weighted_f1": ("f1", "Weighted F1", {"average": "weighted"}),
}

# ==================================================================================================== card data


@dataclass
class KOModelCardData:
    """Everything the card says. Filled by :class:`KOModelCardCallback` and :func:`write_model_card`."""

    model_name: str | None = None
    #: The repository this card is pushed to (``args.hub_model_id``), if set.
    hub_model_id: str | None = None
    #: A Hub model id, or None: only a Hub id goes into the ``base_model`` metadata.
    base_model: str | None = None
    #: The local folder the weights were loaded from (said in the body only), when they came from one.
    base_model_path: str | None = None
    #: Where the Hub id of a local base-model folder was found (e.g. "its README.md"), when it was.
    base_model_evidence: str | None = None
    #: The model class that was trained (the classifier, under any PEFT / compile / DDP wrapper).
    architecture: str | None = None
    num_parameters: int | None = None
    num_trainable_parameters: int | None = None
    language: str | list[str] | None = None
    license: str | None = None
    license_name: str | None = None
    license_link: str | None = None
    #: "given" (create_model_card(license=...)) or "base model" (copied from the base model's card)
    license_source: str | None = None
    tags: list[str] = field(default_factory=list)
    pipeline_tag: str = "text-classification"
    library_name: str = "transformers"
    #: A PEFT adapter: {"type": "LORA", "config_class": "LoraConfig", "settings": {non-default fields},
    #: "version": peft version, "tags": [...]}; None for a full fine-tune.
    adapter: dict[str, Any] | None = None

    # dataset
    datasets: list[str] = field(default_factory=list)
    dataset_name: str | None = None
    dataset_source: str | None = None
    dataset_config: str | None = None
    dataset_splits: dict[str, int] = field(default_factory=dict)
    label_names: list[str] = field(default_factory=list)
    dataset_citation: str | None = None
    #: True when the data was read from this machine (not from the Hub): the metadata names it by its folder
    #: or file name and marks it local.
    dataset_local: bool = False
    #: Inputs truncated to this many tokens (``FinetuneOptions.max_length``), when known.
    max_length: int | None = None
    #: {"train": n, "validation": n, "test": n}: the splits that are seeded, stratified subsets of this size.
    subsets: dict[str, int] = field(default_factory=dict)
    #: Seed of the subsets (and of a carved validation split).
    data_seed: int | None = None

    # KO
    collision: str = "none"
    coll_coef: float | None = None
    distance_scale: float | None = None
    include_self: bool | None = None
    collision_seed: int | None = None
    #: Every KO field of ``KOTrainingArguments`` (:func:`ko_field_names`) as the run used it.
    ko_arguments: dict[str, Any] = field(default_factory=dict)
    #: [{"name": ..., "shape": [N, D]}]
    targets: list[dict[str, Any]] = field(default_factory=list)
    #: {"class": "KOAdamW", "base_class": "torch.optim.AdamW", "hyperparameters": {...}}
    optimizer: dict[str, Any] = field(default_factory=dict)
    lr_scheduler: str | None = None
    #: {target: {"weight_correlation": ..., "neuron_similarity": ...}}
    condensation_start: dict[str, dict[str, float]] = field(default_factory=dict)
    #: The step ``condensation_start`` was measured at: 0, or the resume point of a run resumed from a
    #: checkpoint that did not record its start.
    condensation_start_step: int = 0
    condensation_end: dict[str, dict[str, float]] = field(default_factory=dict)
    #: log entries (``step`` plus the ``ko/`` keys) from the logging steps
    ko_history: list[dict[str, float]] = field(default_factory=list)

    # results and run
    eval_metrics: dict[str, float] = field(default_factory=dict)
    eval_split: str = "validation"
    test_metrics: dict[str, float] = field(default_factory=dict)
    non_default_hyperparameters: dict[str, Any] = field(default_factory=dict)
    total_train_batch_size: int | None = None
    per_device_train_batch_size: int | None = None
    gradient_accumulation_steps: int | None = None
    #: Processes that trained together (data parallel), as the running job reported it.
    world_size: int | None = None
    global_step: int | None = None
    epochs: float | None = None
    train_runtime: float | None = None
    device: str | None = None
    precision: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    reproduce_command: str | None = None
    #: The directory local paths of ``reproduce_command`` are relative to (its name only).
    reproduce_directory: str | None = None
    reproduce_snippet: str | None = None
    #: [(caption, relative file name)] of the pictures next to the card
    plots: list[tuple[str, str]] = field(default_factory=list)
    plots_note: str | None = None

    @property
    def ko_applied(self) -> bool:
        return self.collision != "none"

    def accepted_pair_fractions(self) -> list[tuple[int, float]]:
        return _series(self.ko_history, "accepted_pair_fraction")

    def grad_change_ratios(self) -> list[tuple[int, float]]:
        return _series(self.ko_history, "grad_change_ratio")

    def grad_cosines(self) -> list[tuple[int, float]]:
        return _series(self.ko_history, "grad_cosine")

    def dataset_identity(self) -> tuple[str, str]:
        """(type, name) of the model-index dataset: its Hub id as type when there is one, ``local`` for data read
        from this machine, else the name it was given."""
        name = self.dataset_name or (self.datasets[0] if self.datasets else "custom")
        if self.datasets:
            return self.datasets[0], name
        return ("local" if self.dataset_local else name), name

    def metadata(self):
        """The YAML metadata as a ``huggingface_hub.ModelCardData``."""
        from huggingface_hub import EvalResult, ModelCardData

        eval_results = []
        dataset_type, dataset_name = self.dataset_identity()
        for split, metrics in ((self.eval_split, self.eval_metrics), ("test", self.test_metrics)):
            for key, value in metrics.items():
                if key not in RESULT_METRICS or not _is_number(value):
                    continue
                metric_type, metric_name, metric_args = RESULT_METRICS[key]
                eval_results.append(
                    EvalResult(
                        task_type=self.pipeline_tag,
                        task_name="Text Classification",
                        dataset_type=dataset_type,
                        dataset_name=dataset_name,
                        dataset_config=self.dataset_config,
                        dataset_split=split,
                        metric_type=metric_type,
                        metric_name=f"{metric_name} ({split})",
                        metric_value=round(float(value), 6),
                        metric_args=metric_args,
                    )
                )
        return ModelCardData(
            base_model=self.base_model,
            datasets=list(self.datasets) or None,
            language=self.language,
            license=self.license,
            license_name=self.license_name,
            license_link=self.license_link,
            library_name=self.library_name,
            pipeline_tag=self.pipeline_tag,
            tags=list(self.tags) or card_tags(self.collision),
            model_name=self.model_name or "model",
            eval_results=eval_results or None,
            metrics=sorted({RESULT_METRICS[k][0] for m in (self.eval_metrics, self.test_metrics) for k in m
                            if k in RESULT_METRICS}) or None,
        )


def card_tags(collision: str, extra: list[str] | str | None = None) -> list[str]:
    """``ko-optimizer`` + ``collision-<type>`` for a KO run, ``ko-baseline`` (and no KO claim) for ``none``."""
    tags = ["ko-optimizer", f"collision-{collision}"] if collision != "none" else ["ko-baseline"]
    tags += ["text-classification", "ko-hf"]
    for tag in [extra] if isinstance(extra, str) else extra or []:
        if tag not in tags and not (collision == "none" and (tag == "ko-optimizer" or tag.startswith("collision-"))):
            tags.append(tag)
    return tags


# ==================================================================================================== helpers


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _series(history: list[dict[str, Any]], metric: str) -> list[tuple[int, float]]:
    """``(step, value)`` of the aggregate ``ko/<metric>`` (the single target's value when there is one)."""
    values = [(int(e.get("step", 0)), logged_metric(e, metric)) for e in history]
    return [(step, value) for step, value in values if value is not None]


def condensation(weight: torch.Tensor) -> dict[str, float] | None:
    """Weight correlation and neuron similarity of a weight's rows (None for fewer than two rows)."""
    rows = weight.detach().reshape(weight.shape[0], -1)
    if rows.shape[0] < 2:
        return None
    return {"weight_correlation": weight_correlation(rows), "neuron_similarity": neuron_similarity(rows)}


def optimizer_settings(optimizer: Any) -> dict[str, Any]:
    """Class and real hyperparameters of the optimizer that stepped the model (unwrapping accelerate).

    The learning rate is each group's ``initial_lr`` (the peak the scheduler scales) when a scheduler set it:
    at the first step a warm-up has already scaled ``lr`` itself down to 0.
    """
    from .optim import CollisionMixin

    optimizer = getattr(optimizer, "optimizer", optimizer)
    if optimizer is None:
        return {}
    cls = type(optimizer)
    base = cls
    if isinstance(optimizer, CollisionMixin):
        base = next(c for c in cls.__mro__[1:] if issubclass(c, torch.optim.Optimizer)
                    and not issubclass(c, CollisionMixin))
    groups = optimizer.param_groups
    target_groups = [g for g in groups if g.get("collision", "none") != "none"]
    reference = (target_groups or groups or [{}])[0]
    hyper: dict[str, Any] = {}
    lrs = sorted({float(g.get("initial_lr", g.get("lr", 0.0))) for g in groups})
    if lrs:
        hyper["lr"] = lrs[0] if len(lrs) == 1 else lrs
    for key in ("betas", "momentum", "dampening", "eps"):  # always shown when the optimizer has them
        if key in reference:
            value = reference[key]
            hyper[key] = list(value) if isinstance(value, tuple) else value
    for key in ("nesterov", "amsgrad", "maximize", "fused", "foreach"):  # shown only when switched on
        if reference.get(key):
            hyper[key] = reference[key]
    decays = sorted({float(g.get("weight_decay", 0.0)) for g in groups if g["params"]})
    if decays:
        hyper["weight_decay"] = decays[-1]
        if len(decays) > 1:
            hyper["weight_decay_note"] = "biases and LayerNorm weights: " + ", ".join(f"{d:g}" for d in decays[:-1])
    if target_groups:
        hyper["weight_decay_targets"] = float(reference.get("weight_decay", 0.0))
    return {
        "class": cls.__name__,
        "base_class": f"{base.__module__}.{base.__name__}".replace("torch.optim.adamw.", "torch.optim.")
        .replace("torch.optim.sgd.", "torch.optim.").replace("torch.optim.adam.", "torch.optim."),
        "base_name": base.__name__,
        "hyperparameters": hyper,
    }


def running_world(args: Any) -> tuple[int, str | None]:
    """(processes training together, torch.distributed backend or None) of the running job.

    Read from ``torch.distributed`` when a process group is up (what DDP really uses), else from the arguments'
    own distributed state.
    """
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return int(dist.get_world_size()), str(dist.get_backend())
    return max(int(getattr(args, "world_size", 1) or 1), 1), None


def describe_device(args: Any, world_size: int | None = None, backend: str | None = None) -> tuple[str, str]:
    """(device, precision) as actually used, e.g. ("CPU", "fp32"), ("CPU, 2 processes (DDP, gloo)", "fp32") or
    ("4 × NVIDIA H100 (DDP, 4 processes)", "bf16 mixed precision")."""
    device = args.device
    world = world_size if world_size is not None else max(int(getattr(args, "world_size", 1) or 1), 1)
    mode = getattr(getattr(args, "parallel_mode", None), "value", None)
    mode = "DDP" if mode in (None, "distributed") else mode
    how = f"{mode}, {backend}" if backend else mode
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device) if torch.cuda.is_available() else "GPU"
        gpus = world * max(int(args.n_gpu), 1) if world > 1 else max(int(args.n_gpu), 1)
        text = f"{gpus} × {name}" if gpus > 1 else f"1 GPU ({name})"
        if world > 1:
            text += f" ({how}, {world} processes)"
        elif gpus > 1:
            text += " (torch.nn.DataParallel)"
    elif device.type == "cpu":
        text = "CPU" if world == 1 else f"CPU, {world} processes ({how})"
    elif device.type == "mps":
        text = "Apple GPU (MPS)"
    else:
        text = device.type.upper() if world == 1 else f"{world} × {device.type.upper()} ({how})"
    precision = "bf16 mixed precision" if args.bf16 else "fp16 mixed precision" if args.fp16 else "fp32"
    if getattr(args, "tf32", None):
        precision += " (TF32 matmuls)"
    return text, precision


def framework_versions() -> dict[str, str]:
    versions = {"Python": platform.python_version()}
    for label, dist in (("ko-hf", "ko-hf"), ("Transformers", "transformers"), ("PyTorch", "torch"),
                        ("Datasets", "datasets"), ("Tokenizers", "tokenizers"), ("Accelerate", "accelerate"),
                        ("huggingface_hub", "huggingface_hub")):
        try:
            versions[label] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            if dist == "ko-hf":
                from . import __version__

                versions[label] = __version__
            else:
                versions[label] = "not installed"
    return versions


def ko_field_names() -> tuple[str, ...]:
    """The fields ``KOTrainingArguments`` adds to ``TrainingArguments``: the KO settings, in declaration order.

    Derived from the dataclass, so a new KO setting reaches the card's KO section, its reproduce snippet and the
    callback's records without touching this module.
    """
    from transformers import TrainingArguments

    from .trainer import KOTrainingArguments

    base = {f.name for f in fields(TrainingArguments)}
    return tuple(f.name for f in fields(KOTrainingArguments) if f.init and f.name not in base)


def _accelerator_config_default() -> dict[str, Any]:
    try:
        from transformers.trainer_pt_utils import AcceleratorConfig
    except ImportError:  # pragma: no cover - moved in another transformers version
        return {}
    return {f.name: plain(field_default(f)) for f in fields(AcceleratorConfig)}


def non_default_hyperparameters(args: Any) -> dict[str, Any]:
    """Training arguments that differ from ``KOTrainingArguments``' defaults (KO fields, tokens and noise left out).

    Compared with the dataclass's declared defaults: the card never constructs a ``TrainingArguments``.
    """
    skip = set(IGNORED_HYPERPARAMETERS) | set(ko_field_names())
    values = args.to_dict()
    return {
        key: value
        for key, value in non_default_fields(args, values=values, skip=skip,
                                             defaults={"accelerator_config": _accelerator_config_default()}).items()
        if not key.startswith("_") and not key.endswith("_token")  # secrets (what to_dict redacts)
    }


# ==================================================================================================== the model


def unwrap_model(model: Any) -> Any:
    """The model that was trained, under PEFT, ``torch.compile`` and DDP wrappers (None for None)."""
    return None if model is None else _unwrap_model(model)


def _peft_model(model: Any) -> Any:
    peft = sys.modules.get("peft")  # a PeftModel exists only if peft was imported
    peft_model = getattr(peft, "PeftModel", None) if peft is not None else None
    return model if peft_model is not None and isinstance(model, peft_model) else None


#: PEFT config fields the reproduce snippet leaves out: filled in by PEFT itself (type, version, base path...)
PEFT_SKIPPED_FIELDS = frozenset({"peft_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision",
                                 "inference_mode"})


def adapter_facts(model: Any) -> dict[str, Any] | None:
    """What PEFT's own card says about an adapter (type, tags, version) plus its non-default config, or None."""
    peft_model = _peft_model(model)
    if peft_model is None:
        return None
    import transformers

    config = peft_model.active_peft_config
    kind = getattr(config.peft_type, "value", config.peft_type)
    base = peft_model.get_base_model()
    tags = sorted(set(getattr(base, "model_tags", None) or []))
    if isinstance(base, transformers.PreTrainedModel):
        tags.append("transformers")
    if kind == "LORA":
        tags.append("lora")
    try:
        version = importlib.metadata.version("peft")
    except importlib.metadata.PackageNotFoundError:
        version = getattr(sys.modules.get("peft"), "__version__", "unknown")
    quantization = getattr(getattr(base, "config", None), "quantization_config", None)
    return {
        "type": str(kind),
        "config_class": type(config).__name__,
        "settings": non_default_fields(config, skip=PEFT_SKIPPED_FIELDS),
        "version": version,
        "tags": tags,
        "quantization": plain(quantization.to_dict() if hasattr(quantization, "to_dict") else quantization)
        if quantization else None,
    }


def _dataset_facts(dataset_info: Any) -> dict[str, Any]:
    if dataset_info is None:
        return {}
    if isinstance(dataset_info, Mapping):
        info = dict(dataset_info)
        splits = info.get("splits") or {}
        if not isinstance(splits, Mapping):
            splits = {}
        return {"name": info.get("name"), "source": info.get("source"),
                "splits": {k: int(v) for k, v in splits.items()},
                "label_names": list(info.get("label_names") or []), "citation": info.get("citation")}
    splits = {}
    dataset = getattr(dataset_info, "dataset", None)
    if dataset is not None:
        splits = {split: len(ds) for split, ds in dataset.items()}
    return {"name": getattr(dataset_info, "name", None), "source": getattr(dataset_info, "source", None),
            "splits": splits, "label_names": list(getattr(dataset_info, "label_names", []) or []),
            "citation": getattr(dataset_info, "citation", None)}


def _split_metrics(metrics: Mapping[str, Any], prefix: str) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if key.startswith(prefix) and _is_number(value):
            out[key[len(prefix):]] = float(value)
    return out


def _safe_file_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "target"


def similarity_plot_file(target: str) -> str:
    return f"ko_similarity_{_safe_file_part(target.removesuffix('.weight'))}.png"


@contextlib.contextmanager
def hub_required(action: str = "pushing to the Hugging Face Hub") -> Iterator[None]:
    """Turns an offline / connection failure inside the block into an error that says the Hub is needed."""
    flag = hub_offline_flag()
    if flag:
        raise RuntimeError(
            f"{action} needs the Hugging Face Hub, but {flag} is set. The model and its card (README.md) are saved "
            f"locally in output_dir; unset {flag.split('=')[0]}, log in (`hf auth login`) and push again."
        )
    try:
        yield
    except (OSError, ConnectionError) as error:  # requests/httpx connection errors derive from OSError
        raise RuntimeError(
            f"{action} needs the Hugging Face Hub, which could not be reached ({type(error).__name__}: {error}). "
            "The model and its card (README.md) are saved locally in output_dir; push again once online."
        ) from error


# ==================================================================================================== callback


class KOModelCardCallback(TrainerCallback, ExportableState):
    """Collects what the model card says while the trainer runs.

    ``KOTrainer`` adds one automatically (pass your own in ``callbacks=`` to change ``plots``). With
    ``plots=True`` it keeps a CPU copy of every target's weight at the start of training, so that
    ``create_model_card`` can draw start-vs-end similarity heatmaps (when matplotlib is installed).

    What the card calls "start of training" (the targets' condensation, and their weights for the heatmaps up to
    :attr:`max_saved_elements` elements each) is saved with every checkpoint (``trainer_state.json``, as an
    ``ExportableState``), so a resumed run's card describes the real start, not the resume point.
    """

    #: targets larger than this (elements) are not copied for the heatmap
    max_plot_elements = 4 * 1024 * 1024
    #: targets up to this size (elements) keep their start weights in checkpoints (base64 float32 in JSON)
    max_saved_elements = 1 << 17

    def __init__(self, plots: bool = True, trainer: Any = None) -> None:
        self.plots = plots
        self.trainer = trainer
        self.card_data = KOModelCardData()
        self.start_weights: dict[str, torch.Tensor] = {}
        #: the step each of ``start_weights`` was taken at (0, or the resume point for a target too large to save)
        self.start_weights_step: dict[str, int] = {}
        #: what a checkpoint keeps of the start: {"step", "condensation", "weights"}
        self.start_record: dict[str, Any] | None = None
        self.trained = False

    @classmethod
    def attach(cls, trainer: Any) -> "KOModelCardCallback":
        """The trainer's card callback: the one passed in ``callbacks=`` if any, else a new one, added."""
        for callback in trainer.callback_handler.callbacks:
            if isinstance(callback, cls):
                callback.trainer = trainer
                return callback
        callback = cls(trainer=trainer)
        trainer.add_callback(callback)
        return callback

    def state(self) -> dict[str, Any]:
        """Saved in every checkpoint's ``trainer_state.json`` (``stateful_callbacks``)."""
        return {"args": {"plots": self.plots}, "attributes": {"start_record": self.start_record}}

    # -------------------------------------------------------------- what the trainer knows

    def _targets(self, model: Any, args: Any = None) -> list[tuple[str, torch.Tensor]]:
        if model is None:
            return []
        names = list(getattr(self.trainer, "collision_targets", None) or [])
        if not names:
            from .targets import collision_target_names

            args = args if args is not None else getattr(self.trainer, "args", None)
            try:
                names = collision_target_names(model, getattr(args, "collision_targets", None))
            except ValueError:
                return []
        from .targets import unwrapped_named_parameters

        params = dict(unwrapped_named_parameters(model))  # the targets' names through PEFT / compile / DDP
        return [(name, params[name]) for name in names if name in params]

    def _model(self, model: Any) -> Any:
        if self.trainer is not None and getattr(self.trainer, "model", None) is not None:
            return self.trainer.model
        return model

    def measure(self, model: Any, args: Any = None) -> dict[str, dict[str, float]]:
        result = {}
        for name, param in self._targets(self._model(model), args):
            values = condensation(param)
            if values is not None:
                result[name] = values
        return result

    def _saved_start(self, state: Any) -> dict[str, Any] | None:
        """The start record a resumed run's checkpoint holds (None for a fresh run or an older checkpoint)."""
        if not state.global_step:
            return None
        stored = (getattr(state, "stateful_callbacks", None) or {}).get(type(self).__name__)
        if isinstance(stored, list):
            stored = stored[0] if stored else None
        record = (stored or {}).get("attributes", {}).get("start_record") if isinstance(stored, dict) else None
        return record if isinstance(record, dict) and "condensation" in record else None

    # -------------------------------------------------------------- events

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        data = self.card_data
        model = self._model(model)
        self.trained = True
        data.collision = getattr(args, "collision", "none")
        data.coll_coef = getattr(args, "coll_coef", None)
        data.distance_scale = getattr(args, "collision_distance_scale", None)
        data.include_self = getattr(args, "collision_include_self", None)
        data.collision_seed = getattr(args, "collision_seed", None)
        data.ko_arguments = {name: copy.deepcopy(getattr(args, name, None)) for name in ko_field_names()}
        targets = self._targets(model, args)
        data.targets = [{"name": name, "shape": list(param.shape)} for name, param in targets]
        data.eval_metrics, data.test_metrics = {}, {}
        # on resume, the log history up to the checkpoint is back in ``state``: the curves and the first logged
        # collision statistics are those of the real start
        data.ko_history = []
        for entry in state.log_history if state.global_step else []:
            self.on_log(args, state, control, logs=entry, step=entry.get("step"))

        record = self._saved_start(state)
        if record is None:
            if state.global_step:
                logger.warning("the checkpoint does not record the start of training: the model card's start "
                               "condensation is measured at the resume point (step %d)", state.global_step)
            record = {"step": int(state.global_step), "condensation": self.measure(model, args),
                      "weights": {name: _encode_tensor(param) for name, param in targets
                                  if param.dim() >= 2 and param.numel() <= self.max_saved_elements}}
        self.start_record = record
        data.condensation_start = {name: dict(values) for name, values in record["condensation"].items()}
        data.condensation_start_step = int(record.get("step", 0))
        # heatmap "start" weights: the recorded ones, else (a target too large to record) the weights now
        self.start_weights, self.start_weights_step = {}, {}
        for name, param in targets if self.plots else []:
            saved = (record.get("weights") or {}).get(name)
            if saved is not None:
                self.start_weights[name] = _decode_tensor(saved)
                self.start_weights_step[name] = data.condensation_start_step
            elif param.dim() >= 2 and param.numel() <= self.max_plot_elements:
                self.start_weights[name] = _local_copy(param)
                self.start_weights_step[name] = int(state.global_step)

        optimizer = getattr(self.trainer, "optimizer", None) or optimizer
        data.optimizer = optimizer_settings(optimizer)
        data.lr_scheduler = str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))
        # the running job's shape, read now (before anything could touch the shared distributed state)
        world, backend = running_world(args)
        data.world_size = world
        data.per_device_train_batch_size = int(args.per_device_train_batch_size)
        data.gradient_accumulation_steps = int(args.gradient_accumulation_steps)
        # the batch the training loop really draws per process (Trainer's, which auto_find_batch_size may lower)
        per_step = int(getattr(self.trainer, "_train_batch_size", None) or args.train_batch_size)
        data.total_train_batch_size = per_step * data.gradient_accumulation_steps * world
        data.device, data.precision = describe_device(args, world_size=world, backend=backend)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        ko = {key: float(value) for key, value in logs.items() if key.startswith("ko/") and _is_number(value)}
        if not ko:
            return
        step = kwargs.get("step")
        entry = {"step": int(step if step is not None else state.global_step), **ko}
        history = self.card_data.ko_history
        if history and history[-1]["step"] == entry["step"]:
            history[-1].update(entry)
        else:
            history.append(entry)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        for prefix in ("eval_", "test_"):
            values = _split_metrics(metrics or {}, prefix)
            if values:
                (self.card_data.eval_metrics if prefix == "eval_" else self.card_data.test_metrics).update(values)

    def on_predict(self, args, state, control, metrics=None, **kwargs):
        values = _split_metrics(metrics or {}, "test_")
        if values:
            self.card_data.test_metrics.update(values)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.card_data.condensation_end = self.measure(model, args)
        self.card_data.global_step = int(state.global_step)
        self.card_data.epochs = float(state.epoch) if state.epoch is not None else None

    def on_push_begin(self, args, state, control, **kwargs):
        # push_to_hub goes to the network right after this event: fail early with a message that says why.
        with hub_required("push_to_hub"):
            pass


def _local_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A float32 CPU copy of a weight (the whole tensor, for a sharded DTensor too)."""
    tensor = tensor.detach()
    if hasattr(tensor, "full_tensor"):
        tensor = tensor.full_tensor()
    return tensor.float().cpu().clone()


def _encode_tensor(tensor: torch.Tensor) -> dict[str, Any]:
    data = _local_copy(tensor).contiguous().numpy().tobytes()
    return {"shape": list(tensor.shape), "float32_base64": base64.b64encode(data).decode("ascii")}


def _decode_tensor(entry: Mapping[str, Any]) -> torch.Tensor:
    data = bytearray(base64.b64decode(entry["float32_base64"]))
    return torch.frombuffer(data, dtype=torch.float32).reshape(entry["shape"]).clone()


# ==================================================================================================== rendering

MODEL_CARD_TEMPLATE = Template("""---
$metadata
---

# $title

$summary

## Dataset

$dataset

## Evaluation results

$results

$ko_heading

$ko_section
$adapter
## Training hyperparameters

$hyperparameters

## Training environment

$environment

## How to reproduce

$reproduce

## How to use

$usage

## Citation

$citations
""")


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if value == 0:
            return "0"
        return f"{value:.4g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.4f}".rstrip("0").rstrip(".")
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return str(value)


def _code(value: Any, *, cell: bool = False) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else _fmt(value)
    return md_code(text, cell=cell)


def _count(n: float, unit: str) -> str:
    """``1 epoch``, ``0.5 epochs``, ``3 epochs``."""
    return f"{_fmt(n)} {unit}" if n == 1 else f"{_fmt(n)} {unit}s"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    """A table of cells that are already Markdown (escaped with ``md_text`` / ``md_code(cell=True)``)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _hub_link(repo: str, kind: str = "") -> str:
    return f"[{md_text(repo)}](https://huggingface.co/{kind}{repo})" if is_hub_id(repo) else md_code(repo)


def _parameters(d: KOModelCardData) -> str:
    if not d.num_parameters:
        return ""
    text = f"{d.num_parameters:,} parameters"
    if d.num_trainable_parameters is not None and d.num_trainable_parameters != d.num_parameters:
        text += f", {d.num_trainable_parameters:,} trained"
    return text


def _summary(d: KOModelCardData) -> str:
    loaded_from = ""
    if d.base_model:
        origin = f"a fine-tuned version of {_hub_link(d.base_model)}"
        if d.base_model_path:
            loaded_from = (f" The base model was read from a local folder ({md_code(Path(d.base_model_path).name)});"
                           f" its Hub id comes from {d.base_model_evidence or 'the folder'}.")
    elif d.base_model_path:
        origin = (f"fine-tuned from a local checkpoint ({md_code(d.base_model_path)}; not a Hub id, so the metadata "
                  "carries no `base_model` link)")
    else:
        origin = f"a {md_text(d.architecture or 'model')} trained from a configuration (randomly initialised weights)"
    dataset = f" on **{md_text(d.dataset_name)}**" if d.dataset_name else ""
    labels = f" ({len(d.label_names)} labels)" if d.label_names else ""
    details = ", ".join(x for x in (md_code(d.architecture) if d.architecture else "", _parameters(d)) if x)
    if d.adapter:
        details += f"; trained as a {md_text(_adapter_name(d.adapter))} adapter with PEFT"
    arch = f" ({details})" if details else ""
    text = f"This model is {origin}{arch}, for text classification{dataset}{labels}.{loaded_from}"
    if d.ko_applied:
        names = ", ".join(md_code(t["name"]) for t in d.targets) or "the classification head"
        text += (f"\n\nIt was trained with [ko-hf](https://pypi.org/project/ko-hf/), using the KO optimizer "
                 f"([Feng et al., 2025]({KO_PAPER_URL})): **{md_text(d.collision)} collisions** between the neurons "
                 f"of {names} rewrote their gradients before each "
                 f"{md_text(d.optimizer.get('base_name', 'base optimizer'))} step, to fight *condensation* (neurons "
                 "collapsing onto the same direction). The section *How KO shaped this model* gives the settings "
                 "and the condensation measured at the start and end of training.")
    else:
        text += (f"\n\n**KO collisions were NOT applied**: this is a plain "
                 f"{md_text(d.optimizer.get('base_name', 'AdamW'))} baseline trained with ko-hf "
                 "(`collision=\"none\"`), e.g. for comparison with KO runs. Condensation metrics below are measured "
                 "for reference only.")
    text += "\n\n" + _license_line(d)
    return text


def _adapter_name(adapter: Mapping[str, Any]) -> str:
    return {"LORA": "LoRA"}.get(adapter["type"], adapter["type"])


def _license_line(d: KOModelCardData) -> str:
    if d.license and d.license_source == "base model":
        return (f"**License:** {md_code(d.license)}, the base model's (from its model card); set another with "
                "`create_model_card(license=...)`.")
    if d.license:
        return f"**License:** {md_code(d.license)}."
    return ("**License:** not recorded (no license in a model card of the base model on this machine). Check the "
            "base model's and the data's terms, and set it with `create_model_card(license=...)` or in this card's "
            "metadata.")


def _dataset_section(d: KOModelCardData) -> str:
    lines = []
    if d.dataset_name or d.datasets:
        name = d.dataset_name or d.datasets[0]
        lines.append(f"- **Name:** {md_text(name)}")
    if d.datasets:
        lines.append("- **Hub dataset:** " + ", ".join(_hub_link(x, "datasets/") for x in d.datasets)
                     + (" (read from a local copy)" if d.dataset_local else ""))
    elif d.dataset_source and d.dataset_source.startswith("package:"):
        lines.append(f"- **Source:** packaged with ko-hf: {md_code(d.dataset_source[len('package:'):])}")
    elif d.dataset_source:
        lines.append(f"- **Source:** local data, not on the Hub: {md_code(d.dataset_source)}")
    if d.dataset_config:
        lines.append(f"- **Configuration:** {md_code(d.dataset_config)}")
    if d.label_names:
        shown = d.label_names if len(d.label_names) <= 30 else d.label_names[:30]
        more = ", …" if len(d.label_names) > 30 else ""
        lines.append(f"- **Labels ({len(d.label_names)}):** " + ", ".join(md_code(x) for x in shown) + more)
    if d.max_length:
        lines.append(f"- **Input length:** texts truncated to {d.max_length} tokens (`max_length`)")
    if not lines:
        lines.append("The training data was not described when the card was generated (pass `dataset_info=` "
                     "to `create_model_card`).")
    if d.dataset_splits:
        lines.append("")
        rows = []
        for split, n in d.dataset_splits.items():
            note = ""
            if split in d.subsets:
                option = "max_train_samples" if split == "train" else "max_eval_samples"
                seed = f", seed {d.data_seed}" if d.data_seed is not None else ""
                note = f"a seeded, label-stratified subset (`{option}={d.subsets[split]}`{seed})"
            rows.append([md_text(split), f"{n:,}", note])
        if any(row[2] for row in rows):
            lines.append(_table(["split", "examples", "note"], rows))
        else:
            lines.append(_table(["split", "examples"], [row[:2] for row in rows]))
    return "\n".join(lines)


def _results_section(d: KOModelCardData) -> str:
    rows = []
    for split, metrics in ((d.eval_split, d.eval_metrics), ("test", d.test_metrics)):
        for key, value in metrics.items():
            if key in RESULT_METRICS or key == "loss":
                name = RESULT_METRICS[key][1] if key in RESULT_METRICS else "Loss"
                rows.append([md_text(split), name, _fmt(value)])
    if not rows:
        return ("No evaluation was run (give the trainer an `eval_dataset` and a `compute_metrics` that returns "
                "`accuracy` / `macro_f1`).")
    return _table(["split", "metric", "value"], rows)


def _start_label(d: KOModelCardData) -> str:
    return "start of training" if not d.condensation_start_step else f"resume point (step {d.condensation_start_step})"


def _condensation_rows(d: KOModelCardData) -> list[list[Any]]:
    rows = []
    for target in d.targets:
        name = target["name"]
        start, end = d.condensation_start.get(name), d.condensation_end.get(name)
        if not start and not end:
            continue
        for metric, label in (("weight_correlation", "weight correlation"), ("neuron_similarity", "neuron similarity")):
            a = start.get(metric) if start else None
            b = end.get(metric) if end else None
            change = f"{b - a:+.4f}" if a is not None and b is not None else "–"
            rows.append([md_code(name, cell=True), label, _fmt(a) if a is not None else "–",
                         _fmt(b) if b is not None else "–", change])
    return rows


def _ko_section(d: KOModelCardData) -> str:
    lines: list[str] = []
    opt = d.optimizer
    hyper = dict(opt.get("hyperparameters", {}))
    if opt:
        if d.ko_applied:
            lines.append(f"- **Optimizer:** {md_code(opt['class'])} = {md_code(opt['base_class'])} + KO collisions on "
                         "the targets (gradients are rewritten after clipping, before the base optimizer's step)")
        else:
            lines.append(f"- **Optimizer:** {md_code(opt['base_class'])} (class {md_code(opt['class'])}); no collision")
        note = hyper.pop("weight_decay_note", None)
        target_decay = hyper.pop("weight_decay_targets", None)
        settings = ", ".join(f"{md_text(k)} = {_code(v)}" for k, v in hyper.items())
        lines.append(f"- **Optimizer hyperparameters (from its parameter groups):** {settings}"
                     + (f"; weight decay 0 for {note.split(': ')[0]}" if note and note.endswith(": 0") else
                        f"; {note}" if note else ""))
        if target_decay is not None and target_decay != hyper.get("weight_decay"):
            lines.append(f"- **Weight decay of the collision targets:** {_code(target_decay)}")
        if d.lr_scheduler:
            lines.append(f"- **Learning-rate schedule:** {md_code(d.lr_scheduler)} (the learning rate above is its "
                         "peak)")
    else:
        lines.append("- **Optimizer:** not recorded (the card was generated before training)")
    if d.ko_applied:
        algorithm = "1, hard-sphere DSMC" if d.collision == "hard" else "2"
        lines.append(f"- **Collision:** {md_code(d.collision)} (KO paper, Alg. {algorithm})")
        lines.append(f"- **Collision coefficient (`coll_coef`):** {_code(d.coll_coef)}")
        if d.collision == "hard":
            lines.append(f"- **Distance scale λ (`collision_distance_scale`):** {_code(d.distance_scale)} "
                         "(acceptance U = exp(−λ·‖w_i − w_j‖); the paper uses 1)")
            pairing = d.ko_arguments.get("collision_pairing")
            if pairing:
                lines.append(f"- **Pairing (`collision_pairing`):** {_code(pairing)} {PAIRING_TEXT.get(pairing, '')}")
            lines.append(f"- **Collision seed:** {_code(d.collision_seed)}")
        else:
            lines.append(f"- **Include self (`collision_include_self`):** {_code(bool(d.include_self))}")
        if "collision_targets" in d.ko_arguments:
            targets = d.ko_arguments["collision_targets"]
            lines.append(f"- **Targets (`collision_targets`):** {_code(targets)}"
                         + (" (the default: the head)" if targets is None else ""))
        for name, value in d.ko_arguments.items():  # KO settings without a line of their own above
            if name not in KO_FIELDS_SHOWN:
                lines.append(f"- **{md_code(name)}:** {_code(plain(value))}")
    if d.targets:
        lines.append("")
        header = "Collision targets" if d.ko_applied else "Watched layers (no collision applied)"
        lines.append(f"**{header}** (each row of a weight is one neuron):")
        lines.append("")
        lines.append(_table(["parameter", "shape", "neurons × inputs"],
                            [[md_code(t["name"], cell=True), "×".join(str(s) for s in t["shape"]),
                              f"{t['shape'][0]} × {int(torch.Size(t['shape'][1:]).numel())}"] for t in d.targets]))
        if d.ko_applied and any(t["shape"][0] == 2 for t in d.targets):
            lines.append("")
            lines.append("*Note:* a 2-neuron head is degenerate for KO (with softmax cross-entropy its two gradient "
                         "rows are opposite): soft collision only rescales it and an accepted hard collision "
                         "replaces its gradient by a random direction of the same norm.")
    fractions = d.accepted_pair_fractions()
    ratios = d.grad_change_ratios()
    cosines = d.grad_cosines()
    if d.ko_applied and (fractions or ratios):
        lines.append("")
        lines.append("**Collision statistics** (averaged over each logging interval):")
        lines.append("")
        rows = []
        if fractions:
            mean = sum(v for _, v in fractions) / len(fractions)
            rows.append(["accepted-pair fraction (of candidate pairs)",
                         f"{_fmt(fractions[0][1])} (step {fractions[0][0]})",
                         f"{_fmt(fractions[-1][1])} (step {fractions[-1][0]})", _fmt(mean)])
        if ratios:
            mean = sum(v for _, v in ratios) / len(ratios)
            rows.append(["gradient change ‖g* − g‖/‖g‖", f"{_fmt(ratios[0][1])} (step {ratios[0][0]})",
                         f"{_fmt(ratios[-1][1])} (step {ratios[-1][0]})", _fmt(mean)])
        if cosines:
            mean = sum(v for _, v in cosines) / len(cosines)
            rows.append(["mean per-neuron cos(g*_i, g_i)", f"{_fmt(cosines[0][1])} (step {cosines[0][0]})",
                         f"{_fmt(cosines[-1][1])} (step {cosines[-1][0]})", _fmt(mean)])
        lines.append(_table(["statistic", "first logged", "last logged", "mean"], rows))
    rows = _condensation_rows(d)
    if rows:
        lines.append("")
        lines.append("**Condensation** (weight correlation: mean |cos(w_i, w_j)| over pairs of neurons; neuron "
                     "similarity: the max; lower means more diverse neurons):")
        lines.append("")
        step = f"end (step {d.global_step})" if d.global_step is not None else "end"
        lines.append(_table(["parameter", "metric", _start_label(d), step, "change"], rows))
        if d.condensation_start_step:
            lines.append("")
            lines.append(f"*The run was resumed from a checkpoint that did not record the start of training: the "
                         f"first column is the resume point, step {d.condensation_start_step}.*")
    if d.plots:
        lines.append("")
        for caption, file in d.plots:
            lines.append(f"![{md_text(caption)}]({file})")
            lines.append("")
    if d.plots_note:
        lines.append("")
        lines.append(d.plots_note)
    return "\n".join(lines).strip()


def _adapter_section(d: KOModelCardData) -> str:
    if not d.adapter:
        return ""
    a = d.adapter
    settings = ", ".join(f"{md_text(k)} = {_code(v)}" for k, v in a["settings"].items()) or "its defaults"
    lines = ["", "## Adapter (PEFT)", "",
             f"- **Method:** {md_text(_adapter_name(a))} with PEFT {md_text(a['version'])}; this repository holds "
             "the adapter weights (load them on top of the base model, e.g. with "
             "`peft.AutoPeftModelForSequenceClassification`)",
             f"- **{md_code(a['config_class'])} (values that differ from its defaults):** {settings}"]
    if a.get("quantization"):
        lines.append(f"- **Quantization of the base model:** {_code(a['quantization'])}")
    return "\n".join(lines) + "\n"


def _hyperparameters_section(d: KOModelCardData) -> str:
    lines = []
    if d.non_default_hyperparameters:
        lines.append("Only the values that differ from `KOTrainingArguments`' defaults (the KO settings are above):")
        lines.append("")
        lines += [f"- {md_code(k)}: {_code(v)}" for k, v in sorted(d.non_default_hyperparameters.items())]
    else:
        lines.append("All training arguments were `KOTrainingArguments`' defaults (the KO settings are above).")
    extra = []
    if d.total_train_batch_size:
        batch = f"total train batch size {d.total_train_batch_size}"
        world, accumulation = d.world_size or 1, d.gradient_accumulation_steps or 1
        if (world > 1 or accumulation > 1) and d.per_device_train_batch_size:
            parts = [f"{d.per_device_train_batch_size} per device"]
            if world > 1:
                parts.append(f"{world} processes")
            if accumulation > 1:
                parts.append(f"{accumulation} accumulation steps")
            batch += f" ({' × '.join(parts)})"
        extra.append(batch)
    if d.global_step is not None:
        extra.append(_count(d.global_step, "optimizer step"))
    if d.epochs is not None:
        extra.append(_count(round(d.epochs, 2), "epoch"))
    if d.train_runtime is not None:
        extra.append(f"{_fmt(round(d.train_runtime, 1))} s of training")
    if extra:
        lines.append("")
        lines.append("Run: " + ", ".join(extra) + ".")
    return "\n".join(lines)


def _environment_section(d: KOModelCardData) -> str:
    lines = []
    if d.device:
        lines.append(f"- **Device:** {md_text(d.device)}")
    if d.precision:
        lines.append(f"- **Precision:** {md_text(d.precision)}")
    if d.versions:
        lines.append("- **Framework versions:** " + ", ".join(f"{md_text(k)} {md_text(v)}"
                                                             for k, v in d.versions.items()))
    return "\n".join(lines) or "Not recorded."


def _reproduce_section(d: KOModelCardData) -> str:
    parts = []
    if d.reproduce_command:
        where = (f" from the directory it ran in ({md_code(d.reproduce_directory)})" if d.reproduce_directory
                 else "")
        parts.append(f"This command trained the model; local paths are relative to the directory it ran in, a "
                     f"local base-model folder with a Hub id is named by that id. Run it{where}:\n\n"
                     + md_fence(d.reproduce_command, "bash"))
    if d.reproduce_snippet:
        intro = ("The same run in Python (every setting that differs from the defaults):" if d.reproduce_command
                 else "In Python (every setting that differs from the defaults"
                 + ("" if "finetune(" in d.reproduce_snippet else
                    "; with your own tokenized `train_dataset` / `eval_dataset` of the dataset above") + "):")
        parts.append(f"{intro}\n\n" + md_fence(d.reproduce_snippet, "python"))
    return "\n\n".join(parts) or "Not recorded."


def _usage_section(d: KOModelCardData) -> str:
    reference = d.hub_model_id or d.model_name or "path/to/this/model"
    code = (f"from transformers import pipeline\n\n"
            f"classifier = pipeline(\"text-classification\", model={json.dumps(reference)})\n"
            f"print(classifier(\"Your text here\"))")
    return md_fence(code, "python")


def _citations(d: KOModelCardData) -> str:
    parts = [f"KO optimizer ([arXiv 2505.14777]({KO_PAPER_URL})):\n\n" + md_fence(KO_CITATION, "bibtex")]
    if d.dataset_citation:
        parts.append("Dataset:\n\n" + md_fence(d.dataset_citation.strip(), "bibtex"))
    return "\n\n".join(parts)


def render_model_card(card_data: KOModelCardData) -> str:
    """The card's Markdown, YAML metadata included."""
    d = card_data
    text = MODEL_CARD_TEMPLATE.substitute(
        metadata=d.metadata().to_yaml(),
        title=md_text(d.model_name or "KO fine-tuned model"),
        summary=_summary(d),
        dataset=_dataset_section(d),
        results=_results_section(d),
        ko_heading=("## How KO shaped this model" if d.ko_applied
                    else "## Optimizer (baseline: KO collisions NOT applied)"),
        ko_section=_ko_section(d),
        adapter=_adapter_section(d),
        hyperparameters=_hyperparameters_section(d),
        environment=_environment_section(d),
        reproduce=_reproduce_section(d),
        usage=_usage_section(d),
        citations=_citations(d),
    )
    return re.sub(r"\n{3,}", "\n\n", text)


# ==================================================================================================== from a trainer


def _py(value: Any) -> str:
    """A Python literal for ``value`` (``ast.literal_eval`` reads it back)."""
    return repr(plain(value))


def _call(name: str, kwargs: Mapping[str, Any], comments: Mapping[str, str] | None = None) -> str:
    lines = [f"{name}("]
    for key, value in kwargs.items():
        comment = f"  # {visible(comments[key])}" if comments and key in comments else ""
        lines.append(f"    {key}={_py(value)},{comment}")
    return "\n".join(lines) + "\n)"


def _ko_arguments_call(d: KOModelCardData) -> str:
    """``KOTrainingArguments(...)`` with every KO field the run used and every non-default training argument."""
    ko = dict(d.ko_arguments) or {"collision": d.collision, "coll_coef": d.coll_coef,
                                  "collision_distance_scale": d.distance_scale,
                                  "collision_include_self": d.include_self, "collision_seed": d.collision_seed}
    comments = {}
    if ko.get("collision_targets") is None and d.targets:
        comments["collision_targets"] = "the head: " + ", ".join(t["name"] for t in d.targets)
    settings = {"output_dir": d.model_name or "ko-model", **ko, **d.non_default_hyperparameters}
    return _call("KOTrainingArguments", settings, comments)


def _python_snippet(d: KOModelCardData, num_labels: int | None, options: Mapping[str, Any] | None = None) -> str:
    """A Python run with the same settings: ``finetune(options, args)`` when the run came from ``finetune`` (its
    options known), else the ``KOTrainer`` code, with the PEFT adapter config when there is one."""
    args_call = _ko_arguments_call(d)
    if options is not None:
        return ("from ko_hf import KOTrainingArguments\n"
                "from ko_hf.finetune import FinetuneOptions, finetune\n\n"
                f"options = {_call('FinetuneOptions', options)}\n"
                f"args = {args_call}\n"
                "finetune(options, args)")
    base = d.base_model or d.base_model_path or "<base model>"
    labels = f", num_labels={num_labels}" if num_labels else ""
    imports = "from transformers import AutoModelForSequenceClassification\n"
    adapter = ""
    if d.adapter:
        imports += f"from peft import {d.adapter['config_class']}, get_peft_model\n"
        adapter = f"model = get_peft_model(model, {_call(d.adapter['config_class'], d.adapter['settings'])})\n"
    return (
        f"{imports}from ko_hf import KOTrainer, KOTrainingArguments\n\n"
        f"model = AutoModelForSequenceClassification.from_pretrained({_py(base)}{labels})\n"
        f"{adapter}"
        f"args = {args_call}\n"
        "trainer = KOTrainer(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,\n"
        "                    compute_metrics=compute_metrics)\n"
        "trainer.train()"
    )


def _metrics_from_history(log_history: list[dict[str, Any]], prefix: str) -> dict[str, float]:
    for entry in reversed(log_history):
        values = _split_metrics(entry, prefix)
        if any(key in RESULT_METRICS or key == "loss" for key in values):
            return values
    return {}


def _draw_plots(trainer: Any, callback: KOModelCardCallback, d: KOModelCardData, history: list[dict],
                output_dir: Path) -> None:
    from . import plots

    if not plots.matplotlib_available():
        d.plots_note = (
            "*Condensation pictures* (start-vs-end similarity heatmaps of the targets, condensation curves) were "
            f"not drawn because matplotlib is not installed: `{PLOTS_INSTALL_HINT}`, then call "
            "`trainer.create_model_card()` again (or draw them with `ko_hf.plots`)."
        )
        return
    from .targets import unwrapped_named_parameters

    params = dict(unwrapped_named_parameters(trainer.model)) if trainer.model is not None else {}
    title_setting = (f"{d.collision} collision, coef {_fmt(d.coll_coef)}" if d.ko_applied
                     else "AdamW baseline, no collision")
    for target in d.targets:
        name = target["name"]
        start = callback.start_weights.get(name)
        if start is None or name not in params or target["shape"][0] < 2:
            continue
        file = similarity_plot_file(name)
        labels = d.label_names if len(d.label_names) == target["shape"][0] else None
        start_step = callback.start_weights_step.get(name, 0)
        start_label = "start of training" if not start_step else f"resume point (step {start_step})"
        plots.plot_similarity_heatmaps(start, params[name].detach(), output_dir / file,
                                       title=f"{visible(name)} ({title_setting})",
                                       start_label=start_label,
                                       end_label=f"end of training (step {d.global_step})"
                                       if d.global_step is not None else "end of training",
                                       neuron_labels=[visible(x) for x in labels] if labels else None)
        d.plots.append((f"Cosine similarity of the neurons of {name}, {start_label} vs end of training", file))
    if any(len(e) > 1 for e in history):
        plots.plot_condensation_curves(history, output_dir / CURVES_FILE,
                                       title=f"Condensation during training ({title_setting})")
        d.plots.append(("Weight correlation and neuron similarity during training", CURVES_FILE))


def _card_callback(trainer: Any) -> KOModelCardCallback:
    """The trainer's card callback (the one in its callback handler: Trainer may have restored a new instance
    from a checkpoint), or a fresh one that has recorded nothing."""
    for callback in getattr(getattr(trainer, "callback_handler", None), "callbacks", []):
        if isinstance(callback, KOModelCardCallback):
            return callback
    return getattr(trainer, "model_card_callback", None) or KOModelCardCallback(trainer=trainer)


def _local_name(name: str) -> str:
    """A local data set's folder or file name (what the metadata may show of a path)."""
    path = Path(str(name).rstrip("/\\")).expanduser()
    return path.name or Path.cwd().name


def _looks_local(name: str | None) -> bool:
    return bool(name) and ("/" in name or "\\" in name or name.startswith(("~", ".")) or os.path.isabs(name)) \
        and not is_hub_id(name)


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

    Reads only: the trainer, its arguments and accelerate's state are left exactly as they were.
    """
    callback = _card_callback(trainer)
    args = trainer.args
    d = copy.deepcopy(callback.card_data)  # the card's additions do not leak into what the callback recorded
    model = trainer.model
    output_dir = Path(output_dir or args.output_dir)
    cwd = os.getcwd()

    if not callback.trained:  # card written without train(): describe what there is now
        d.collision = getattr(args, "collision", "none")
        d.coll_coef = getattr(args, "coll_coef", None)
        d.distance_scale = getattr(args, "collision_distance_scale", None)
        d.include_self = getattr(args, "collision_include_self", None)
        d.collision_seed = getattr(args, "collision_seed", None)
        d.ko_arguments = {name: copy.deepcopy(getattr(args, name, None)) for name in ko_field_names()}
        d.targets = [{"name": n, "shape": list(p.shape)} for n, p in callback._targets(model, args)]
        if trainer.optimizer is not None:
            d.optimizer = optimizer_settings(trainer.optimizer)
        world, backend = running_world(args)
        d.world_size = world
        d.per_device_train_batch_size = int(args.per_device_train_batch_size)
        d.gradient_accumulation_steps = int(args.gradient_accumulation_steps)
        d.total_train_batch_size = int(args.train_batch_size) * d.gradient_accumulation_steps * world
        d.device, d.precision = describe_device(args, world_size=world, backend=backend)
    if model is not None:
        d.condensation_end = callback.measure(model, args) if not d.condensation_end else d.condensation_end

    # model and its origin
    d.hub_model_id = args.hub_model_id
    d.model_name = model_name or d.model_name or (args.hub_model_id.split("/")[-1] if args.hub_model_id
                                                  else output_dir.name)
    inner = unwrap_model(model)
    config = getattr(inner, "config", None)
    origin_name = (finetuned_from or getattr(config, "_name_or_path", None) or getattr(inner, "name_or_path", None)
                   or "")
    origin = resolve_base_model(origin_name)
    d.base_model = origin.hub_id
    d.base_model_path = origin.path
    d.base_model_evidence = origin.evidence
    if inner is not None:
        d.architecture = type(inner).__name__  # the class that was trained, not the checkpoint's `architectures`
        d.num_parameters = sum(p.numel() for p in inner.parameters())
        d.num_trainable_parameters = sum(p.numel() for p in inner.parameters() if p.requires_grad)
    d.adapter = adapter_facts(model)
    d.library_name = "peft" if d.adapter else "transformers"
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

    # dataset
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
        from .data import DATASET_RECIPES

        recipe = DATASET_RECIPES.get(name)
        if recipe is not None and recipe.hub_id and local_source:  # a local copy of a recipe's Hub data set
            hub_datasets = [recipe.hub_id]
    d.dataset_local = bool(local_source or (not hub_datasets and _looks_local(name)))
    d.datasets = hub_datasets
    d.dataset_name = _local_name(name) if _looks_local(name) else name
    configs = [dataset_args] if isinstance(dataset_args, str) else list(dataset_args or [])
    d.dataset_config = configs[0] if configs else None
    d.dataset_source = source
    d.dataset_splits = facts.get("splits") or {}
    if not d.dataset_splits:
        for split, ds in (("train", trainer.train_dataset), ("validation", trainer.eval_dataset)):
            if ds is not None and not isinstance(ds, dict) and hasattr(ds, "__len__"):
                d.dataset_splits[split] = len(ds)
    d.label_names = facts.get("label_names") or []
    if not d.label_names and config is not None and getattr(config, "id2label", None):
        id2label = config.id2label
        generic = all(str(v) == f"LABEL_{k}" for k, v in id2label.items())
        if not generic:
            d.label_names = [str(id2label[k]) for k in sorted(id2label)]
    d.dataset_citation = facts.get("citation")
    options = None
    if finetune_options is not None:
        d.max_length = getattr(finetune_options, "max_length", None)
        limits = {"train": getattr(finetune_options, "max_train_samples", None),
                  "validation": getattr(finetune_options, "max_eval_samples", None),
                  "test": getattr(finetune_options, "max_eval_samples", None)}
        d.subsets = {split: int(limit) for split, limit in limits.items()
                     if limit is not None and d.dataset_splits.get(split) == limit}  # (a smaller split was not cut)
        d.data_seed = int(args.seed)
        options = non_default_fields(finetune_options)
        for key in ("model_name_or_path", "dataset", "tokenizer_name"):
            if isinstance(options.get(key), str):
                options[key] = portable_option(options[key], cwd, origin)
        options.setdefault("max_length", d.max_length)

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

    # run
    d.non_default_hyperparameters = non_default_hyperparameters(args)
    if d.global_step is None and trainer.state.global_step:
        d.global_step = int(trainer.state.global_step)
    runtimes = [e["train_runtime"] for e in history if "train_runtime" in e]
    d.train_runtime = float(runtimes[-1]) if runtimes else None
    d.versions = framework_versions()
    if d.adapter:
        d.versions["PEFT"] = d.adapter["version"]
    d.reproduce_command = portable_command(reproduce_command, cwd, origin) if reproduce_command else None
    d.reproduce_directory = Path(cwd).name if d.reproduce_command else None
    num_labels = getattr(config, "num_labels", None)
    d.reproduce_snippet = _python_snippet(d, num_labels, options)

    # pictures
    d.plots, d.plots_note = [], None
    if callback.plots if plots is None else plots:
        start_entry = {"step": d.condensation_start_step}
        for target, values in d.condensation_start.items():
            start_entry.update({f"ko/{target}/{k}": v for k, v in values.items()})
        if len(d.condensation_start) >= 2:  # aggregates are logged with two or more targets only
            start_entry["ko/weight_correlation"] = sum(v["weight_correlation"] for v in d.condensation_start.values()) \
                / len(d.condensation_start)
            start_entry["ko/neuron_similarity"] = max(v["neuron_similarity"] for v in d.condensation_start.values())
        first = d.condensation_start_step
        curve_history = ([start_entry] if d.condensation_start and not any(e.get("step") == first for e in d.ko_history)
                         else []) + [e for e in d.ko_history if e.get("step", 0) >= first]
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
            _draw_plots(trainer, callback, d, curve_history, output_dir)
        except ImportError:
            d.plots = []
            d.plots_note = (f"*Condensation pictures* were not drawn because matplotlib could not be imported: "
                            f"`{PLOTS_INSTALL_HINT}`, then call `trainer.create_model_card()` again.")
    return d


def write_model_card(trainer: Any, **kwargs: Any) -> Path | None:
    """Write ``README.md`` (and the condensation pictures) into ``args.output_dir``; main process only.

    Takes ``Trainer.create_model_card``'s arguments plus ``dataset_info`` (a ``TextClassificationData`` or a
    dict with name / source / splits / label_names / citation), ``reproduce_command``, ``metrics`` (extra
    results, e.g. ``{"test_accuracy": 0.93}``) and ``plots`` (override the callback's setting). Returns the
    card's path (None on other processes).
    """
    if not trainer.is_world_process_zero():
        return None
    output_dir = Path(kwargs.pop("output_dir", None) or trainer.args.output_dir)
    card_data = build_card_data(trainer, output_dir=output_dir, **kwargs)
    text = render_model_card(card_data)
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "README.md"
    path.write_text(text, encoding="utf-8")
    logger.info("model card written to %s", path)
    return path
