"""What of a dataclass differs from its declared defaults (training arguments, PEFT configs, finetune options).

Compared with the *declared* defaults: nothing here builds a default instance (a new ``TrainingArguments`` resets
accelerate's shared state under a running trainer).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import MISSING, Field, fields, is_dataclass
from typing import Any

__all__ = ["plain", "field_default", "non_default_fields"]


def plain(value: Any) -> Any:
    """A value as the card and its Python snippet show it: enums by value, sets sorted, tuples as lists."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset)):
        return sorted((plain(v) for v in value), key=str)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    return value


def field_default(item: Field) -> Any:
    """A dataclass field's declared default (its factory called), or ``MISSING``."""
    if item.default is not MISSING:
        return item.default
    if item.default_factory is not MISSING:
        return item.default_factory()
    return MISSING


def _same_as_default(value: Any, default: Any) -> bool:
    if value == default:
        return True
    if isinstance(value, dict) and isinstance(default, dict):  # keys a serialised config leaves out keep defaults
        return all(key in default and _same_as_default(item, default[key]) for key, item in value.items())
    # ``__post_init__`` fills some None / "" defaults in (None -> False, "" -> [], ...): that is still the default
    return default in (None, "") and value in (None, False, "", [], {})


def non_default_fields(obj: Any, values: Mapping[str, Any] | None = None,
                       skip: set[str] | frozenset[str] = frozenset(),
                       defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The init fields of dataclass ``obj`` whose value differs from the field's declared default.

    ``values`` replaces ``getattr`` (e.g. ``args.to_dict()``); ``defaults`` overrides declared defaults that
    ``__post_init__`` fills in.
    """
    out = {}
    for item in fields(obj):
        if not item.init or item.name in skip:
            continue
        value = plain(values[item.name] if values is not None and item.name in values else getattr(obj, item.name))
        default = (defaults or {}).get(item.name, field_default(item))
        if default is MISSING or not _same_as_default(value, plain(default)):
            out[item.name] = value
    return out
