"""The setting mini-language of ``compare`` and the settings a run records, both derived from :mod:`ko_hf.settings`.

A compared setting is ``TYPE[:KEY=VALUE[:KEY=VALUE...]]``: ``TYPE`` is ``adamw`` (= ``none``) or a collision type,
``KEY`` a setting's compare key (:func:`ko_hf.settings.compare_keys`: ``coef``, ``lambda``, ``pairing``,
``targets``, ``include_self``) and ``VALUE`` is read by that setting's :meth:`~ko_hf.settings.KOSetting.parse`.
Examples: ``adamw``, ``soft``, ``hard:coef=0.8:lambda=1``, ``hard:pairing=all``, ``soft:targets=head+pooler``.
Several settings are joined with ``,``.

Everything is read from the table at call time, so a setting added to :data:`ko_hf.settings.KO_SETTINGS` is a
``KEY`` here, recorded with every run and shown in its description without an edit to this module.

Pure Python (no torch, no transformers): the CLI builds ``compare --help`` from :func:`settings_help`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..settings import KOSetting, compare_keys, describe, ko_setting, legacy_values, setting_names

__all__ = [
    "ADAMW",
    "DEFAULT_SEEDS",
    "DEFAULT_SETTINGS",
    "EXAMPLES",
    "REPLACED_KEYS",
    "CollisionSetting",
    "ComparisonError",
    "collision_aliases",
    "defaults_text",
    "describe_record",
    "parse_seeds",
    "parse_setting",
    "parse_settings",
    "recorded_settings",
    "resolved_settings",
    "setting_forms",
    "setting_keys",
    "settings_help",
    "unique_seeds",
    "unique_settings",
]

DEFAULT_SETTINGS = ("adamw", "soft", "hard")
DEFAULT_SEEDS = (1, 2, 3)
#: The plain-AdamW spelling of collision type ``none``.
ADAMW = "adamw"
#: Shown in the help and the error messages; each must parse (a test checks them).
EXAMPLES = ("adamw", "soft", "hard:coef=0.8:lambda=1", "hard:pairing=all", "soft:targets=head+pooler")
#: Keys of the base config that each compared setting replaces: its type and the coefficient that follows the type.
REPLACED_KEYS = ("collision", "coll_coef")


class ComparisonError(ValueError):
    """A bad comparison request (settings, seeds, a run's config, a finished run with another config)."""


def collision_aliases() -> dict[str, str]:
    """``TYPE`` as written -> collision type: ``adamw`` and every declared type."""
    return {ADAMW: "none", **{name: name for name in ko_setting("collision").choices}}


def setting_keys() -> dict[str, str]:
    """``KEY`` -> the setting's name (``coef`` -> ``coll_coef``)."""
    return {key: setting.name for key, setting in compare_keys().items()}


def setting_forms() -> str:
    """The valid forms, as error messages name them."""
    return (f"TYPE[:KEY=VALUE[:KEY=VALUE...]] with TYPE in {'|'.join(collision_aliases())} and KEY in "
            f"{'|'.join(compare_keys())}, e.g. {', '.join(map(repr, EXAMPLES))}")


def __getattr__(name: str) -> Any:
    """``SETTING_KEYS``, ``SETTING_FORMS``, ``COLLISION_ALIASES`` and ``COLLISION_ARGS`` as of now (the names of
    ko-hf 0.1, computed from the table when read)."""
    computed = {"SETTING_KEYS": setting_keys, "SETTING_FORMS": setting_forms, "COLLISION_ALIASES": collision_aliases,
                "COLLISION_ARGS": setting_names}
    if name in computed:
        return computed[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _what_is_valid(setting: KOSetting, raw: str | None = None) -> str:
    """What a ``KEY`` takes, in the words of this mini-language (``one of dsmc|all``, ``in [0, 1]``; else the
    table's :meth:`~ko_hf.settings.KOSetting.what_is_valid`); given the rejected ``raw`` text of a number, says
    whether it was no number at all."""
    if setting.choices:
        return "one of " + "|".join(setting.choices)
    if setting.type is list:  # "," separates settings here
        return "'+'-separated names"
    if setting.type in (int, float) and raw is not None:
        try:
            setting.type(raw)
        except ValueError:
            return "an integer" if setting.type is int else "a number"
    if setting.low is not None and setting.high is not None:
        return f"in [{setting.low:g}, {setting.high:g}]"
    return setting.what_is_valid().removeprefix("it must be ")


def _default(setting: KOSetting, collision: str) -> Any:
    """The value a run of type ``collision`` gets when the spec leaves the setting out (``None``: none to name)."""
    if setting.default is not None or setting.derive is None:
        return setting.default
    return setting.derive({"collision": collision})


def _one_of(items: list[str]) -> str:
    return ", ".join(items[:-1]) + " or " + items[-1] if len(items) > 1 else "".join(items)


def defaults_text() -> str:
    """``"hard: pairing dsmc, coef 0.2, lambda 0.05; soft: coef 0.1, include_self false"``: per collision type
    (the strongest first), the value of each ``KEY`` that acts on it when the spec leaves it out (a choice first:
    it says which variant of the type runs)."""
    keys = sorted(compare_keys().items(), key=lambda item: not item[1].choices)
    kinds = []
    for kind in reversed(ko_setting("collision").choices):
        named = [f"{key} {setting.format(value)}" for key, setting in keys
                 if kind in setting.applies_to and (value := _default(setting, kind)) is not None]
        if named:
            kinds.append(f"{kind}: {', '.join(named)}")
    return "; ".join(kinds)


def settings_help() -> str:
    """The ``--settings`` help of ``ko-finetune compare``: the types, every ``KEY`` with what it takes, examples,
    and the library's defaults."""
    keys = [f"{key} ({_what_is_valid(setting)})" for key, setting in compare_keys().items()]
    types = [ADAMW + " (= none)", *(t for t in collision_aliases() if t not in (ADAMW, "none"))]
    return (f"Collision settings to compare, comma-separated or repeated: TYPE or TYPE:KEY=VALUE (more :KEY=VALUE "
            f"may follow) with TYPE {_one_of(types)} and KEY {_one_of(keys)}. Examples: {', '.join(EXAMPLES)}. "
            f"Without a key a type uses the library default ({defaults_text()}). "
            f"[default: {','.join(DEFAULT_SETTINGS)}]")


@dataclass(frozen=True)
class CollisionSetting:
    """One compared setting: its name (the spec as written) and the config keys it sets."""

    name: str
    collision: str
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def dirname(self) -> str:
        """File-system-safe folder name: ``hard:coef=0.8`` -> ``hard_coef-0.8``."""
        return self.name.replace(":", "_").replace("=", "-")

    def config(self) -> dict[str, Any]:
        """The config keys this setting sets: ``collision`` and its options (no ``coef``: the library default)."""
        return {"collision": self.collision, **dict(self.overrides)}

    def describe(self) -> str:
        """``"hard, pairing=dsmc, coef=0.3"``: the type, then the options in the order written."""
        parts = [self.collision]
        for name, value in self.overrides:
            setting = ko_setting(name)
            parts.append(setting.short if value is True else f"{setting.short}={setting.format(value)}")
        return ", ".join(parts)


def _bad_setting(spec: str, why: str) -> ComparisonError:
    return ComparisonError(f"bad collision setting {spec!r}: {why}; valid forms: {setting_forms()}")


def _setting_value(spec: str, key: str, setting: KOSetting, raw: str) -> Any:
    try:
        return setting.parse(raw, where=key)
    except ValueError:
        raise _bad_setting(spec, f"{key} must be {_what_is_valid(setting, raw)}, got {raw!r}") from None


def parse_setting(spec: str) -> CollisionSetting:
    """``"hard:coef=0.8:lambda=1"`` -> ``CollisionSetting`` (see the module docstring for the syntax)."""
    if not isinstance(spec, str) or not spec.strip():
        raise _bad_setting(str(spec), "empty")
    spec = spec.strip()
    if not re.fullmatch(r"[A-Za-z0-9_.+=:\-]+", spec):
        raise _bad_setting(spec, "only letters, digits and _ . + - = : are allowed")
    head, *options = spec.split(":")
    collision = collision_aliases().get(head.lower())
    if collision is None:
        raise _bad_setting(spec, f"unknown type {head!r}")
    keys = compare_keys()
    overrides: dict[str, Any] = {}
    for option in options:
        key, sep, raw = option.partition("=")
        if not sep or not raw:
            raise _bad_setting(spec, f"option {option!r} is not KEY=VALUE")
        if key not in keys:
            raise _bad_setting(spec, f"unknown key {key!r}")
        if keys[key].name in overrides:
            raise _bad_setting(spec, f"key {key!r} given twice")
        overrides[keys[key].name] = _setting_value(spec, key, keys[key], raw)
    if collision == "none" and overrides:
        raise _bad_setting(spec, f"{head!r} (no collision) takes no options")
    return CollisionSetting(spec, collision, tuple(overrides.items()))


def parse_settings(specs: str | Iterable[str]) -> list[CollisionSetting]:
    """Comma-separated (or a list of) setting specs -> settings; names and folders must be unique."""
    items = [specs] if isinstance(specs, str) else list(specs)
    parts = [part.strip() for item in items for part in str(item).split(",") if part.strip()]
    if not parts:
        raise ComparisonError(f"no collision settings given; valid forms: {setting_forms()}")
    return unique_settings([parse_setting(part) for part in parts])


def unique_settings(settings: list[CollisionSetting]) -> list[CollisionSetting]:
    """``settings``, unless two of them would share a folder."""
    folders = [s.dirname for s in settings]
    duplicates = sorted({f for f in folders if folders.count(f) > 1})
    if duplicates:
        raise ComparisonError(f"collision settings given twice: {duplicates}")
    return settings


def parse_seeds(spec: str | int | Iterable[int]) -> list[int]:
    """``"3"`` or ``3`` -> seeds 1, 2, 3 (a count); ``"1,2,3"`` or ``"7,"`` or ``[7]`` -> those seeds."""
    if isinstance(spec, bool):
        raise ComparisonError(f"bad seeds {spec!r}")
    if isinstance(spec, int):
        count = spec
    elif isinstance(spec, str):
        text = spec.strip()
        if "," not in text:
            try:
                count = int(text)
            except ValueError:
                raise ComparisonError(f"bad seeds {spec!r}: give a count N (seeds 1..N) or a list like 1,2,3") from None
        else:
            try:
                return unique_seeds([int(s) for s in text.split(",") if s.strip()], spec)
            except ComparisonError:
                raise
            except ValueError:
                raise ComparisonError(f"bad seeds {spec!r}: give a count N (seeds 1..N) or a list like 1,2,3") from None
    else:
        return unique_seeds([int(s) for s in spec], spec)
    if count < 1:
        raise ComparisonError(f"bad seeds {spec!r}: the count must be at least 1")
    return list(range(1, count + 1))


def unique_seeds(seeds: list[int], spec: Any) -> list[int]:
    if not seeds:
        raise ComparisonError(f"bad seeds {spec!r}: no seed given")
    if len(set(seeds)) != len(seeds):
        raise ComparisonError(f"bad seeds {spec!r}: a seed is given twice")
    return seeds


# ------------------------------------------------------------------------------- the settings a run records


def resolved_settings(args: Any) -> dict[str, Any]:
    """A run's resolved KO settings (``KOTrainingArguments`` after its defaults), as its record keeps them."""
    return {name: getattr(args, name, None) for name in setting_names()} if args is not None else {}


def recorded_settings(recorded: Mapping[str, Any]) -> dict[str, Any]:
    """A record's settings (:func:`resolved_settings`), each setting it lacks filled with what its absence meant:
    the version that wrote it had no such setting and ran as the setting's ``legacy`` value says (records of ko-hf
    0.1 have no ``collision_pairing``: they paired as ``"all"``; those of 0.1 and 0.2 no ``collision_form``:
    the paper's). An empty record stays empty (nothing is known)."""
    if not recorded:
        return {}
    return {**{k: v for k, v in legacy_values().items() if k not in recorded}, **recorded}


def describe_record(record: Mapping[str, Any]) -> str:
    """A finished run's settings in one line (:func:`ko_hf.settings.describe`): ``"hard, coef=0.2, λ=0.05,
    pairing=dsmc"``."""
    recorded = recorded_settings(record.get("collision_args") or {})
    values = {**(record.get("config") or {}), **{k: v for k, v in recorded.items() if v is not None}}
    collision = record.get("collision") or values.get("collision", "?")
    return describe({**values, "collision": collision})
