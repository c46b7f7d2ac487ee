"""Hyperparameter search over the KO settings with optuna: a search space for ``KOTrainer.hyperparameter_search``.

>>> from ko_hf.search import ko_hp_space
>>> best = trainer.hyperparameter_search(hp_space=ko_hp_space(["none", "soft", "hard"], coll_coef={"hard": (0.1, 0.5)}),
...                                      backend="optuna", direction="maximize", n_trials=12)
>>> settings_from_trial(best.hyperparameters)          # {"collision": "hard", "coll_coef": 0.27}

Each trial's ``coll_coef`` follows its ``collision`` (the type's default, 0.1 soft / 0.2 hard) unless the space
searches it; ``KOTrainer`` re-derives it per trial, so ``"none"``, ``"soft"`` and ``"hard"`` trials really differ.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from .settings import COLLISION_TYPES, ko_setting

__all__ = ["ko_hp_space", "settings_from_trial"]

#: Optuna parameter name of a collision type's coef: a separate parameter per type, since their ranges differ.
COEF_PARAM = "{collision}_coll_coef"

Range = tuple[float, float]


def _valid(name: str, value: Any) -> bool:
    try:
        ko_setting(name).validate(value)
    except ValueError:
        return False
    return value is not None


def _check_coef_spec(spec: Any, where: str) -> None:
    """A ``(low, high)`` range, a list of values or one value, each a valid ``coll_coef``."""
    coef = ko_setting("coll_coef")
    if isinstance(spec, tuple):
        if len(spec) != 2 or not all(_valid(coef.name, v) for v in spec) or spec[0] > spec[1]:
            raise ValueError(f"{where}={spec!r} is invalid; a range (low, high) needs {coef.low:g} <= low <= high "
                             f"<= {coef.high:g}")
        return
    values = spec if isinstance(spec, list) else [spec]
    if not values or not all(_valid(coef.name, v) for v in values):
        raise ValueError(f"{where}={spec!r} is invalid; give a (low, high) range, a list of values or one value, "
                         f"each coll_coef: {coef.what_is_valid()}")


def _suggest(trial: Any, name: str, spec: Any) -> float:
    if isinstance(spec, tuple):
        return trial.suggest_float(name, float(spec[0]), float(spec[1]))
    if isinstance(spec, list):
        return trial.suggest_categorical(name, [float(v) for v in spec])
    return float(spec)


def ko_hp_space(
    collisions: Sequence[str] = COLLISION_TYPES,
    *,
    coll_coef: Mapping[str, Any] | Any = None,
    distance_scale: Range | None = None,
    base: Callable[[Any], Mapping[str, Any]] | None = None,
) -> Callable[[Any], dict[str, Any]]:
    """An optuna search space (``hp_space=``) over the KO settings, for ``KOTrainer.hyperparameter_search``.

    ``collisions``: the collision types to compare (the categorical parameter ``collision``). ``coll_coef``: ``None``
    (each trial uses its type's default coef), a ``(low, high)`` range, a list of values or one value for every
    type, or a dict ``{"soft": ..., "hard": ...}`` per type (a type left out uses its default); searched as the
    optuna parameter ``<collision>_coll_coef``. ``distance_scale``: a ``(low, high)`` range of λ searched
    log-uniformly for hard trials (default: the arguments' λ). ``base``: another space (e.g.
    ``lambda trial: {"learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-3, log=True)}``) merged in.

    Invalid choices are a ``ValueError`` here, before any trial runs.
    """
    collisions = list(collisions)
    bad = [c for c in collisions if c not in COLLISION_TYPES]
    if bad or not collisions:
        raise ValueError(f"collisions={collisions!r} is invalid; choose from {', '.join(COLLISION_TYPES)}")
    if isinstance(coll_coef, Mapping):
        unknown = [k for k in coll_coef if k not in COLLISION_TYPES or k == "none"]
        if unknown:
            raise ValueError(f"coll_coef has entries for {unknown}; per-type entries are 'soft' and 'hard'")
        per_type = dict(coll_coef)
    else:
        per_type = {c: coll_coef for c in ("soft", "hard")} if coll_coef is not None else {}
    for collision, spec in per_type.items():
        if spec is not None:
            _check_coef_spec(spec, f"coll_coef[{collision!r}]" if isinstance(coll_coef, Mapping) else "coll_coef")
    if distance_scale is not None:
        low, high = distance_scale
        if not (_valid("collision_distance_scale", low) and _valid("collision_distance_scale", high)
                and 0 < low <= high):  # searched log-uniformly: low > 0
            raise ValueError(f"distance_scale={distance_scale!r} is invalid; a range (low, high) with 0 < low <= high")

    def hp_space(trial: Any) -> dict[str, Any]:
        params = dict(base(trial)) if base is not None else {}
        collision = trial.suggest_categorical("collision", collisions)
        params["collision"] = collision
        spec = per_type.get(collision)
        if collision != "none" and spec is not None:
            params["coll_coef"] = _suggest(trial, COEF_PARAM.format(collision=collision), spec)
        if collision == "hard" and distance_scale is not None:
            params["collision_distance_scale"] = trial.suggest_float(
                "collision_distance_scale", float(distance_scale[0]), float(distance_scale[1]), log=True)
        return params

    return hp_space


def settings_from_trial(hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's optuna parameters (``BestRun.hyperparameters``) as ``KOTrainingArguments`` keys:
    ``{"collision": "hard", "hard_coll_coef": 0.3}`` -> ``{"collision": "hard", "coll_coef": 0.3}``."""
    settings = dict(hyperparameters)
    collision = settings.get("collision")
    for kind in ("soft", "hard"):
        value = settings.pop(COEF_PARAM.format(collision=kind), None)
        if value is not None and kind == collision:
            settings["coll_coef"] = value
    return settings
