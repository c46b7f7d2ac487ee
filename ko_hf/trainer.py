"""``KOTrainingArguments`` and ``KOTrainer``: Hugging Face ``Trainer`` with KO collisions on the head."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_optimizer import is_optimizer_factory
from transformers.utils import logging

from .collision import neuron_similarity, weight_correlation
from .optim import COLLISION_TYPES, CollisionMixin, ko_optimizer_class, validate_collision_settings
from .targets import collision_target_names

logger = logging.get_logger(__name__)

#: Default ``coll_coef`` per collision type and the default ``collision_distance_scale`` (λ); README, "Defaults",
#: gives the measurements behind them.
DEFAULT_COLL_COEF = {"none": 0.0, "soft": 0.1, "hard": 0.2}
DEFAULT_DISTANCE_SCALE = 0.05


@dataclass
class KOTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus the KO collision settings (validated at construction)."""

    collision: str = field(
        default="soft",
        metadata={"help": "Collision applied to the targets' gradients before each optimizer step.",
                  "choices": list(COLLISION_TYPES)},
    )
    coll_coef: float | None = field(
        default=None,
        metadata={"help": "Collision coefficient in [0, 1]; default: 0.1 for soft, 0.2 for hard (see README)."},
    )
    collision_targets: list[str] | None = field(
        default=None,
        metadata={"help": "Parameters that collide: presets 'head' (default) and 'pooler', parameter/module names "
                          "or regexes, like optim_target_modules."},
    )
    collision_distance_scale: float = field(
        default=DEFAULT_DISTANCE_SCALE,
        metadata={"help": "λ in the hard-collision acceptance U = exp(-λ·‖w_i - w_j‖); the paper uses 1."},
    )
    collision_include_self: bool = field(
        default=False,
        metadata={"help": "Soft collision: keep the diagonal of S (Alg. 2 read literally; only rescales rows)."},
    )
    collision_seed: int | None = field(
        default=None,
        metadata={"help": "Seed of hard collision's random directions (default: --seed)."},
    )

    def __post_init__(self) -> None:
        if self.coll_coef is None and self.collision in DEFAULT_COLL_COEF:
            self.coll_coef = DEFAULT_COLL_COEF[self.collision]
        validate_collision_settings(self.collision, self.coll_coef, self.collision_distance_scale)
        if isinstance(self.collision_targets, str):
            self.collision_targets = [self.collision_targets]
        if self.collision_seed is None:
            self.collision_seed = self.seed
        super().__post_init__()

    # Trainer saves the arguments with every checkpoint and model (``training_args.bin`` is ``torch.save(args)``)
    # and ``push_to_hub`` uploads that file: a Hub token must never be in it. Pickling leaves the ``*_token``
    # fields out (the same fields ``to_dict`` redacts); copies made in memory keep them, so a push still works.

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for key in state:
            if key.endswith("_token"):
                state[key] = None
        return state

    def __copy__(self) -> "KOTrainingArguments":
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone

    def __deepcopy__(self, memo: dict) -> "KOTrainingArguments":
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return clone


def _is_ko_optimizer(optimizer: Any) -> bool:
    return isinstance(getattr(optimizer, "optimizer", optimizer), CollisionMixin)


class KOTrainer(Trainer):
    """``Trainer`` whose optimizer applies KO collisions to the classification head (or other targets).

    With ``collision="none"`` it is exactly ``Trainer``. Otherwise the optimizer is the KO version of the one
    ``TrainingArguments.optim`` (or ``optimizer_cls_and_kwargs``) names, with Trainer's usual weight-decay
    grouping plus one flagged group per target weight. Condensation and collision metrics are logged under
    ``ko/`` at every logging step.
    """

    def __init__(self, model=None, args: TrainingArguments | None = None, *pargs: Any, **kwargs: Any) -> None:
        if args is not None and not isinstance(args, KOTrainingArguments):
            raise ValueError(
                f"KOTrainer needs KOTrainingArguments, got {type(args).__name__}; "
                "KOTrainingArguments takes every TrainingArguments field plus the collision settings"
            )
        super().__init__(model, args, *pargs, **kwargs)
        self.collision_targets = self._resolve_targets()
        self._check_supported_setup()
        from .modelcard import KOModelCardCallback  # facts for the model card; pass your own in callbacks=

        self.model_card_callback = KOModelCardCallback.attach(self)

    # ------------------------------------------------------------------ set-up checks

    @property
    def collision_enabled(self) -> bool:
        return self.args.collision != "none"

    def _resolve_targets(self) -> list[str]:
        if self.model is None:
            return []
        if not self.collision_enabled:
            try:  # still watched for condensation metrics, when the model has a head
                return collision_target_names(self.model, self.args.collision_targets)
            except ValueError:
                return []
        names = collision_target_names(self.model, self.args.collision_targets)
        params = dict(self.model.named_parameters())
        frozen = [n for n in names if not params[n].requires_grad]
        if frozen:
            raise ValueError(f"collision targets {frozen} are frozen (requires_grad=False); unfreeze them or drop them")
        return names

    def _check_supported_setup(self) -> None:
        if not self.collision_enabled:
            return
        if self.is_deepspeed_enabled:
            raise ValueError(
                "collision needs each rank to hold the whole gradient of the head, which DeepSpeed ZeRO shards; "
                "use DDP (plain `accelerate launch`/`torchrun`) or collision='none'"
            )
        if self.is_fsdp_enabled:
            raise ValueError(
                "collision needs each rank to hold the whole gradient of the head, which FSDP shards; "
                "use DDP (plain `accelerate launch`/`torchrun`) or collision='none'"
            )
        if self.optimizer is not None and not _is_ko_optimizer(self.optimizer):
            raise ValueError(
                f"collision={self.args.collision!r} but the optimizer passed in optimizers= is a "
                f"{type(self.optimizer).__name__}, which would silently skip collisions; build it with "
                "ko_hf.ko_optimizer_class(...) and flagged param groups, pass optimizer_cls_and_kwargs=, "
                "or set collision='none'"
            )

    # ------------------------------------------------------------------ optimizer

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        if self.optimizer is not None or not self.collision_enabled:
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        optimizer_cls, optimizer_kwargs = (
            self.optimizer_cls_and_kwargs
            if self.optimizer_cls_and_kwargs is not None
            else self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        )
        if is_optimizer_factory(optimizer_cls) or {"params", "model", "optimizer_dict"} & set(optimizer_kwargs):
            raise ValueError(
                f"optim={self.args.optim!r} builds its own parameter groups, so collisions cannot be attached; "
                "use a standard torch.optim optimizer (e.g. adamw_torch, adamw_torch_fused, sgd)"
            )
        groups = self.collision_param_groups(opt_model)
        self.optimizer = ko_optimizer_class(optimizer_cls)(groups, **optimizer_kwargs)
        return self.optimizer

    def collision_param_groups(self, model: torch.nn.Module) -> list[dict[str, Any]]:
        """Trainer's decay / no-decay groups without the targets, then one flagged group per target."""
        decay = set(self.get_decay_parameter_names(model))
        targets = set(self.collision_targets)
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        args = self.args
        groups: list[dict[str, Any]] = [
            {"params": [p for n, p in trainable if n in decay and n not in targets], "weight_decay": args.weight_decay},
            {"params": [p for n, p in trainable if n not in decay and n not in targets], "weight_decay": 0.0},
        ]
        for name, param in trainable:
            if name in targets:
                groups.append(
                    {
                        "params": [param],
                        "weight_decay": args.weight_decay if name in decay else 0.0,
                        "collision": args.collision,
                        "coll_coef": args.coll_coef,
                        "collision_distance_scale": args.collision_distance_scale,
                        "collision_include_self": args.collision_include_self,
                        "collision_seed": args.collision_seed,
                        "collision_step": 0,
                        "collision_names": [name],
                    }
                )
        return groups

    # ------------------------------------------------------------------ logging

    def collision_metrics(self) -> dict[str, float]:
        """``ko/`` metrics: condensation of every target, and collision statistics since the last call."""
        if self.model is None or not self.collision_targets:
            return {}
        params = dict(self.model.named_parameters())
        metrics: dict[str, float] = {}
        correlations, similarities = [], []
        for name in self.collision_targets:
            weight = params[name].detach()
            weight = weight.reshape(weight.shape[0], -1)
            if weight.shape[0] < 2:
                continue
            correlations.append(weight_correlation(weight))
            similarities.append(neuron_similarity(weight))
            metrics[f"ko/{name}/weight_correlation"] = correlations[-1]
            metrics[f"ko/{name}/neuron_similarity"] = similarities[-1]
        if correlations:
            metrics["ko/weight_correlation"] = sum(correlations) / len(correlations)
            metrics["ko/neuron_similarity"] = max(similarities)
        optimizer = getattr(self.optimizer, "optimizer", self.optimizer)
        if isinstance(optimizer, CollisionMixin):
            metrics.update(_prefixed(optimizer.pop_collision_stats()))
        return metrics

    # ------------------------------------------------------------------ model card

    def create_model_card(self, **kwargs: Any) -> None:
        """Writes README.md in ``args.output_dir`` with the KO section, results and metadata (main process only;
        also what ``push_to_hub`` uploads). No network access.

        Takes ``Trainer.create_model_card``'s keywords (``language``, ``license``, ``tags``, ``model_name``,
        ``finetuned_from``, ``tasks``, ``dataset_tags``, ``dataset``, ``dataset_args``) plus ``dataset_info``,
        ``reproduce_command``, ``metrics`` and ``plots``; see :func:`ko_hf.modelcard.write_model_card`.
        """
        from .modelcard import write_model_card

        write_model_card(self, **kwargs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs or "train_loss" in logs:
            logs = {**logs, **self.collision_metrics()}
        super().log(logs, start_time)


CONDENSATION_METRICS = ("weight_correlation", "neuron_similarity")


def layer_condensation(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{"ko/classifier.weight/weight_correlation": x, ...}`` -> ``{"classifier.weight": {"weight_correlation": x}}``:
    the per-target condensation among ``KOTrainer.collision_metrics()`` (or logged) values."""
    layers: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        prefix, _, metric = key.rpartition("/")
        if metric in CONDENSATION_METRICS and prefix.startswith("ko/") and isinstance(value, (int, float)):
            layers.setdefault(prefix[len("ko/"):], {})[metric] = float(value)
    return layers


def _prefixed(stats: dict[str, dict[str, float]]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    accepted = pairs = 0
    ratios = []
    for name, values in stats.items():
        metrics[f"ko/{name}/grad_change_ratio"] = values["grad_change_ratio"]
        ratios.append(values["grad_change_ratio"])
        if "accepted_pair_fraction" in values:
            metrics[f"ko/{name}/accepted_pair_fraction"] = values["accepted_pair_fraction"]
            accepted += values["accepted_pairs"]
            pairs += values["pairs"]
    if ratios:
        metrics["ko/grad_change_ratio"] = sum(ratios) / len(ratios)
    if pairs:
        metrics["ko/accepted_pair_fraction"] = accepted / pairs
    return metrics
