"""The Hub model card of a KO run: the facts it states, gathered from the trainer while and after it runs.

Trainer's own card is wrong for a custom optimizer (it reports ``args.optim`` and the default learning rate, a
"multi-GPU" setup on a CPU run, an empty base-model link for local models). Here, as in sentence-transformers:

* :class:`KOModelCardCallback` collects facts while training runs: the collision targets and their shapes,
  the optimizer actually built (class and real hyperparameters from its ``param_groups``), the condensation of
  every target at the start and at the end of training, the ``ko/`` metric history and the evaluation metrics;
* :class:`~ko_hf.card.data.KOModelCardData` (a ``huggingface_hub.CardData``) holds them and the Hub metadata;
* :func:`~ko_hf.card.render.render_model_card` renders them through the template shipped in the package;
* :func:`write_model_card` (what ``KOTrainer.create_model_card`` and hence ``push_to_hub`` call) fills the data
  from a trainer, draws the condensation pictures when matplotlib is installed, and writes ``README.md``.

Nothing here touches the network, and the card only reads the trainer: it builds no arguments object (a new
``TrainingArguments`` resets accelerate's shared state under the running trainer) and changes no state. The KO
settings it records are those ``ko_hf.settings`` declares, read when the card is made.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import importlib.metadata
import math
import os
import platform
import re
import sys
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState
from transformers.utils import logging

from .base_model import BaseModelOrigin, is_hub_id, resolve_base_model
from .data import RESULT_METRICS, KOModelCardData, card_tags
from .escape import md_code, md_fence, md_text
from .pictures import draw_card_plots
from .render import KO_CITATION, render_model_card
from .reproduce import python_snippet, scratch_command
from ..collision import condensation
from ..hub import hub_offline_flag, is_repo_id
from ..logged_metrics import is_number
from .non_default import field_default, non_default_fields, plain
from .portable import Machine, portable_command, portable_directory, portable_path, portable_values, scrub_text
from ..redaction import redact_mapping, redact_text
from ..settings import setting_names
from ..targets import unwrap_model as _unwrap_model

# where ko-hf 0.1 defined them: still importable from here
from .escape import visible  # noqa: E402,F401
from .pictures import CURVES_FILE, similarity_plot_file  # noqa: E402,F401
from .render import KO_PAPER_URL  # noqa: E402,F401
from .plots import PLOTS_INSTALL_HINT  # noqa: E402,F401

logger = logging.get_logger(__name__)

__all__ = [
    "KO_CITATION",
    "KOModelCardData",
    "KOModelCardCallback",
    "render_model_card",
    "write_model_card",
    "card_data_from_arguments",
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
#: PEFT config fields the reproduce snippet leaves out: filled in by PEFT itself (type, version, base path...)
PEFT_SKIPPED_FIELDS = frozenset({"peft_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision",
                                 "inference_mode"})


def __getattr__(name: str) -> Any:
    if name == "KO_FIELDS_SHOWN":  # ko-hf 0.1's constant: the settings the KO section shows, now the declared ones
        return setting_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ==================================================================================================== the run's facts


def ko_field_names(args: Any = None) -> tuple[str, ...]:
    """The KO fields of a run's arguments: the declared KO settings (``ko_hf.settings``, in declaration order), then
    every other init field the arguments' class adds to ``TrainingArguments`` (e.g. resume options).

    Read at call time from the declaration and the class's fields, so a new KO setting reaches the card's KO
    section, its reproduce snippet and the callback's records without touching this module.
    """
    names = list(setting_names())
    if is_dataclass(args):
        from transformers import TrainingArguments

        base = {f.name for f in fields(TrainingArguments)}
        names += [f.name for f in fields(args) if f.init and f.name not in base and f.name not in names]
    return tuple(names)


def record_settings(d: KOModelCardData, args: Any) -> None:
    """The collision type and every KO field (:func:`ko_field_names`) of ``args`` into ``d``, as they are now."""
    d.collision = getattr(args, "collision", "none")
    d.ko_arguments = {name: copy.deepcopy(getattr(args, name)) for name in ko_field_names(args) if hasattr(args, name)}


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
    skip = set(IGNORED_HYPERPARAMETERS) | set(ko_field_names(args))
    values = args.to_dict()
    return {
        key: value
        for key, value in non_default_fields(args, values=values, skip=skip,
                                             defaults={"accelerator_config": _accelerator_config_default()}).items()
        if not key.startswith("_") and not key.endswith("_token")  # secrets (what to_dict redacts)
    }


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


def measure_targets(targets: list[tuple[str, torch.Tensor]]) -> dict[str, dict[str, float]]:
    """``{name: condensation}`` of the targets with two or more rows."""
    return {name: values for name, param in targets if (values := condensation(param)) is not None}


def optimizer_settings(optimizer: Any) -> dict[str, Any]:
    """Class and real hyperparameters of the optimizer that stepped the model (unwrapping accelerate).

    The learning rate is each group's ``initial_lr`` (the peak the scheduler scales) when a scheduler set it:
    at the first step a warm-up has already scaled ``lr`` itself down to 0.
    """
    from ..optim import CollisionMixin

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
        "base_class": re.sub(r"^torch\.optim\.(adamw|adam|sgd)\.", "torch.optim.", f"{base.__module__}.{base.__name__}"),
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
                from .. import __version__

                versions[label] = __version__
            else:
                versions[label] = "not installed"
    return versions


def unwrap_model(model: Any) -> Any:
    """The model that was trained, under PEFT, ``torch.compile`` and DDP wrappers (None for None)."""
    return None if model is None else _unwrap_model(model)


def _peft_model(model: Any) -> Any:
    peft = sys.modules.get("peft")  # a PeftModel exists only if peft was imported
    peft_model = getattr(peft, "PeftModel", None) if peft is not None else None
    return model if peft_model is not None and isinstance(model, peft_model) else None


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


def _split_metrics(metrics: Mapping[str, Any], prefix: str) -> dict[str, float]:
    return {key[len(prefix):]: float(value) for key, value in metrics.items()
            if key.startswith(prefix) and is_number(value)}


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


def _record_run(d: KOModelCardData, args: Any, optimizer: Any, train_batch_size: int) -> None:
    """What the arguments and the running job say: KO settings, optimizer, batch, processes, device."""
    record_settings(d, args)
    if optimizer is not None:
        d.optimizer = optimizer_settings(optimizer)
    world, backend = running_world(args)  # read before anything could touch the shared distributed state
    d.world_size = world
    d.per_device_train_batch_size = int(args.per_device_train_batch_size)
    d.gradient_accumulation_steps = int(args.gradient_accumulation_steps)
    d.total_train_batch_size = int(train_batch_size) * d.gradient_accumulation_steps * world
    d.device, d.precision = describe_device(args, world_size=world, backend=backend)


class KOModelCardCallback(TrainerCallback, ExportableState):
    """Collects what the model card says while the trainer runs.

    ``KOTrainer`` adds one automatically (pass your own in ``callbacks=`` to change ``plots``). With
    ``plots=True`` it keeps a CPU copy of every target's weight at the start of training, so that
    ``create_model_card`` can draw start-vs-end similarity heatmaps (when matplotlib is installed).

    What the card calls "start of training" (the targets' condensation, and their weights for the heatmaps up to
    :attr:`max_saved_elements` elements each) is saved with every checkpoint (``trainer_state.json``, as an
    ``ExportableState``), so a resumed run's card describes the real start, not the resume point. So is
    ``command``, the command line that started the run: a resumed run's card gives the command that trains it
    from scratch, not the one that resumed it.
    """

    #: targets larger than this (elements) are not copied for the heatmap
    max_plot_elements = 4 * 1024 * 1024
    #: targets up to this size (elements) keep their start weights in checkpoints (base64 float32 in JSON)
    max_saved_elements = 1 << 17

    def __init__(self, plots: bool = True, trainer: Any = None, command: str | None = None) -> None:
        self.plots = plots
        self.trainer = trainer
        #: The command line that started the run (kept from the checkpoint when the run resumes).
        self.command = command
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
        return {"args": {"plots": self.plots},
                "attributes": {"start_record": self.start_record, "command": self.command}}

    # -------------------------------------------------------------- what the trainer knows

    def _targets(self, model: Any, args: Any = None) -> list[tuple[str, torch.Tensor]]:
        if model is None:
            return []
        names = list(getattr(self.trainer, "collision_targets", None) or [])
        if not names:
            from ..targets import collision_target_names

            args = args if args is not None else getattr(self.trainer, "args", None)
            try:
                names = collision_target_names(model, getattr(args, "collision_targets", None))
            except ValueError:
                return []
        from ..targets import unwrapped_named_parameters

        params = dict(unwrapped_named_parameters(model))  # the targets' names through PEFT / compile / DDP
        return [(name, params[name]) for name in names if name in params]

    def _model(self, model: Any) -> Any:
        if self.trainer is not None and getattr(self.trainer, "model", None) is not None:
            return self.trainer.model
        return model

    def measure(self, model: Any, args: Any = None) -> dict[str, dict[str, float]]:
        return measure_targets(self._targets(self._model(model), args))

    def _saved(self, state: Any) -> dict[str, Any]:
        """The attributes a resumed run's checkpoint holds of this callback (empty for a fresh run)."""
        if not state.global_step:
            return {}
        stored = (getattr(state, "stateful_callbacks", None) or {}).get(type(self).__name__)
        if isinstance(stored, list):
            stored = stored[0] if stored else None
        attributes = stored.get("attributes") if isinstance(stored, dict) else None
        return attributes if isinstance(attributes, dict) else {}

    def _saved_start(self, state: Any) -> dict[str, Any] | None:
        """The start record a resumed run's checkpoint holds (None for a fresh run or an older checkpoint)."""
        record = self._saved(state).get("start_record")
        return record if isinstance(record, dict) and "condensation" in record else None

    # -------------------------------------------------------------- events

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        data = self.card_data
        model = self._model(model)
        self.trained = True
        targets = self._targets(model, args)
        data.targets = [{"name": name, "shape": list(param.shape)} for name, param in targets]
        data.eval_metrics, data.test_metrics = {}, {}
        # on resume, the log history up to the checkpoint is back in ``state``: the curves and the first logged
        # collision statistics are those of the real start
        data.ko_history = []
        for entry in state.log_history if state.global_step else []:
            self.on_log(args, state, control, logs=entry, step=entry.get("step"))
        data.resumed = {"step": int(state.global_step)} if state.global_step else None
        command = self._saved(state).get("command")
        if isinstance(command, str) and command:
            self.command = command  # the run's first command: what trains it from scratch

        record = self._saved_start(state)
        if record is None:
            if state.global_step:
                logger.warning("the checkpoint does not record the start of training: the model card's start "
                               "condensation is measured at the resume point (step %d)", state.global_step)
            record = {"step": int(state.global_step), "condensation": measure_targets(targets),
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

        data.lr_scheduler = str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type))
        # the batch the training loop really draws per process (Trainer's, which auto_find_batch_size may lower)
        per_step = int(getattr(self.trainer, "_train_batch_size", None) or args.train_batch_size)
        _record_run(data, args, getattr(self.trainer, "optimizer", None) or optimizer, per_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        ko = {key: float(value) for key, value in logs.items() if key.startswith("ko/") and is_number(value)}
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


# ==================================================================================================== from a trainer


def _metrics_from_history(log_history: list[dict[str, Any]], prefix: str) -> dict[str, float]:
    for entry in reversed(log_history):
        values = _split_metrics(entry, prefix)
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
    d.base_model, d.base_model_path, d.base_model_evidence = origin.hub_id, origin.path, origin.evidence
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
    broken = [name for name, weight in weights.items() if not bool(torch.isfinite(_local_copy(weight)).all())]
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
        _record_run(d, args, trainer.optimizer, args.train_batch_size)
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
