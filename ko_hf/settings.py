"""The KO settings, declared once.

Each :class:`KOSetting` below is the single declaration of one collision setting: its name (the
``KOTrainingArguments`` field, the YAML key and, where it travels with the parameters, the param-group key), type,
default, help, valid values, and the short names other surfaces use (the CLI flag, ``compare``'s ``KEY=VALUE``).
Everything else derives from :data:`KO_SETTINGS`: the dataclass fields, what a param group that leaves a key out
means, the CLI options, ``compare``'s setting parser, the model card and its reproduce snippet. Adding a setting
means adding one entry here (and using it where it acts: the optimizer, for a param-group key).

One set of defaults: a param group that names a collision type and leaves a setting out means the setting's
``default`` (or its ``derive``d value), exactly what ``KOTrainingArguments`` means. The only other value a missing
key can mean is ``legacy``: what a group *saved by an earlier ko-hf* (a checkpoint, a compare record), written
before the setting existed, ran with; only loading saved state reads it.

Pure Python on purpose: the CLI reads this table to build ``--help`` without importing torch or transformers.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

COLLISION_TYPES = ("none", "soft", "hard")
#: Hard collision's pairing: a random perfect matching per step (``dsmc``) or every accepted pair (Eq. 8, ``all``).
PAIRINGS = ("dsmc", "all")
#: The collisions' form: each row's change capped at coef times the row's length (``bounded``), or Alg. 1 and 2
#: as printed (``paper``).
FORMS = ("bounded", "paper")
#: Default ``coll_coef`` per collision type; README, "Defaults", gives the measurements behind them.
DEFAULT_COLL_COEF = {"none": 0.0, "soft": 0.1, "hard": 0.2}
#: The seed a param group without ``collision_seed`` draws from: ``TrainingArguments``' default seed, so that a
#: hand-built group draws what a ``KOTrainingArguments`` run with default arguments draws.
DEFAULT_SEED = 42
#: The ko-hf release whose defaults this table declares; flagged param groups record it (``ko_hf_defaults``).
DEFAULTS_VERSION = "0.3"

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


#: ``KOSetting.legacy`` of a setting that every saved param group carries (it existed from the start).
NO_LEGACY = _Missing()
#: ko-hf 0.2's marker of a setting that param groups do not carry (its ``group_default``); 0.3 declares
#: ``KOSetting.in_group`` instead and reads this nowhere. Kept for imports of 0.2.
NOT_IN_GROUP = _Missing()


@dataclass(frozen=True)
class KOSetting:
    """One KO setting. ``type`` is ``str``, ``float``, ``int``, ``bool`` or ``list`` (a list of names)."""

    name: str
    type: type
    default: Any
    help: str
    #: Carried by the flagged param groups (the optimizer acts on it). A group that leaves it out means ``default``
    #: (or the ``derive``d value), as ``KOTrainingArguments`` does.
    in_group: bool = False
    #: What a param group saved by an earlier release, which had no such key, ran with (``NO_LEGACY``: every saved
    #: group has the key). Read only when saved state is loaded: checkpoints, compare records.
    legacy: Any = NO_LEGACY
    choices: tuple[str, ...] = ()
    #: Inclusive bounds of a number.
    low: float | None = None
    high: float | None = None
    #: ``None`` is a valid value (it means: derived, see ``derive``).
    optional: bool = False
    #: The value when left ``None``, from the other settings (and ``TrainingArguments.seed``).
    derive: Callable[[Mapping[str, Any]], Any] | None = None
    #: The CLI option (``--flag``); extra accepted spellings in ``aliases``.
    flag: str = ""
    aliases: tuple[str, ...] = ()
    #: ``compare``'s key (``hard:KEY=VALUE``); ``""``: not settable per compared setting.
    key: str = ""
    #: How the card and ``compare`` name the setting (``λ`` for the distance scale).
    label: str = ""
    #: The collision types the setting acts on (the card and ``compare`` describe it only for those).
    applies_to: tuple[str, ...] = ("soft", "hard")
    #: Metavar in ``--help``.
    metavar: str = "X"
    #: Shown in one-line descriptions of a run (``describe``); the seed is not.
    described: bool = True
    #: What one of the ``choices`` is called in an error: ``collision='x' is not a collision type; valid: ...``.
    noun: str = ""

    @property
    def has_legacy(self) -> bool:
        return self.legacy is not NO_LEGACY

    @property
    def cli_flag(self) -> str:
        return "--" + (self.flag or self.name.replace("_", "-"))

    @property
    def short(self) -> str:
        """The name in descriptions: ``coef=0.2``, ``λ=0.05``."""
        return self.label or self.key or self.name

    def what_is_valid(self) -> str:
        if self.choices:
            return "valid: " + ", ".join(self.choices)
        if self.type is bool:
            return "it must be true or false"
        if self.type is list:
            return "it must be a list of non-empty names"
        kind = "an integer" if self.type is int else "a finite number"
        if self.low is not None and self.high is not None:
            return f"it must be {kind} in [{self.low:g}, {self.high:g}]"
        if self.low is not None:
            return f"it must be {kind} >= {self.low:g}"
        return f"it must be {kind}"

    def error(self, value: Any, where: str = "") -> ValueError:
        if self.choices and self.noun:
            return ValueError(f"{where or self.name}={value!r} is not a {self.noun}; {self.what_is_valid()}")
        return ValueError(f"{where or self.name}={value!r} is invalid; {self.what_is_valid()}")

    def validate(self, value: Any, where: str = "") -> Any:
        """``value`` if valid for this setting (a single name becomes a one-item list), else ``ValueError``
        naming the value and what is valid."""
        if value is None and (self.optional or self.type is list):
            return None
        if self.choices:
            if value not in self.choices:
                raise self.error(value, where)
            return value
        if self.type is bool:
            if not isinstance(value, bool):
                raise self.error(value, where)
            return value
        if self.type is list:
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)) or not items or not all(isinstance(v, str) and v for v in items):
                raise self.error(value, where)
            return list(items)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise self.error(value, where)
        if self.type is int and not isinstance(value, numbers.Integral):
            raise self.error(value, where)
        if not math.isfinite(value):
            raise self.error(value, where)
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise self.error(value, where)
        return value

    def parse(self, raw: str, where: str = "") -> Any:
        """A value written as text (``--set``, ``compare``'s ``KEY=VALUE``) -> the typed, validated value.
        A list is ``+``- or ``,``-separated."""
        text = raw.strip()
        if self.type is bool:
            if text.lower() not in _TRUE | _FALSE:
                raise self.error(raw, where)
            return text.lower() in _TRUE
        if self.type is list:
            return self.validate(text.replace(",", "+").split("+") if text else [], where)
        if self.type in (int, float):
            try:
                value: Any = int(text) if self.type is int else float(text)
            except ValueError:
                raise self.error(raw, where) from None
            return self.validate(value, where)
        return self.validate(text, where)

    def format(self, value: Any) -> str:
        """The value as ``parse`` reads it back (``head+pooler``, ``true``, ``0.2``)."""
        if isinstance(value, (list, tuple)):
            return "+".join(map(str, value))
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, float):
            return f"{value:g}"
        return str(value)


def _derived_coef(values: Mapping[str, Any]) -> float | None:
    return DEFAULT_COLL_COEF.get(values.get("collision"))


def _derived_seed(values: Mapping[str, Any]) -> int | None:
    return values.get("seed", DEFAULT_SEED)


KO_SETTINGS: tuple[KOSetting, ...] = (
    KOSetting(
        "collision", str, "soft", "Collision applied to the targets' gradients before each optimizer step: none "
        "(plain AdamW), soft or hard (default: soft).", in_group=True, choices=COLLISION_TYPES,
        label="collision", applies_to=COLLISION_TYPES, metavar="TYPE", noun="collision type"),
    KOSetting(
        "coll_coef", float, None, "Collision coefficient in [0, 1] (default: 0.1 soft, 0.2 hard; see README).",
        in_group=True, low=0.0, high=1.0, optional=True, derive=_derived_coef, key="coef", label="coef"),
    KOSetting(
        "collision_distance_scale", float, 0.05, "λ of hard collision's acceptance exp(-λ·‖w_i - w_j‖) (default: "
        "0.05; the paper uses 1).", in_group=True, low=0.0, flag="distance-scale", key="lambda", label="λ",
        applies_to=("hard",)),
    KOSetting(
        "collision_pairing", str, "dsmc", "Hard collision's pairs: dsmc (a random perfect matching each step, each "
        "candidate pair tested by Eq. 7 and collided once: energy-conserving) or all (Eq. 8 as printed, every "
        "accepted pair at once; with --form paper, ko-hf 0.1's) (default: dsmc).", in_group=True, legacy="all", choices=PAIRINGS,
        flag="pairing", key="pairing", label="pairing", applies_to=("hard",), metavar="NAME", noun="pairing"),
    KOSetting(
        "collision_form", str, "bounded", "The collisions' form: bounded (no neuron's gradient changes by more than "
        "coef times its own length, so none is turned around; hard collision then loses energy but keeps momentum) "
        "or paper (Alg. 1 and 2 as printed; ko-hf 0.1 and 0.2) (default: bounded).", in_group=True, legacy="paper",
        choices=FORMS, flag="form", key="form", label="form", metavar="NAME", noun="collision form"),
    KOSetting(
        "collision_targets", list, None, "Weights that collide (repeatable): presets head (default) and pooler, "
        "parameter/module names or regexes, like optim_target_modules.", key="targets", label="targets",
        metavar="NAME"),
    KOSetting(
        "collision_include_self", bool, False, "Soft collision: keep the diagonal of S (Alg. 2 read literally; "
        "only rescales rows).", in_group=True, flag="include-self", key="include_self",
        label="include_self", applies_to=("soft",)),
    KOSetting(
        "collision_seed", int, None, "Seed of hard collision's random directions and pairings (default: --seed).",
        in_group=True, optional=True, derive=_derived_seed, applies_to=("hard",), metavar="N", described=False),
)


def ko_settings() -> tuple[KOSetting, ...]:
    """The declared settings (read at call time, so that an added entry reaches every use)."""
    return KO_SETTINGS


def ko_setting(name: str) -> KOSetting:
    for setting in ko_settings():
        if setting.name == name:
            return setting
    raise KeyError(f"{name!r} is not a KO setting; KO settings: {', '.join(s.name for s in ko_settings())}")


def setting_names() -> tuple[str, ...]:
    return tuple(s.name for s in ko_settings())


def group_setting_names() -> tuple[str, ...]:
    """The settings a flagged param group carries."""
    return tuple(s.name for s in ko_settings() if s.in_group)


def group_settings(group: Mapping[str, Any]) -> dict[str, Any]:
    """Every setting a flagged param group carries, each one it leaves out (or sets to ``None``) filled with its
    default, as ``KOTrainingArguments`` fills it: ``{"collision": "hard"}`` means hard at coef 0.2, λ 0.05, DSMC
    pairing, seed 42 (TrainingArguments' default seed)."""
    values = {s.name: group[s.name] for s in ko_settings() if s.in_group and group.get(s.name) is not None}
    for setting in ko_settings():
        if setting.in_group and setting.name not in values:
            values[setting.name] = setting.derive(values) if setting.derive is not None else setting.default
    return values


def group_defaults() -> dict[str, Any]:
    """ko-hf 0.2's name, deprecated: what a flagged param group means for each setting it leaves out. Since 0.3 that
    depends on the group's collision type; this is :func:`group_settings` of a group that names none."""
    warnings.warn("ko_hf.settings.group_defaults() is deprecated since ko-hf 0.3: a param group that names a "
                  "collision type means KOTrainingArguments' defaults for that type; use group_settings(group)",
                  FutureWarning, stacklevel=2)
    return group_settings({})


def legacy_values() -> dict[str, Any]:
    """Setting -> what a group saved before the setting existed ran with (its ``legacy``): a checkpoint of ko-hf
    0.1 has no ``collision_pairing`` (it paired as ``"all"``), one of 0.1 or 0.2 no ``collision_form``
    (the paper's form)."""
    return {s.name: s.legacy for s in ko_settings() if s.has_legacy}


def compare_keys() -> dict[str, KOSetting]:
    """``compare``'s ``KEY`` (``coef``, ``lambda``, ...) -> setting."""
    return {s.key: s for s in ko_settings() if s.key}


def derived_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The settings whose default follows other values (``coll_coef`` from ``collision``, ``collision_seed`` from
    ``seed``), as derived from ``values``."""
    return {s.name: s.derive(values) for s in ko_settings() if s.derive is not None}


def validate_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """Each given setting of ``values`` validated (``ValueError`` naming the first bad one); the normalised values."""
    return {setting.name: setting.validate(values[setting.name]) for setting in ko_settings() if setting.name in values}


def read_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """The KO settings among ``values`` (a YAML recipe, ``--set`` pairs, flags) as typed, validated values: text
    read by :meth:`KOSetting.parse` where the setting is a number or a flag (YAML reads ``5e-1`` as text), the
    rest validated as given. A text for a list is one name (a regex may hold ``+``). ``ValueError`` names the first
    bad one."""
    out = {}
    for setting in ko_settings():
        if setting.name in values:
            value = values[setting.name]
            if isinstance(value, str) and setting.type in (bool, int, float):
                out[setting.name] = setting.parse(value)
            else:
                out[setting.name] = setting.validate(value)
    return out


def describe(values: Mapping[str, Any], *, defaults: Mapping[str, Any] | None = None) -> str:
    """``"hard, coef=0.2, λ=0.05, pairing=dsmc"``: the collision type, then each setting that applies to it and is
    set (in ``values``, else in ``defaults``), in declaration order. ``none`` is ``"none (AdamW)"``."""
    merged = {**(defaults or {}), **{k: v for k, v in values.items() if v is not None}}
    collision = merged.get("collision", "?")
    if collision == "none":
        return "none (AdamW)"
    parts = [str(collision)]
    for setting in ko_settings():
        if setting.name == "collision" or not setting.described or collision not in setting.applies_to:
            continue
        value = merged.get(setting.name)
        if value is None or (setting.type is bool and not value):
            continue
        parts.append(setting.short if setting.type is bool else f"{setting.short}={setting.format(value)}")
    return ", ".join(parts)
