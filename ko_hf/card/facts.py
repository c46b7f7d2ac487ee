"""Facts of a KO run read from its arguments, optimizer, model and machine (its KO settings, non-default training
arguments, the optimizer's real hyperparameters, device and precision, library versions, a PEFT adapter): what the
card callback records while training runs and the card gathers when it is written. They only read."""

from __future__ import annotations

import copy
import importlib.metadata
import platform
import re
import sys
from dataclasses import fields, is_dataclass
from typing import Any, Mapping

import torch

from .data import KOModelCardData
from .non_default import field_default, non_default_fields, plain
from ..collision import condensation
from ..logged_metrics import is_number
from ..settings import setting_names
from ..targets import unwrap_model as _unwrap_model

__all__ = [
    "IGNORED_HYPERPARAMETERS",
    "PEFT_SKIPPED_FIELDS",
    "ko_field_names",
    "record_settings",
    "non_default_hyperparameters",
    "measure_targets",
    "optimizer_settings",
    "running_world",
    "describe_device",
    "framework_versions",
    "unwrap_model",
    "adapter_facts",
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


def record_run(d: KOModelCardData, args: Any, optimizer: Any, train_batch_size: int) -> None:
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


def split_metrics(metrics: Mapping[str, Any], prefix: str) -> dict[str, float]:
    return {key[len(prefix):]: float(value) for key, value in metrics.items()
            if key.startswith(prefix) and is_number(value)}
