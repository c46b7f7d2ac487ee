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

Nothing here touches the network.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import json
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any, Iterator, Mapping

import torch
from transformers import TrainerCallback
from transformers.utils import logging

from .collision import neuron_similarity, weight_correlation

logger = logging.get_logger(__name__)

__all__ = [
    "KO_CITATION",
    "KOModelCardData",
    "KOModelCardCallback",
    "render_model_card",
    "write_model_card",
    "is_hub_id",
    "hub_required",
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

#: KOTrainingArguments fields shown in the KO section rather than among the training hyperparameters.
KO_FIELDS = (
    "collision",
    "coll_coef",
    "collision_targets",
    "collision_distance_scale",
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

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")


# ==================================================================================================== card data


@dataclass
class KOModelCardData:
    """Everything the card says. Filled by :class:`KOModelCardCallback` and :func:`write_model_card`."""

    model_name: str | None = None
    #: The repository this card is pushed to (``args.hub_model_id``), if set.
    hub_model_id: str | None = None
    #: A Hub model id, or None: only a Hub id goes into the ``base_model`` metadata.
    base_model: str | None = None
    #: Where the weights came from when that is not a Hub id (a local folder), said in the body only.
    base_model_path: str | None = None
    architecture: str | None = None
    num_parameters: int | None = None
    language: str | list[str] | None = None
    license: str | None = None
    tags: list[str] = field(default_factory=list)
    pipeline_tag: str = "text-classification"

    # dataset
    datasets: list[str] = field(default_factory=list)
    dataset_name: str | None = None
    dataset_source: str | None = None
    dataset_config: str | None = None
    dataset_splits: dict[str, int] = field(default_factory=dict)
    label_names: list[str] = field(default_factory=list)
    dataset_citation: str | None = None

    # KO
    collision: str = "none"
    coll_coef: float | None = None
    distance_scale: float | None = None
    include_self: bool | None = None
    collision_seed: int | None = None
    #: [{"name": ..., "shape": [N, D]}]
    targets: list[dict[str, Any]] = field(default_factory=list)
    #: {"class": "KOAdamW", "base_class": "torch.optim.AdamW", "hyperparameters": {...}}
    optimizer: dict[str, Any] = field(default_factory=dict)
    lr_scheduler: str | None = None
    #: {target: {"weight_correlation": ..., "neuron_similarity": ...}}
    condensation_start: dict[str, dict[str, float]] = field(default_factory=dict)
    condensation_end: dict[str, dict[str, float]] = field(default_factory=dict)
    #: log entries (``step`` plus the ``ko/`` keys) from the logging steps
    ko_history: list[dict[str, float]] = field(default_factory=list)

    # results and run
    eval_metrics: dict[str, float] = field(default_factory=dict)
    eval_split: str = "validation"
    test_metrics: dict[str, float] = field(default_factory=dict)
    non_default_hyperparameters: dict[str, Any] = field(default_factory=dict)
    total_train_batch_size: int | None = None
    global_step: int | None = None
    epochs: float | None = None
    train_runtime: float | None = None
    device: str | None = None
    precision: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    reproduce_command: str | None = None
    reproduce_snippet: str | None = None
    #: [(caption, relative file name)] of the pictures next to the card
    plots: list[tuple[str, str]] = field(default_factory=list)
    plots_note: str | None = None

    @property
    def ko_applied(self) -> bool:
        return self.collision != "none"

    def accepted_pair_fractions(self) -> list[tuple[int, float]]:
        return _series(self.ko_history, "ko/accepted_pair_fraction")

    def grad_change_ratios(self) -> list[tuple[int, float]]:
        return _series(self.ko_history, "ko/grad_change_ratio")

    def metadata(self):
        """The YAML metadata as a ``huggingface_hub.ModelCardData``."""
        from huggingface_hub import EvalResult, ModelCardData

        eval_results = []
        dataset_type = self.datasets[0] if self.datasets else (self.dataset_name or "custom")
        dataset_name = self.dataset_name or dataset_type
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
            library_name="transformers",
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


def is_hub_id(name: str | None) -> bool:
    """``"org/model"`` or ``"model"`` that is not a path on this machine."""
    if not name or not isinstance(name, str):
        return False
    if os.path.isabs(name) or name.startswith((".", "~")) or os.path.exists(name):
        return False
    return bool(_HUB_ID.match(name)) and ".." not in name and not name.endswith((".git", ".json"))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _series(history: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    return [(int(e.get("step", 0)), float(e[key])) for e in history if _is_number(e.get(key))]


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


def describe_device(args: Any) -> tuple[str, str]:
    """(device, precision) as actually used, e.g. ("CPU", "fp32") or ("4 × NVIDIA H100 (DDP, 4 processes)", "bf16")."""
    device = args.device
    world = int(getattr(args, "world_size", 1) or 1)
    mode = getattr(getattr(args, "parallel_mode", None), "value", None)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device) if torch.cuda.is_available() else "GPU"
        gpus = world * max(int(args.n_gpu), 1) if world > 1 else max(int(args.n_gpu), 1)
        text = f"{gpus} × {name}" if gpus > 1 else f"1 GPU ({name})"
        if world > 1:
            text += f", distributed ({mode or 'DDP'}, {world} processes)"
        elif gpus > 1:
            text += " (torch.nn.DataParallel)"
    elif device.type == "cpu":
        text = "CPU" if world == 1 else f"CPU, distributed ({mode or 'DDP'}, {world} processes)"
    elif device.type == "mps":
        text = "Apple GPU (MPS)"
    else:
        text = device.type.upper() if world == 1 else f"{world} × {device.type.upper()} ({mode or 'distributed'})"
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


def _default_arguments(args: Any) -> dict[str, Any]:
    from .trainer import KOTrainingArguments

    cls = type(args) if isinstance(args, KOTrainingArguments) else KOTrainingArguments
    defaults = cls(output_dir=args.output_dir, collision=getattr(args, "collision", "soft"))
    return defaults.to_dict()


def non_default_hyperparameters(args: Any) -> dict[str, Any]:
    """Training arguments that differ from a default ``KOTrainingArguments`` (KO fields and noise left out)."""
    current = args.to_dict()
    defaults = _default_arguments(args)
    return {
        key: value
        for key, value in current.items()
        if key not in IGNORED_HYPERPARAMETERS and key not in KO_FIELDS and not key.startswith("_")
        and "token" not in key and key in defaults and value != defaults[key]
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
    from huggingface_hub import constants

    offline = getattr(constants, "HF_HUB_OFFLINE", False) or os.environ.get("HF_HUB_OFFLINE", "") in ("1", "true")
    if offline:
        raise RuntimeError(
            f"{action} needs the Hugging Face Hub, but HF_HUB_OFFLINE is set. The model and its card (README.md) "
            "are saved locally in output_dir; unset HF_HUB_OFFLINE, log in (`hf auth login`) and push again."
        )
    try:
        yield
    except (OSError, ConnectionError) as error:  # requests/httpx connection errors derive from OSError
        raise RuntimeError(
            f"{action} needs the Hugging Face Hub, which could not be reached ({type(error).__name__}: {error}). "
            "The model and its card (README.md) are saved locally in output_dir; push again once online."
        ) from error


# ==================================================================================================== callback


class KOModelCardCallback(TrainerCallback):
    """Collects what the model card says while the trainer runs.

    ``KOTrainer`` adds one automatically (pass your own in ``callbacks=`` to change ``plots``). With
    ``plots=True`` it keeps a CPU copy of every target's weight at the start of training, so that
    ``create_model_card`` can draw start-vs-end similarity heatmaps (when matplotlib is installed).
    """

    #: targets larger than this (elements) are not copied for the heatmap
    max_plot_elements = 4 * 1024 * 1024

    def __init__(self, plots: bool = True, trainer: Any = None) -> None:
        self.plots = plots
        self.trainer = trainer
        self.card_data = KOModelCardData()
        self.start_weights: dict[str, torch.Tensor] = {}
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

    # -------------------------------------------------------------- what the trainer knows

    def _targets(self, model: Any) -> list[tuple[str, torch.Tensor]]:
        if model is None:
            return []
        names = list(getattr(self.trainer, "collision_targets", None) or [])
        if not names:
            from .targets import collision_target_names

            try:
                names = collision_target_names(model, getattr(self.trainer.args, "collision_targets", None)
                                               if self.trainer is not None else None)
            except ValueError:
                return []
        params = dict(model.named_parameters())
        return [(name, params[name]) for name in names if name in params]

    def _model(self, model: Any) -> Any:
        if self.trainer is not None and getattr(self.trainer, "model", None) is not None:
            return self.trainer.model
        return model

    def measure(self, model: Any) -> dict[str, dict[str, float]]:
        result = {}
        for name, param in self._targets(self._model(model)):
            values = condensation(param)
            if values is not None:
                result[name] = values
        return result

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
        targets = self._targets(model)
        data.targets = [{"name": name, "shape": list(param.shape)} for name, param in targets]
        data.condensation_start = self.measure(model)
        data.ko_history = []
        data.eval_metrics, data.test_metrics = {}, {}
        self.start_weights = {}
        if self.plots:
            self.start_weights = {name: param.detach().float().cpu().clone() for name, param in targets
                                  if param.dim() >= 2 and param.numel() <= self.max_plot_elements}
        optimizer = getattr(self.trainer, "optimizer", None) or optimizer
        data.optimizer = optimizer_settings(optimizer)
        data.lr_scheduler = str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        ko = {key: float(value) for key, value in logs.items() if key.startswith("ko/") and _is_number(value)}
        if not ko:
            return
        entry = {"step": int(state.global_step), **ko}
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
        self.card_data.condensation_end = self.measure(model)
        self.card_data.global_step = int(state.global_step)
        self.card_data.epochs = float(state.epoch) if state.epoch is not None else None

    def on_push_begin(self, args, state, control, **kwargs):
        # push_to_hub goes to the network right after this event: fail early with a message that says why.
        with hub_required("push_to_hub"):
            pass


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

## Training hyperparameters

$hyperparameters

## Training environment

$environment

## How to reproduce

$reproduce

## How to use

```python
from transformers import pipeline

classifier = pipeline("text-classification", model="$model_ref")
print(classifier("Your text here"))
```

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


def _code(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else _fmt(value)
    return f"`{text}`"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _hub_link(repo: str, kind: str = "") -> str:
    return f"[{repo}](https://huggingface.co/{kind}{repo})"


def _summary(d: KOModelCardData) -> str:
    if d.base_model:
        origin = f"a fine-tuned version of {_hub_link(d.base_model)}"
    elif d.base_model_path:
        origin = (f"fine-tuned from a local checkpoint (`{d.base_model_path}`; not a Hub id, so the metadata "
                  "carries no `base_model` link)")
    else:
        origin = f"a {d.architecture or 'model'} trained from a configuration (randomly initialised weights)"
    dataset = f" on **{d.dataset_name}**" if d.dataset_name else ""
    labels = f" ({len(d.label_names)} labels)" if d.label_names else ""
    arch = f" ({d.architecture}, {d.num_parameters:,} parameters)" if d.architecture and d.num_parameters else ""
    text = f"This model is {origin}{arch}, for text classification{dataset}{labels}."
    if d.ko_applied:
        names = ", ".join(f"`{t['name']}`" for t in d.targets) or "the classification head"
        text += (f"\n\nIt was trained with [ko-hf](https://pypi.org/project/ko-hf/), using the KO optimizer "
                 f"([Feng et al., 2025]({KO_PAPER_URL})): **{d.collision} collisions** between the neurons of "
                 f"{names} rewrote their gradients before each "
                 f"{d.optimizer.get('base_name', 'base optimizer')} step, to fight *condensation* (neurons "
                 "collapsing onto the same direction). The section *How KO shaped this model* gives the settings "
                 "and the condensation measured at the start and end of training.")
    else:
        text += (f"\n\n**KO collisions were NOT applied**: this is a plain "
                 f"{d.optimizer.get('base_name', 'AdamW')} baseline trained with ko-hf (`collision=\"none\"`), "
                 "e.g. for comparison with KO runs. Condensation metrics below are measured for reference only.")
    return text


def _dataset_section(d: KOModelCardData) -> str:
    lines = []
    if d.dataset_name or d.datasets:
        name = d.dataset_name or d.datasets[0]
        lines.append(f"- **Name:** {name}")
    if d.datasets:
        lines.append("- **Hub dataset:** " + ", ".join(_hub_link(x, "datasets/") for x in d.datasets))
    elif d.dataset_source:
        lines.append(f"- **Source:** `{d.dataset_source}` (local data, not on the Hub)")
    if d.dataset_config:
        lines.append(f"- **Configuration:** `{d.dataset_config}`")
    if d.label_names:
        shown = d.label_names if len(d.label_names) <= 30 else d.label_names[:30] + ["…"]
        lines.append(f"- **Labels ({len(d.label_names)}):** " + ", ".join(f"`{x}`" for x in shown))
    if not lines:
        lines.append("The training data was not described when the card was generated (pass `dataset_info=` "
                     "to `create_model_card`).")
    if d.dataset_splits:
        lines.append("")
        lines.append(_table(["split", "examples"], [[s, f"{n:,}"] for s, n in d.dataset_splits.items()]))
    return "\n".join(lines)


def _results_section(d: KOModelCardData) -> str:
    rows = []
    for split, metrics in ((d.eval_split, d.eval_metrics), ("test", d.test_metrics)):
        for key, value in metrics.items():
            if key in RESULT_METRICS or key == "loss":
                name = RESULT_METRICS[key][1] if key in RESULT_METRICS else "Loss"
                rows.append([split, name, _fmt(value)])
    if not rows:
        return ("No evaluation was run (give the trainer an `eval_dataset` and a `compute_metrics` that returns "
                "`accuracy` / `macro_f1`).")
    return _table(["split", "metric", "value"], rows)


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
            rows.append([f"`{name}`", label, _fmt(a) if a is not None else "–", _fmt(b) if b is not None else "–",
                         change])
    return rows


def _ko_section(d: KOModelCardData) -> str:
    lines: list[str] = []
    opt = d.optimizer
    hyper = dict(opt.get("hyperparameters", {}))
    if opt:
        if d.ko_applied:
            lines.append(f"- **Optimizer:** `{opt['class']}` = `{opt['base_class']}` + KO collisions on the targets "
                         "(gradients are rewritten after clipping, before the base optimizer's step)")
        else:
            lines.append(f"- **Optimizer:** `{opt['base_class']}` (class `{opt['class']}`); no collision")
        note = hyper.pop("weight_decay_note", None)
        target_decay = hyper.pop("weight_decay_targets", None)
        settings = ", ".join(f"{k} = {_code(v)}" for k, v in hyper.items())
        lines.append(f"- **Optimizer hyperparameters (from its parameter groups):** {settings}"
                     + (f"; weight decay 0 for {note.split(': ')[0]}" if note and note.endswith(": 0") else
                        f"; {note}" if note else ""))
        if target_decay is not None and target_decay != hyper.get("weight_decay"):
            lines.append(f"- **Weight decay of the collision targets:** {_code(target_decay)}")
        if d.lr_scheduler:
            lines.append(f"- **Learning-rate schedule:** `{d.lr_scheduler}` (the learning rate above is its peak)")
    else:
        lines.append("- **Optimizer:** not recorded (the card was generated before training)")
    if d.ko_applied:
        algorithm = "1, hard-sphere DSMC" if d.collision == "hard" else "2"
        lines.append(f"- **Collision:** `{d.collision}` (KO paper, Alg. {algorithm})")
        lines.append(f"- **Collision coefficient (`coll_coef`):** {_code(d.coll_coef)}")
        if d.collision == "hard":
            lines.append(f"- **Distance scale λ (`collision_distance_scale`):** {_code(d.distance_scale)} "
                         "(acceptance U = exp(−λ·‖w_i − w_j‖); the paper uses 1)")
            lines.append(f"- **Collision seed:** {_code(d.collision_seed)}")
        else:
            lines.append(f"- **Include self (`collision_include_self`):** {_code(bool(d.include_self))}")
    if d.targets:
        lines.append("")
        header = "Collision targets" if d.ko_applied else "Watched layers (no collision applied)"
        lines.append(f"**{header}** (each row of a weight is one neuron):")
        lines.append("")
        lines.append(_table(["parameter", "shape", "neurons × inputs"],
                            [[f"`{t['name']}`", "×".join(str(s) for s in t["shape"]),
                              f"{t['shape'][0]} × {int(torch.Size(t['shape'][1:]).numel())}"] for t in d.targets]))
        if d.ko_applied and any(t["shape"][0] == 2 for t in d.targets):
            lines.append("")
            lines.append("*Note:* a 2-neuron head is degenerate for KO (with softmax cross-entropy its two gradient "
                         "rows are opposite): soft collision only rescales it and an accepted hard collision "
                         "replaces its gradient by a random direction of the same norm.")
    fractions = d.accepted_pair_fractions()
    ratios = d.grad_change_ratios()
    if d.ko_applied and (fractions or ratios):
        lines.append("")
        lines.append("**Collision statistics** (averaged over each logging interval):")
        lines.append("")
        rows = []
        if fractions:
            mean = sum(v for _, v in fractions) / len(fractions)
            rows.append(["accepted-pair fraction", f"{_fmt(fractions[0][1])} (step {fractions[0][0]})",
                         f"{_fmt(fractions[-1][1])} (step {fractions[-1][0]})", _fmt(mean)])
        if ratios:
            mean = sum(v for _, v in ratios) / len(ratios)
            rows.append(["gradient change ‖g* − g‖/‖g‖", f"{_fmt(ratios[0][1])} (step {ratios[0][0]})",
                         f"{_fmt(ratios[-1][1])} (step {ratios[-1][0]})", _fmt(mean)])
        lines.append(_table(["statistic", "first logged", "last logged", "mean"], rows))
    rows = _condensation_rows(d)
    if rows:
        lines.append("")
        lines.append("**Condensation** (weight correlation: mean |cos(w_i, w_j)| over pairs of neurons; neuron "
                     "similarity: the max; lower means more diverse neurons):")
        lines.append("")
        step = f"end (step {d.global_step})" if d.global_step is not None else "end"
        lines.append(_table(["parameter", "metric", "start of training", step, "change"], rows))
    if d.plots:
        lines.append("")
        for caption, file in d.plots:
            lines.append(f"![{caption}]({file})")
            lines.append("")
    if d.plots_note:
        lines.append("")
        lines.append(d.plots_note)
    return "\n".join(lines).strip()


def _hyperparameters_section(d: KOModelCardData) -> str:
    lines = []
    if d.non_default_hyperparameters:
        lines.append("Only the values that differ from `KOTrainingArguments`' defaults (the KO settings are above):")
        lines.append("")
        lines += [f"- `{k}`: {_code(v)}" for k, v in sorted(d.non_default_hyperparameters.items())]
    else:
        lines.append("All training arguments were `KOTrainingArguments`' defaults (the KO settings are above).")
    extra = []
    if d.total_train_batch_size:
        extra.append(f"total train batch size {d.total_train_batch_size}")
    if d.global_step is not None:
        extra.append(f"{d.global_step} optimizer steps")
    if d.epochs is not None:
        extra.append(f"{_fmt(round(d.epochs, 2))} epochs")
    if d.train_runtime is not None:
        extra.append(f"{_fmt(round(d.train_runtime, 1))} s of training")
    if extra:
        lines.append("")
        lines.append("Run: " + ", ".join(extra) + ".")
    return "\n".join(lines)


def _environment_section(d: KOModelCardData) -> str:
    lines = []
    if d.device:
        lines.append(f"- **Device:** {d.device}")
    if d.precision:
        lines.append(f"- **Precision:** {d.precision}")
    if d.versions:
        lines.append("- **Framework versions:** " + ", ".join(f"{k} {v}" for k, v in d.versions.items()))
    return "\n".join(lines) or "Not recorded."


def _reproduce_section(d: KOModelCardData) -> str:
    if d.reproduce_command:
        return f"This exact command trained the model:\n\n```bash\n{d.reproduce_command}\n```"
    if d.reproduce_snippet:
        return ("With your own tokenized `train_dataset` / `eval_dataset` (the dataset above):\n\n"
                f"```python\n{d.reproduce_snippet}\n```")
    return "Not recorded."


def _citations(d: KOModelCardData) -> str:
    parts = [f"KO optimizer ([arXiv 2505.14777]({KO_PAPER_URL})):\n\n```bibtex\n{KO_CITATION}\n```"]
    if d.dataset_citation:
        parts.append(f"Dataset:\n\n```bibtex\n{d.dataset_citation.strip()}\n```")
    return "\n\n".join(parts)


def render_model_card(card_data: KOModelCardData) -> str:
    """The card's Markdown, YAML metadata included."""
    d = card_data
    text = MODEL_CARD_TEMPLATE.substitute(
        metadata=d.metadata().to_yaml(),
        title=d.model_name or "KO fine-tuned model",
        summary=_summary(d),
        dataset=_dataset_section(d),
        results=_results_section(d),
        ko_heading=("## How KO shaped this model" if d.ko_applied
                    else "## Optimizer (baseline: KO collisions NOT applied)"),
        ko_section=_ko_section(d),
        hyperparameters=_hyperparameters_section(d),
        environment=_environment_section(d),
        reproduce=_reproduce_section(d),
        model_ref=d.hub_model_id or d.model_name or "path/to/this/model",
        citations=_citations(d),
    )
    return re.sub(r"\n{3,}", "\n\n", text)


# ==================================================================================================== from a trainer


def _python_snippet(d: KOModelCardData, num_labels: int | None) -> str:
    base = d.base_model or d.base_model_path or "<base model>"
    ko = {"collision": d.collision}
    if d.ko_applied:
        ko["coll_coef"] = d.coll_coef
        if d.collision == "hard":
            ko["collision_distance_scale"] = d.distance_scale
        elif d.include_self:
            ko["collision_include_self"] = True
    settings = {**ko, **d.non_default_hyperparameters}
    arg_lines = "".join(f"    {k}={v!r},\n" for k, v in settings.items())
    labels = f", num_labels={num_labels}" if num_labels else ""
    return (
        "from transformers import AutoModelForSequenceClassification\n"
        "from ko_hf import KOTrainer, KOTrainingArguments\n\n"
        f"model = AutoModelForSequenceClassification.from_pretrained({base!r}{labels})\n"
        f"args = KOTrainingArguments(\n    output_dir={d.model_name or 'ko-model'!r},\n{arg_lines})\n"
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
    params = dict(trainer.model.named_parameters()) if trainer.model is not None else {}
    title_setting = (f"{d.collision} collision, coef {_fmt(d.coll_coef)}" if d.ko_applied
                     else "AdamW baseline, no collision")
    for target in d.targets:
        name = target["name"]
        start = callback.start_weights.get(name)
        if start is None or name not in params or target["shape"][0] < 2:
            continue
        file = similarity_plot_file(name)
        labels = d.label_names if len(d.label_names) == target["shape"][0] else None
        plots.plot_similarity_heatmaps(start, params[name].detach(), output_dir / file,
                                       title=f"{name} ({title_setting})",
                                       end_label=f"end of training (step {d.global_step})"
                                       if d.global_step is not None else "end of training",
                                       neuron_labels=labels)
        d.plots.append((f"Cosine similarity of the neurons of {name}, start vs end of training", file))
    if any(len(e) > 1 for e in history):
        plots.plot_condensation_curves(history, output_dir / CURVES_FILE,
                                       title=f"Condensation during training ({title_setting})")
        d.plots.append(("Weight correlation and neuron similarity during training", CURVES_FILE))


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
    reproduce_command: str | None = None,
    metrics: Mapping[str, float] | None = None,
    plots: bool | None = None,
    output_dir: str | os.PathLike | None = None,
) -> KOModelCardData:
    """Fill a :class:`KOModelCardData` from a trainer (its card callback's records, args, model, log history)."""
    callback = getattr(trainer, "model_card_callback", None)
    if callback is None:
        callback = KOModelCardCallback(trainer=trainer)
    args = trainer.args
    d = copy.deepcopy(callback.card_data)  # the card's additions do not leak into what the callback recorded
    model = trainer.model
    output_dir = Path(output_dir or args.output_dir)

    if not callback.trained:  # card written without train(): describe what there is now
        d.collision = getattr(args, "collision", "none")
        d.coll_coef = getattr(args, "coll_coef", None)
        d.distance_scale = getattr(args, "collision_distance_scale", None)
        d.include_self = getattr(args, "collision_include_self", None)
        d.collision_seed = getattr(args, "collision_seed", None)
        d.targets = [{"name": n, "shape": list(p.shape)} for n, p in callback._targets(model)]
        if trainer.optimizer is not None:
            d.optimizer = optimizer_settings(trainer.optimizer)
    if model is not None:
        d.condensation_end = callback.measure(model) if not d.condensation_end else d.condensation_end

    # model and its origin
    d.hub_model_id = args.hub_model_id
    d.model_name = model_name or d.model_name or (args.hub_model_id.split("/")[-1] if args.hub_model_id
                                                  else output_dir.name)
    config = getattr(model, "config", None)
    origin = finetuned_from or getattr(config, "_name_or_path", None) or getattr(model, "name_or_path", None) or ""
    d.base_model = origin if is_hub_id(origin) else None
    d.base_model_path = None if d.base_model or not origin else str(origin)
    if config is not None:
        d.architecture = (config.architectures or [type(model).__name__])[0] if getattr(config, "architectures", None) \
            else type(model).__name__
    if model is not None:
        d.num_parameters = sum(p.numel() for p in model.parameters())
    d.language = language
    d.license = license
    d.tags = card_tags(d.collision, list(tags) if isinstance(tags, (list, tuple)) else tags)
    if tasks:
        d.pipeline_tag = tasks if isinstance(tasks, str) else list(tasks)[0]

    # dataset
    facts = _dataset_facts(dataset_info)
    hub_datasets = [dataset_tags] if isinstance(dataset_tags, str) else list(dataset_tags or [])
    if not hub_datasets and is_hub_id(facts.get("source")) and "/" in str(facts.get("source")):
        hub_datasets = [facts["source"]]
    d.datasets = hub_datasets
    names = [dataset] if isinstance(dataset, str) else list(dataset or [])
    d.dataset_name = names[0] if names else facts.get("name") or (hub_datasets[0] if hub_datasets else None)
    configs = [dataset_args] if isinstance(dataset_args, str) else list(dataset_args or [])
    d.dataset_config = configs[0] if configs else None
    d.dataset_source = facts.get("source")
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
    d.total_train_batch_size = args.train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1)
    if d.global_step is None and trainer.state.global_step:
        d.global_step = int(trainer.state.global_step)
    runtimes = [e["train_runtime"] for e in history if "train_runtime" in e]
    d.train_runtime = float(runtimes[-1]) if runtimes else None
    d.device, d.precision = describe_device(args)
    d.versions = framework_versions()
    d.reproduce_command = reproduce_command
    num_labels = getattr(config, "num_labels", None)
    d.reproduce_snippet = _python_snippet(d, num_labels)

    # pictures
    d.plots, d.plots_note = [], None
    if callback.plots if plots is None else plots:
        start_entry = {"step": 0}
        for name, values in d.condensation_start.items():
            start_entry.update({f"ko/{name}/{k}": v for k, v in values.items()})
        if d.condensation_start:
            start_entry["ko/weight_correlation"] = sum(v["weight_correlation"] for v in d.condensation_start.values()) \
                / len(d.condensation_start)
            start_entry["ko/neuron_similarity"] = max(v["neuron_similarity"] for v in d.condensation_start.values())
        curve_history = ([start_entry] if d.condensation_start and not any(e.get("step") == 0 for e in d.ko_history)
                         else []) + d.ko_history
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
