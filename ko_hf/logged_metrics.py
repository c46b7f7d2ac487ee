"""The ``ko/`` metrics ``KOTrainer`` logs, read back from a log entry (``trainer.state.log_history``, a run's
``collision_metrics()``): pure functions on dicts, importable without torch or the trainer (the model card, the
plots and ``compare`` read them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["CONDENSATION_METRICS", "aggregate_condensation", "is_number", "layer_condensation", "logged_metric"]

#: How condensed a target's rows are (see :mod:`ko_hf.collision`): logged per target and, with several, aggregated.
CONDENSATION_METRICS = ("weight_correlation", "neuron_similarity")


def is_number(value: Any) -> bool:
    """A real number as a metric holds it (``bool`` is not one)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def aggregate_condensation(per_target: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``ko/weight_correlation`` (the mean over targets) and ``ko/neuron_similarity`` (the max) of two or more
    targets' condensation; empty for fewer (one target's values are its own, see :func:`logged_metric`)."""
    if len(per_target) < 2:
        return {}
    values = list(per_target.values())
    return {"ko/weight_correlation": sum(v["weight_correlation"] for v in values) / len(values),
            "ko/neuron_similarity": max(v["neuron_similarity"] for v in values)}


def logged_metric(entry: dict[str, Any], metric: str) -> float | None:
    """The aggregate ``ko/<metric>`` of a log entry (or ``collision_metrics()``): logged as such with two or more
    targets; with one target it is that target's ``ko/<name>/<metric>``. None when the entry has neither."""
    value = entry.get(f"ko/{metric}")
    if is_number(value):
        return float(value)
    values = [v for k, v in entry.items() if k.startswith("ko/") and k.endswith(f"/{metric}") and k.count("/") >= 2
              and is_number(v)]
    return float(values[0]) if len(values) == 1 else None


def layer_condensation(metrics: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{"ko/classifier.weight/weight_correlation": x, ...}`` -> ``{"classifier.weight": {"weight_correlation": x}}``:
    the per-target condensation among ``KOTrainer.collision_metrics()`` (or logged) values."""
    layers: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        prefix, _, metric = key.rpartition("/")
        if metric in CONDENSATION_METRICS and prefix.startswith("ko/") and isinstance(value, (int, float)):
            layers.setdefault(prefix[len("ko/"):], {})[metric] = float(value)
    return layers
