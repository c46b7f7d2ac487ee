"""Param groups for any optimizer: the model's weights split as ``Trainer`` splits them, plus one flagged group per
collision target — what ``KOTrainer`` builds, for loops that do not use ``Trainer`` (accelerate, SetFit, trl).

    from ko_hf import KOAdamW, ko_param_groups

    optimizer = KOAdamW(ko_param_groups(model, collision="hard", weight_decay=0.01), lr=2e-5)

Targets are resolved as ``KOTrainer`` resolves them (:func:`ko_hf.targets.resolve_collision_targets`: the head by
default, through PEFT, ``torch.compile`` and DDP wrappers), and every setting left out means what
``KOTrainingArguments`` means (:func:`ko_hf.settings.group_settings`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import torch

from .optim import GROUP_STATE_DEFAULTS
from .settings import group_setting_names, group_settings, ko_settings, read_settings
from .targets import resolve_collision_targets

__all__ = ["ko_param_groups", "decay_parameter_names", "flagged_param_groups"]

#: What ``Trainer.get_decay_parameter_names`` leaves out of weight decay, besides LayerNorm modules' parameters.
_NO_DECAY_PATTERNS = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]


def decay_parameter_names(model: torch.nn.Module) -> list[str]:
    """The names of ``model``'s parameters that take weight decay, as ``Trainer.get_decay_parameter_names`` picks
    them: not biases, not normalisation weights."""
    from transformers.trainer_pt_utils import get_parameter_names

    return get_parameter_names(model, [torch.nn.LayerNorm], _NO_DECAY_PATTERNS)


def flagged_param_groups(model: torch.nn.Module, targets: Mapping[str, torch.nn.Parameter], settings: Mapping[str, Any],
                         *, weight_decay: float = 0.0, decay_names: Collection[str] = ()) -> list[dict[str, Any]]:
    """The trainable parameters of ``model`` as param groups: the decayed ones that do not collide, the
    undecayed ones that do not collide, then one flagged group per target in ``targets`` (``{name: parameter}``,
    in model order), each carrying every KO setting of ``settings`` and the step counter.

    The group order is part of a run: hard collision seeds each step's draws with the group's index.
    """
    names = {id(p): name for name, p in targets.items()}
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = set(decay_names)
    values = {name: settings[name] for name in group_setting_names()}
    groups: list[dict[str, Any]] = [
        {"params": [p for n, p in trainable if n in decay and id(p) not in names], "weight_decay": weight_decay},
        {"params": [p for n, p in trainable if n not in decay and id(p) not in names], "weight_decay": 0.0},
    ]
    for name, param in trainable:
        if id(param) in names:
            groups.append({
                "params": [param],
                "weight_decay": weight_decay if name in decay else 0.0,
                **values,
                **GROUP_STATE_DEFAULTS,
                "collision_names": [names[id(param)]],
            })
    return groups


def ko_param_groups(model: torch.nn.Module, collision: str | None = None, *, weight_decay: float = 0.0,
                    **settings: Any) -> list[dict[str, Any]]:
    """Param groups for ``KOAdamW`` (or any ``ko_optimizer_class(...)``): the same groups ``KOTrainer`` builds.

    ``collision`` (``"soft"``, ``"hard"`` or ``"none"``; default: ``KOTrainingArguments``' default) and any other
    KO setting by its ``KOTrainingArguments`` name (``coll_coef``, ``collision_pairing``, ``collision_targets``,
    ...); a setting left out means what it means there (hard: coef 0.2, λ 0.05, DSMC pairing, seed 42). The
    targets default to the classification head and are resolved through PEFT, ``torch.compile`` and DDP wrappers;
    frozen head layers (PEFT outside ``modules_to_save``) are left out with a warning. Weight decay applies to
    every parameter ``Trainer`` would decay (not biases or normalisation weights). With ``collision="none"`` the
    groups carry no flag: the base optimizer alone, with the same weight-decay split.

    An unknown or invalid setting is a ``ValueError`` naming it and what is valid.
    """
    if collision is not None:
        settings["collision"] = collision
    known = {s.name for s in ko_settings()}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"ko_param_groups got unknown settings {unknown}; KO settings: {', '.join(sorted(known))}")
    values = read_settings(settings)
    values = {**group_settings(values), "collision_targets": values.get("collision_targets")}
    targets = {} if values["collision"] == "none" else resolve_collision_targets(model, values["collision_targets"])
    return flagged_param_groups(model, targets, values, weight_decay=weight_decay,
                                decay_names=decay_parameter_names(model))
