"""``KOTrainer``: Hugging Face ``Trainer`` with KO collisions on the head (its arguments, ``KOTrainingArguments``,
are in :mod:`ko_hf.arguments` and importable from here too)."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import Trainer, TrainerState, TrainingArguments
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_callback import ExportableState
from transformers.trainer_optimizer import is_optimizer_factory
from transformers.utils import logging

from .arguments import (  # noqa: F401 - KOTrainingArguments and its helpers, where ko-hf 0.1 had them
    FACTORY_OPTIM_PREFIXES,
    SUPPORTED_OPTIMS,
    KOArgumentsMixin,
    KOTrainingArguments,
    check_optim_supports_collisions,
    derived_defaults,
    optim_name,
    validate_ko_arguments,
)
from .run.checkpoints import (
    CheckpointError,
    checkpoint_param_groups,
    find_resume_checkpoint,
    restarted_parts,
    verify_checkpoint,
)
from .collision import condensation
from .logged_metrics import (  # noqa: F401 - also from here
    CONDENSATION_METRICS,
    aggregate_condensation,
    layer_condensation,
    logged_metric,
)
from .groups import flagged_param_groups
from .card.callback import KOModelCardCallback
from .card.write import write_model_card
from .optim import CollisionMixin, fill_saved_group, ko_optimizer_class
from .run.record import checkpoint_run_record, setting_differences
from .settings import DEFAULT_COLL_COEF, group_setting_names, group_settings, ko_setting, ko_settings, setting_names  # noqa: F401,E501
from .targets import (
    collision_target_parameters,
    resolve_collision_targets,
    unwrapped_named_parameters,
)

logger = logging.get_logger(__name__)

#: The defaults of hard collision, read from :mod:`ko_hf.settings` (README, "Defaults", and
#: benchmarks/results/acceptance.md give the measurements behind them).
DEFAULT_DISTANCE_SCALE = ko_setting("collision_distance_scale").default
DEFAULT_PAIRING = ko_setting("collision_pairing").default


def __getattr__(name: str) -> Any:
    if name == "KO_FIELDS":  # the KO fields of KOTrainingArguments, as declared now (what a search trial may change)
        return setting_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


FSDP_REFUSAL = (
    "KOTrainer refuses FSDP: Trainer's FSDP path with collisions has not been verified end to end (with use_cpu "
    "Trainer falls back to DDP, so only GPUs could test it). The KO optimizer itself supports FSDP2 "
    "(torch.distributed.fsdp.fully_shard) in your own training loop: see examples/fsdp2_train.py and the README's "
    "FSDP section. Or use DDP (plain `accelerate launch`/`torchrun`), or collision='none'"
)


class ResumeError(CheckpointError):
    """A checkpoint that this run cannot continue (its collision settings differ from the arguments)."""


@dataclass
class ResumeReport:
    """What ``KOTrainer.train(resume_from_checkpoint=...)`` resumed from; ``missing``: the state files the
    checkpoint lacked, whose part of the run started afresh (allowed by ``resume_incomplete_checkpoint``)."""

    checkpoint: str
    missing: list[str] = field(default_factory=list)
    #: The optimizer step training continued from (the checkpoint's; 0 when its trainer state was missing).
    resumed_at_step: int | None = None
    #: True when the checkpoint's run had already taken all its steps: the resume trained no step.
    finished_before_resume: bool = False

    @property
    def restarted(self) -> bool:
        """True when the optimizer, schedule, step count or random state did not come back from the checkpoint."""
        return bool(self.missing)

    @property
    def restarted_parts(self) -> list[str]:
        """What started afresh, in words (``["the LR schedule", ...]``); empty when nothing did."""
        return restarted_parts(self.missing)


def collision_setting_differences(saved: list[dict[str, Any]], wanted: list[dict[str, Any]]) -> list[str]:
    """How the collision settings of a checkpoint's param groups (``saved``) differ from those a run would build
    (``wanted``): ``"coll_coef: checkpoint 0.5, arguments 0.1"``, ... (empty when they agree).

    The settings compared are the table's group keys (:func:`ko_hf.settings.group_setting_names`), so a setting
    added later follows without edits; the state (step counter, names, defaults' release) is not compared. A saved group that lacks a setting ran with what the release that
    wrote it had instead (:func:`ko_hf.optim.fill_saved_group`).
    """
    def flagged(groups, fill):
        return {tuple(g.get("collision_names") or ()): fill(dict(g)) for g in groups
                if g.get("collision", "none") != "none"}

    old = flagged(saved, fill_saved_group)
    new = flagged(wanted, lambda g: {**group_settings(g), **g})
    if not old or not new:
        if old or new:
            kind = lambda groups: next(iter(groups.values()))["collision"] if groups else "none"  # noqa: E731
            return [f"collision: checkpoint {kind(old)!r}, arguments {kind(new)!r}"]
        return []
    if set(old) != set(new):
        names = lambda groups: sorted(n for key in groups for n in key)  # noqa: E731
        return [f"collision targets: checkpoint {names(old)}, arguments {names(new)}"]
    keys = set(group_setting_names())
    unset = "(not recorded)"
    differences: list[str] = []
    for key in sorted(keys, key=lambda k: (k != "collision", k)):  # the type first
        for target in sorted(new):
            before = old[target].get(key, unset)
            after = new[target].get(key, unset)
            if before != after:
                line = f"{key}: checkpoint {before!r}, arguments {after!r}"
                if line not in differences:
                    differences.append(line)
    return differences


def _batch_mean_loss_class(model: Any) -> str | None:
    """The class name of ``model`` when its loss is the mean over its batch, else None: a transformers
    sequence-classification model (the class whose ``forward`` computes the loss is one) that does not declare
    ``accepts_loss_kwargs`` itself.

    Trainer takes a model whose ``forward`` has ``**kwargs`` (BERT's has, for attention options) for one whose loss
    is a sum over tokens divided by ``num_items_in_batch``: it leaves such a loss undivided by the gradient
    accumulation steps and, with ``average_tokens_across_devices`` (transformers 5's default), multiplies it by the
    number of processes. A classification loss is a plain batch mean (``CrossEntropyLoss()``), so both came out
    that many times too large: measured 2.1975 against 1.0988 on the first step with 2 processes, and the same
    with 2 accumulation steps (tests/test_distributed.py, tests/test_loss_scale.py).
    """
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

    from .targets import unwrap_model

    inner = unwrap_model(model) if model is not None else None
    if inner is None or hasattr(inner, "accepts_loss_kwargs"):
        return None
    owner = next((cls for cls in type(inner).__mro__ if "forward" in vars(cls)), None)
    classifiers = set(MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES.values())
    return type(inner).__name__ if owner is not None and owner.__name__ in classifiers else None


def _is_ko_optimizer(optimizer: Any) -> bool:
    return isinstance(getattr(optimizer, "optimizer", optimizer), CollisionMixin)


def _check_not_factory(optimizer_cls: Any, optimizer_kwargs: dict[str, Any], where: str) -> None:
    if is_optimizer_factory(optimizer_cls) or {"params", "model", "optimizer_dict"} & set(optimizer_kwargs):
        raise ValueError(
            f"{where} builds its own parameter groups, so KO collisions cannot be attached; use a standard "
            f"torch.optim optimizer ({', '.join(SUPPORTED_OPTIMS)}), or collision='none'"
        )


def _reject_trial(trial: Any, err: ValueError) -> None:
    """A trial whose KO settings are invalid: pruned under optuna (the study goes on), else a ValueError."""
    number = getattr(trial, "number", None)
    message = f"hyperparameter-search trial{'' if number is None else f' {number}'} rejected before training: {err}"
    logger.warning(message)
    if hasattr(trial, "study") or type(trial).__module__.startswith("optuna"):
        import optuna

        raise optuna.TrialPruned(message) from err
    raise ValueError(message) from err


class KOTrainer(Trainer):
    """``Trainer`` whose optimizer applies KO collisions to the classification head (or other targets).

    With ``collision="none"`` it is exactly ``Trainer``. Otherwise the optimizer is the KO version of the one
    ``TrainingArguments.optim`` (or ``optimizer_cls_and_kwargs``) names, with Trainer's usual weight-decay
    grouping plus one flagged group per target weight. Condensation and collision metrics are logged under
    ``ko/`` at every logging step.
    """

    def __init__(self, model=None, args: TrainingArguments | None = None, *pargs: Any, **kwargs: Any) -> None:
        if args is None:  # what Trainer does, with the KO arguments (default: soft collision on the head)
            args = KOTrainingArguments(output_dir="tmp_trainer")
        elif not isinstance(args, KOArgumentsMixin):
            raise ValueError(
                f"KOTrainer needs KOTrainingArguments, got {type(args).__name__}; "
                "KOTrainingArguments takes every TrainingArguments field plus the collision settings"
            )
        super().__init__(model, args, *pargs, **kwargs)
        mean_loss = _batch_mean_loss_class(self.model) if self.model_accepts_loss_kwargs else None
        if mean_loss:  # the loss keeps one batch's scale under gradient accumulation and data parallelism
            self.model_accepts_loss_kwargs = False
            logger.info("%s computes a batch-mean loss: not rescaled by accumulation steps or processes", mean_loss)
        self._ko_search_base: dict[str, Any] | None = None
        self.collision_targets = self._resolve_targets()
        self._check_supported_setup()
        # facts for the model card; pass your own in callbacks=
        self.model_card_callback = KOModelCardCallback.attach(self)
        #: Set by ``train(resume_from_checkpoint=...)``: which checkpoint, and what of its state was missing.
        self.resume_report: ResumeReport | None = None

    # ------------------------------------------------------------------ set-up checks

    @property
    def collision_enabled(self) -> bool:
        return self.args.collision != "none"

    def collision_parameters(self, model: torch.nn.Module | None = None) -> dict[str, torch.nn.Parameter]:
        """``{name: parameter}`` of the collision targets in ``model`` (default: the trainer's), by their plain
        names (through PEFT / torch.compile / DDP wrappers)."""
        model = self.model if model is None else model
        if model is None or not self.collision_targets:
            return {}
        params = dict(unwrapped_named_parameters(model))
        return {name: params[name] for name in self.collision_targets if name in params}

    def _resolve_targets(self) -> list[str]:
        if self.model is None:
            return []
        if not self.collision_enabled:
            try:  # still watched for condensation metrics, when the model has a head
                return list(collision_target_parameters(self.model, self.args.collision_targets))
            except ValueError:
                return []
        return list(resolve_collision_targets(self.model, self.args.collision_targets))

    def _check_supported_setup(self) -> None:
        if not self.collision_enabled:
            return
        check_optim_supports_collisions(self.args)
        if self.optimizer_cls_and_kwargs is not None:
            optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs
            _check_not_factory(optimizer_cls, optimizer_kwargs, "optimizer_cls_and_kwargs")
        if self.is_deepspeed_enabled:
            raise ValueError(
                "collision needs each rank to hold the whole gradient of the head, which DeepSpeed ZeRO shards; "
                "use DDP (plain `accelerate launch`/`torchrun`) or collision='none'"
            )
        if self.is_fsdp_enabled:
            raise ValueError(FSDP_REFUSAL)
        if self.optimizer is not None and not _is_ko_optimizer(self.optimizer):
            raise ValueError(
                f"collision={self.args.collision!r} but the optimizer passed in optimizers= is a "
                f"{type(self.optimizer).__name__}, which would silently skip collisions; build it with "
                "ko_hf.ko_optimizer_class(...) and flagged param groups, pass optimizer_cls_and_kwargs=, "
                "or set collision='none'"
            )

    # ------------------------------------------------------------------ resume

    #: Set by ``train``: True when training diverged (the final training loss is not finite, or the trained weights
    #: hold NaN/inf), which is logged as a warning.
    diverged: bool = False

    def resolve_resume_checkpoint(self, resume_from_checkpoint: str | bool | None) -> str | None:
        """The checkpoint ``train`` resumes from, checked: ``True`` = the newest complete ``checkpoint-*`` of
        ``output_dir`` (newer incomplete ones are skipped with a warning), a path = that checkpoint, which must be
        whole. Raises ``ValueError`` (:class:`~ko_hf.run.checkpoints.CheckpointError`, :class:`ResumeError`) when the
        checkpoint is truncated, lacks optimizer/scheduler/trainer state (unless ``resume_incomplete_checkpoint``),
        or was trained with other collision settings. Sets :attr:`resume_report`."""
        if resume_from_checkpoint is None or resume_from_checkpoint is False:
            return None
        allow = self.args.resume_incomplete_checkpoint
        if resume_from_checkpoint is True:
            report = find_resume_checkpoint(self.args.output_dir, allow_incomplete=allow)
        else:
            report = verify_checkpoint(str(resume_from_checkpoint), allow_incomplete=allow)
        self._check_checkpoint_collision_settings(report.path)
        if report.missing:
            logger.warning("resuming from %s without %s: %s start afresh (resume_incomplete_checkpoint)",
                           report.path, ", ".join(report.missing), "; ".join(restarted_parts(report.missing)))
        self.resume_report = ResumeReport(report.path, list(report.missing))
        return report.path

    def _check_checkpoint_collision_settings(self, checkpoint: str) -> None:
        """A resumed run continues the checkpoint's run: its collision settings must be the arguments'. They are
        read from the optimizer state's param groups, or, when the checkpoint has none, from the record of its run
        (:mod:`ko_hf.run.record`, written by :func:`ko_hf.finetune.finetune`)."""
        if self.model is None:
            return
        saved = checkpoint_param_groups(checkpoint)
        if saved is not None:
            if self.optimizer is not None:
                wanted = self.optimizer.param_groups
            else:
                wanted = self.collision_param_groups(self.model) if self.collision_enabled else []
            differences = collision_setting_differences(saved, wanted)
        else:
            recorded = checkpoint_run_record(checkpoint)
            if recorded is None:
                logger.warning("%s has no optimizer state and its run kept no record of its settings: its collision "
                               "settings cannot be checked against the arguments", checkpoint)
                return
            names = [name for name in setting_names() if name in recorded]
            differences = setting_differences({name: recorded[name] for name in names},
                                              {name: getattr(self.args, name) for name in names})
        if differences:
            raise ResumeError(
                f"cannot resume from {checkpoint}: it was trained with other collision settings than the arguments "
                f"give ({'; '.join(differences)}). A resumed run keeps its checkpoint's collision settings: resume "
                "with the checkpoint's values, or train the new settings from the start into another output_dir"
            )

    def train(self, resume_from_checkpoint: str | bool | None = None, trial: Any = None,
              ignore_keys_for_eval: list[str] | None = None, **kwargs: Any):
        """``Trainer.train``, with the checkpoint checked first (see :meth:`resolve_resume_checkpoint`); a
        checkpoint of a run that had taken all its steps trains no step. Sets :attr:`diverged` at the end."""
        self.diverged = False
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:  # their checkpoints have another layout
            output = super().train(resume_from_checkpoint, trial, ignore_keys_for_eval, **kwargs)
        else:
            checkpoint = self.resolve_resume_checkpoint(resume_from_checkpoint)
            if checkpoint is not None and TRAINER_STATE_NAME in self.resume_report.missing:
                # transformers cannot resume without trainer state: start at step 0 from the checkpoint's weights
                self._load_from_checkpoint(checkpoint)
                self.resume_report.resumed_at_step = 0
                checkpoint = None
            output = super().train(checkpoint, trial, ignore_keys_for_eval, **kwargs)
        reason = self.diverged_reason()
        self.diverged = bool(reason)
        if self.diverged:
            logger.warning("training diverged: %s; the trained weights are unusable. Lower the learning rate (or "
                           "coll_coef), or check the data", reason)
        return output

    def diverged_reason(self) -> str:
        """Why the training diverged, in words (empty when it did not): a non-finite last logged loss, weights
        holding NaN/inf."""
        loss = _final_loss(self.state.log_history)
        bad = _non_finite_weights(self.model)
        parts = [f"the final training loss is {loss}"] if loss is not None and not math.isfinite(loss) else []
        if bad:
            parts.append(f"{len(bad)} weight tensor(s) hold NaN/inf ({bad[0]}{', ...' if len(bad) > 1 else ''})")
        return " and ".join(parts)

    def _init_training_state(self, max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint,
                             trial):
        # transformers compares the arguments' logging/eval/save steps with the checkpoint's, which stores them
        # resolved to absolute steps: a ratio (logging_steps 0.02) would always "differ" (0.02 != 2). Compare the
        # resolved values instead.
        with _absolute_steps(self.args, max_steps):
            epochs_trained, steps_trained = super()._init_training_state(
                max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial)
        # A checkpoint written before a callback kept state (ko-hf 0.1: the step timer, the card's start record)
        # has no entry for it, and Trainer's checkpoint code looks every entry up by name: give it the fresh one.
        for callback in [*self.callback_handler.callbacks, self.control]:
            if isinstance(callback, ExportableState):
                self.state.stateful_callbacks.setdefault(type(callback).__name__, callback.state())
        if resume_from_checkpoint is not None:
            finished = self.state.global_step >= max_steps
            if self.resume_report is not None:
                self.resume_report.resumed_at_step = self.state.global_step
                self.resume_report.finished_before_resume = finished
            if finished:
                # every step was taken before the checkpoint: transformers would still enter the last epoch (when
                # the steps do not fill it) and take one more step before it checks the count
                logger.info("%s is the end of its run (step %d of %d): no step left to train",
                            resume_from_checkpoint, self.state.global_step, max_steps)
                return num_train_epochs, 0
        return epochs_trained, steps_trained

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
        _check_not_factory(optimizer_cls, optimizer_kwargs, f"optim={optim_name(self.args)!r}")
        groups = self.collision_param_groups(opt_model)
        self.optimizer = ko_optimizer_class(optimizer_cls)(groups, **optimizer_kwargs)
        return self.optimizer

    def collision_param_groups(self, model: torch.nn.Module) -> list[dict[str, Any]]:
        """Trainer's decay / no-decay groups without the targets, then one flagged group per target
        (:func:`ko_hf.groups.flagged_param_groups`, what :func:`ko_hf.ko_param_groups` gives outside Trainer)."""
        args = self.args
        settings = {name: getattr(args, name) for name in group_setting_names()}
        return flagged_param_groups(model, self.collision_parameters(model), settings,
                                    weight_decay=args.weight_decay, decay_names=self.get_decay_parameter_names(model))

    # ------------------------------------------------------------------ hyperparameter search

    def hyperparameter_search(self, *args: Any, **kwargs: Any):
        """``Trainer.hyperparameter_search``, with the KO settings re-derived per trial.

        A trial that sets ``collision`` but not ``coll_coef`` gets that collision type's default coef (as
        ``KOTrainingArguments`` would), unless ``coll_coef`` was given explicitly to the arguments; the same for
        ``collision_seed`` and ``seed``. Every trial starts from the arguments' own KO settings (not from the
        previous trial's). A trial with invalid KO settings is rejected before it trains: with optuna it is
        pruned (``optuna.TrialPruned`` carrying the message) and the study goes on; with other backends it raises
        ``ValueError``. :func:`ko_hf.search.ko_hp_space` builds an optuna search space over the KO settings.
        """
        self._ko_search_base = {name: getattr(self.args, name) for name in setting_names()}
        self._ko_search_base["_ko_derived"] = set(getattr(self.args, "_ko_derived", ()))
        try:
            return super().hyperparameter_search(*args, **kwargs)
        finally:
            self._restore_ko_settings()
            self._ko_search_base = None

    def _restore_ko_settings(self) -> None:
        if self._ko_search_base is not None:
            for name, value in self._ko_search_base.items():
                setattr(self.args, name, set(value) if name == "_ko_derived" else value)

    def _hp_search_setup(self, trial: Any) -> None:
        if self.hp_search_backend is None or trial is None or self._ko_search_base is None:
            return super()._hp_search_setup(trial)
        self._restore_ko_settings()
        super()._hp_search_setup(trial)
        if isinstance(trial, dict):
            chosen = set(trial)
        else:  # optuna: the space returns the trial's stored values again for the same names
            chosen = set(self.hp_space(trial))
        derived = getattr(self.args, "_ko_derived", set())
        for name, value in derived_defaults(self.args).items():
            if name in derived and name not in chosen and value is not None:
                setattr(self.args, name, value)
        try:
            validate_ko_arguments(self.args)
            self.collision_targets = self._resolve_targets()
            self._check_supported_setup()
        except ValueError as err:
            _reject_trial(trial, err)

    # ------------------------------------------------------------------ logging

    def collision_metrics(self) -> dict[str, float]:
        """``ko/`` metrics: condensation of every target, and collision statistics since the last call.

        Per target ``ko/<name>/<metric>``; the aggregates ``ko/<metric>`` (mean weight correlation, max neuron
        similarity, mean gradient change and cosine, min cosine, pooled accepted fraction) only with two or more
        targets, where they say something the per-target values do not (read either with :func:`logged_metric`).
        """
        params = self.collision_parameters()
        if not params:
            return {}
        per_target = {name: values for name, param in params.items() if (values := condensation(param)) is not None}
        metrics = {f"ko/{name}/{key}": value for name, values in per_target.items() for key, value in values.items()}
        metrics.update(aggregate_condensation(per_target))
        optimizer = getattr(self.optimizer, "optimizer", self.optimizer)
        if isinstance(optimizer, CollisionMixin):
            metrics.update(_prefixed(optimizer.pop_collision_stats()))
        return metrics

    @property
    def collision_warnings(self) -> list[str]:
        """The guard-rail warnings of this run's KO optimizer (:mod:`ko_hf.guards`): targets on which the collision
        cannot act, and targets whose gradient it turned around on average; the model card and ``ko-finetune``'s
        summary show them."""
        optimizer = getattr(self.optimizer, "optimizer", self.optimizer)
        return [str(w) for w in getattr(optimizer, "collision_warnings", ())]

    # ------------------------------------------------------------------ model card

    def create_model_card(self, **kwargs: Any) -> None:
        """Writes README.md in ``args.output_dir`` with the KO section, results and metadata (main process only;
        also what ``push_to_hub`` uploads). No network access.

        Takes ``Trainer.create_model_card``'s keywords (``language``, ``license``, ``tags``, ``model_name``,
        ``finetuned_from``, ``tasks``, ``dataset_tags``, ``dataset``, ``dataset_args``) plus ``dataset_info``,
        ``reproduce_command``, ``metrics`` and ``plots``; see :func:`ko_hf.card.write_model_card`.
        """
        write_model_card(self, **kwargs)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "train_loss" in logs:  # the end of training: in place, so train()'s metrics (train_results.json) get them
            logs.update(self.collision_metrics())
        elif "loss" in logs:
            logs = {**logs, **self.collision_metrics()}
        super().log(logs, start_time)


_STEP_ARGUMENTS = ("logging_steps", "eval_steps", "save_steps")


@contextlib.contextmanager
def _absolute_steps(args: TrainingArguments, max_steps: int):
    """Within the block, ratio-valued ``logging_steps``/``eval_steps``/``save_steps`` read as the absolute step
    counts ``TrainerState.compute_steps`` resolves them to (the values a checkpoint's trainer state holds)."""
    resolved = TrainerState()
    resolved.compute_steps(args, max_steps)
    before = {name: getattr(args, name) for name in _STEP_ARGUMENTS}
    try:
        for name in _STEP_ARGUMENTS:
            if before[name] is not None and before[name] < 1:
                setattr(args, name, getattr(resolved, name))
        yield
    finally:
        for name, value in before.items():
            setattr(args, name, value)


def _final_loss(log_history: list[dict[str, Any]]) -> float | None:
    """The last logged training loss (the run's mean when no step loss was logged); None when nothing was."""
    for key in ("loss", "train_loss"):
        losses = [entry[key] for entry in log_history if isinstance(entry.get(key), (int, float))]
        if losses:
            return float(losses[-1])
    return None


def _non_finite_weights(model: torch.nn.Module | None) -> list[str]:
    """The names of the model's floating-point parameters that hold NaN or inf."""
    if model is None:
        return []
    return [name for name, param in model.named_parameters()
            if param.is_floating_point() and not bool(torch.isfinite(param.detach()).all())]


def _prefixed(stats: dict[str, dict[str, float]]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    accepted = pairs = 0
    for name, values in stats.items():
        for key in ("grad_change_ratio", "grad_cosine", "grad_cosine_min", "accepted_pair_fraction"):
            if key in values:
                metrics[f"ko/{name}/{key}"] = values[key]
        if "accepted_pair_fraction" in values:
            accepted += values["accepted_pairs"]
            pairs += values["pairs"]
    if len(stats) >= 2:
        metrics["ko/grad_change_ratio"] = sum(v["grad_change_ratio"] for v in stats.values()) / len(stats)
        metrics["ko/grad_cosine"] = sum(v["grad_cosine"] for v in stats.values()) / len(stats)
        metrics["ko/grad_cosine_min"] = min(v["grad_cosine_min"] for v in stats.values())
        if pairs:
            metrics["ko/accepted_pair_fraction"] = accepted / pairs
    return metrics
