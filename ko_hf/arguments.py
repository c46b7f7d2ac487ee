"""``KOTrainingArguments``: ``TrainingArguments`` plus one field per KO setting, generated from :mod:`ko_hf.settings`.

The KO fields are not written out here: :func:`ko_arguments_class` makes one dataclass field of each
:class:`~ko_hf.settings.KOSetting` (its name, type, default, and ``help``/``choices`` metadata for
``HfArgumentParser``), so a setting added to the table is a field, a YAML key and an ``HfArgumentParser`` flag
without an edit here. What the arguments do besides holding the fields (derive ``coll_coef``/``collision_seed``,
validate through the table, keep Hub tokens out of ``training_args.bin``) is :class:`KOArgumentsMixin`.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from transformers import TrainingArguments

from .settings import KOSetting, derived_values, ko_settings, validate_settings

__all__ = [
    "FACTORY_OPTIM_PREFIXES",
    "SUPPORTED_OPTIMS",
    "KOArgumentsMixin",
    "KOTrainingArguments",
    "check_optim_supports_collisions",
    "derived_defaults",
    "ko_arguments_class",
    "ko_values",
    "optim_name",
    "validate_ko_arguments",
]

#: ``optim`` values whose optimizer builds its own parameter groups (or steps inside backward), so no flagged
#: collision group can be attached: GaLore, APOLLO (low-rank projections of target modules), LOMO/AdaLomo.
FACTORY_OPTIM_PREFIXES = ("galore_", "apollo_", "lomo", "adalomo")
#: ``optim`` values (transformers' ``OptimizerNames``) that train with KO collisions, each run with hard collision on
#: a tiny BERT (tests/test_optims.py; on CPU, with bitsandbytes 0.50, torchao 0.18, schedulefree 1.4, grokadamw 0.1
#: and torch-optimi 0.3 installed for the ones that need them). ``adamw_torch_xla``, ``adamw_torch_npu_fused`` and
#: ``adamw_anyprecision`` (torchdistx) are not refused either, but need hardware or a package we could not run.
SUPPORTED_OPTIMS = (
    "adamw_torch", "adamw_torch_fused", "adafactor", "sgd", "adagrad", "rmsprop",  # torch / transformers
    "adamw_torch_4bit", "adamw_torch_8bit",  # torchao
    "adamw_bnb_8bit", "adamw_8bit", "ademamix", "ademamix_8bit", "lion_8bit", "lion_32bit", "paged_adamw_32bit",
    "paged_adamw_8bit", "paged_ademamix_32bit", "paged_ademamix_8bit", "paged_lion_32bit", "paged_lion_8bit",
    "rmsprop_bnb", "rmsprop_bnb_8bit", "rmsprop_bnb_32bit",  # bitsandbytes
    "schedule_free_adamw", "schedule_free_radam", "schedule_free_sgd",  # schedulefree
    "grokadamw", "stable_adamw",  # grokadamw, torch-optimi
)


def optim_name(args: TrainingArguments) -> str:
    """``args.optim`` as the string a user writes (``"galore_adamw"``), not the enum's repr."""
    return str(getattr(args.optim, "value", args.optim))


def ko_values(args: Any) -> dict[str, Any]:
    """The KO settings of ``args``, by name; a setting declared after ``args``' class was built has its default."""
    return {s.name: getattr(args, s.name, s.default) for s in ko_settings()}


def derived_defaults(args: Any) -> dict[str, Any]:
    """The KO settings whose default follows other settings (``coll_coef`` from ``collision``, ``collision_seed``
    from ``seed``; see :func:`ko_hf.settings.derived_values`). Applied where a setting is left ``None``, and again
    per hyperparameter-search trial."""
    return derived_values({**ko_values(args), "seed": args.seed})


def check_optim_supports_collisions(args: Any) -> None:
    """``ValueError`` naming ``optim`` when collisions are on and the optimizer builds its own parameter groups."""
    name = optim_name(args)
    if args.collision != "none" and name.startswith(FACTORY_OPTIM_PREFIXES):
        raise ValueError(
            f"optim={name!r} builds its own parameter groups, so KO collisions cannot be attached to the head; use a "
            f"standard optimizer ({', '.join(SUPPORTED_OPTIMS)}, or any torch.optim.Optimizer through "
            "optimizer_cls_and_kwargs), or collision='none'"
        )


def validate_ko_arguments(args: Any) -> None:
    """Every check of the KO settings (``ValueError`` naming the value and what is valid)."""
    validate_settings(ko_values(args))
    check_optim_supports_collisions(args)


class KOArgumentsMixin:
    """What a KO arguments class does besides holding its fields; :func:`ko_arguments_class` puts it before the
    ``TrainingArguments`` class it extends."""

    def __post_init__(self) -> None:
        derived = derived_defaults(self)
        #: the derived settings the user left to their default; a search trial re-derives these from its own
        #: collision/seed.
        self._ko_derived = {name for name in derived if getattr(self, name) is None}
        for name in self._ko_derived:
            if derived[name] is not None:
                setattr(self, name, derived[name])
        for name, value in validate_settings(ko_values(self)).items():  # a single target name becomes a list
            setattr(self, name, value)
        super().__post_init__()
        check_optim_supports_collisions(self)

    # Trainer saves the arguments with every checkpoint and model (``training_args.bin`` is ``torch.save(args)``)
    # and ``push_to_hub`` uploads that file: a Hub token must never be in it. Pickling leaves the ``*_token``
    # fields out (the same fields ``to_dict`` redacts); copies made in memory keep them, so a push still works.

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for key in state:
            if key.endswith("_token"):
                state[key] = None
        return state

    def __copy__(self):
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone

    def __deepcopy__(self, memo: dict):
        clone = object.__new__(type(self))
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return clone


def _annotation(setting: KOSetting) -> Any:
    """The field's type as ``HfArgumentParser`` reads it: ``float | None`` for a derived number, ``list[str] | None``
    for a list of names."""
    if setting.type is list:
        return list[str] | None
    return setting.type | None if setting.optional else setting.type


def _setting_field(setting: KOSetting) -> tuple[str, Any, dataclasses.Field]:
    """One KO setting as a ``make_dataclass`` field: name, type, default and ``help``/``choices`` metadata."""
    metadata: dict[str, Any] = {"help": setting.help}
    if setting.choices:
        metadata["choices"] = list(setting.choices)
    return setting.name, _annotation(setting), dataclasses.field(default=setting.default, metadata=metadata)


def _behaviour_fields() -> list[tuple[str, Any, dataclasses.Field]]:
    """Fields that are not KO settings (they say how the trainer behaves, not what the optimizer does)."""
    return [(
        "resume_incomplete_checkpoint", bool, dataclasses.field(default=False, metadata={"help": (
            "Allow resuming from a checkpoint without optimizer.pt, scheduler.pt or trainer_state.json: its weights "
            "are restored and what is missing starts afresh (optimizer moments, LR schedule, collision step "
            "counter; without trainer state also the step count). Warned, and recorded in KOTrainer.resume_report."
        )}),
    )]


def ko_arguments_class(name: str = "KOTrainingArguments", base: type = TrainingArguments) -> type:
    """A dataclass extending ``base`` with one field per KO setting declared now (:func:`ko_hf.settings.ko_settings`),
    then ``resume_incomplete_checkpoint``; its behaviour is :class:`KOArgumentsMixin`.

    Built once at import as :class:`KOTrainingArguments`; call it again to get a class with settings added since.
    """
    fields = [_setting_field(s) for s in ko_settings()] + _behaviour_fields()
    namespace = {
        "__module__": __name__,
        "__qualname__": name,
        "__doc__": f"``{base.__name__}`` plus the KO collision settings (validated at construction).",
    }
    return dataclasses.make_dataclass(name, fields, bases=(KOArgumentsMixin, base), namespace=namespace)


KOTrainingArguments = ko_arguments_class()
