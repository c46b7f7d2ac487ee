"""LoRA adapters (peft) for ``ko-finetune --lora``: the encoder trains low-rank adapters, the head trains fully.

The head (every module outside ``model.base_model``) and the modules of the other collision targets (e.g. the
pooler) go into ``LoraConfig.modules_to_save``, so they train and collide as in a full fine-tune. The output folder
holds what PEFT saves (``adapter_config.json``, ``adapter_model.safetensors``: the adapters and the trained head),
the tokenizer, and ``head_config.json`` (the classifier's config: the label names). Any saved PEFT sequence
classifier reloads with peft's own ``AutoPeftModelForSequenceClassification``, given its number of labels;
:func:`load_lora_classifier` does that without being told: it takes the labels from ``head_config.json`` where
ko-finetune wrote one, else their number from the head saved with the adapter (``trainer.save_model()``,
``PeftModel.save_pretrained``). peft is an optional dependency: ``pip install "ko-hf[lora]"``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

__all__ = ["HEAD_CONFIG_NAME", "apply_lora", "check_lora_settings", "load_lora_classifier", "save_head_config",
           "saved_label_count"]

HEAD_CONFIG_NAME = "head_config.json"
INSTALL_HINT = 'pip install "ko-hf[lora]" (or pip install peft)'


def require_peft() -> Any:
    try:
        import peft
    except ImportError:
        raise ValueError(f"--lora (lora: true) needs peft, which is not installed: {INSTALL_HINT}") from None
    return peft


def check_lora_settings(r: Any, alpha: Any, dropout: Any, target_modules: Sequence[str] | None,
                        model_type: str | None = None) -> None:
    """``ValueError`` naming a bad LoRA setting (and a model type peft has no default target modules for)."""
    require_peft()
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"lora_r={r!r} is invalid; the LoRA rank must be a positive integer (e.g. 8)")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
        raise ValueError(f"lora_alpha={alpha!r} is invalid; it must be a positive number (e.g. 16)")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"lora_dropout={dropout!r} is invalid; it must be in [0, 1)")
    if target_modules is not None and (isinstance(target_modules, str) or not all(
            isinstance(m, str) and m for m in target_modules)):
        raise ValueError(f"lora_target_modules={target_modules!r} is invalid; give module names, e.g. query value")
    if not target_modules and model_type is not None:
        from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as defaults

        if model_type not in defaults:
            raise ValueError(
                f"peft has no default LoRA target modules for model_type {model_type!r}: name them with "
                "--lora-target-modules (lora_target_modules:), e.g. the attention projections (q_proj v_proj)"
            )


def head_modules(model: torch.nn.Module) -> list[str]:
    """Names of the top-level modules outside ``model.base_model`` that hold parameters (BERT: ``classifier``;
    DistilBERT: ``pre_classifier``, ``classifier``)."""
    base = getattr(model, "base_model", None)
    return [name for name, child in model.named_children()
            if child is not base and any(True for _ in child.parameters())]


def apply_lora(model: torch.nn.Module, *, r: int = 8, alpha: float = 16, dropout: float = 0.1,
               target_modules: Sequence[str] | None = None, collision_targets: Sequence[str] | None = None):
    """``peft.get_peft_model(model, LoraConfig(task_type="SEQ_CLS", ...))`` with the head and the modules of the
    collision targets in ``modules_to_save`` (trained in full, so they can collide)."""
    peft = require_peft()
    from .targets import collision_target_names

    save = head_modules(model)
    for name in collision_target_names(model, collision_targets):
        module = name.rsplit(".", 1)[0]
        if not any(module == m or module.startswith(f"{m}.") for m in save):
            save.append(module)
    config = peft.LoraConfig(task_type="SEQ_CLS", r=r, lora_alpha=alpha, lora_dropout=dropout,
                             target_modules=list(target_modules) if target_modules else None, modules_to_save=save)
    try:
        return peft.get_peft_model(model, config)
    except ValueError as err:
        raise ValueError(f"cannot add LoRA adapters (target modules {target_modules or 'peft default'}): {err}") from err


def save_head_config(model: torch.nn.Module, output_dir: str | Path) -> Path:
    """Write the classifier's config (labels) next to the adapter, as ``head_config.json``."""
    from .targets import unwrap_model

    path = Path(output_dir) / HEAD_CONFIG_NAME
    unwrap_model(model).config.to_json_file(str(path))
    return path


def _head_config_labels(path: Path) -> dict[str, Any]:
    """The labels (and pad token) of ``head_config.json``, which ``ko-finetune --lora`` writes next to the adapter."""
    head = json.loads((path / HEAD_CONFIG_NAME).read_text(encoding="utf-8"))
    id2label = {int(i): label for i, label in head["id2label"].items()}  # JSON keys are strings
    labels = {"num_labels": len(id2label), "id2label": id2label,
              "label2id": {label: i for i, label in id2label.items()}}
    return {**labels, "pad_token_id": head["pad_token_id"]} if head.get("pad_token_id") is not None else labels


def saved_label_count(path: str | Path, base_model: str) -> int | None:
    """The number of labels of the head saved with the adapter in ``path`` (``adapter_model.safetensors``): the size
    in which its weights differ from those of ``base_model``'s classifier, built empty (on the meta device) from the
    base's config. None when the adapter holds no head, or one of the base's size."""
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForSequenceClassification

    weights = Path(path) / "adapter_model.safetensors"
    if not weights.is_file():
        return None
    with safe_open(str(weights), "pt") as saved:
        shapes = {key.removeprefix("base_model.model."): tuple(saved.get_slice(key).get_shape())
                  for key in saved.keys()}
    with torch.device("meta"):
        base = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(base_model))
    sizes = {shape[dim] for name, param in base.named_parameters()
             if (shape := shapes.get(name)) is not None and len(shape) == param.dim()
             for dim in range(param.dim()) if shape[dim] != param.shape[dim]}
    return sizes.pop() if len(sizes) == 1 else None


def load_lora_classifier(path: str | Path, base_model: str | None = None, **kwargs: Any):
    """A saved PEFT sequence classifier (a ``ko-finetune --lora`` output folder, ``trainer.save_model()`` of a
    ``PeftModel``, ``PeftModel.save_pretrained``), with its labels: peft's
    ``AutoPeftModelForSequenceClassification.from_pretrained(path, num_labels=...)`` (the base named in
    ``adapter_config.json``, the adapters and the trained head), the labels read from ``head_config.json`` where
    ko-finetune wrote one (its outputs up to now keep loading), else their number from the saved head.

    ``base_model``: load the adapter onto this base instead of the one ``adapter_config.json`` names. ``kwargs`` go
    to ``from_pretrained`` (e.g. ``torch_dtype``, or ``id2label`` to name the labels).
    """
    peft = require_peft()
    from transformers import AutoModelForSequenceClassification

    from .load_report import quiet_load_report

    path = Path(path)
    config = peft.PeftConfig.from_pretrained(str(path))
    base = base_model or config.base_model_name_or_path
    if (path / HEAD_CONFIG_NAME).is_file():
        labels = _head_config_labels(path)
    else:
        count = saved_label_count(path, base)
        labels = {"num_labels": count} if count else {}
    if "id2label" in kwargs:  # the caller names the labels
        labels = {key: value for key, value in labels.items() if key == "pad_token_id"}
        kwargs.setdefault("label2id", {label: i for i, label in kwargs["id2label"].items()})
    kwargs = {**labels, **kwargs}
    with quiet_load_report():  # the base's head is missing by design: the adapter brings the trained one
        if base_model is None:
            return peft.AutoPeftModelForSequenceClassification.from_pretrained(str(path), **kwargs)
        model = AutoModelForSequenceClassification.from_pretrained(base_model, **kwargs)
        return peft.PeftModel.from_pretrained(model, str(path))
