"""The ``ko/`` metrics ``KOTrainer`` logs, read back from a log entry (``trainer.state.log_history``, a run's
``collision_metrics()``): pure functions on dicts, importable without torch or the trainer (the model card, the
plots and ``compare`` read them)."""

from __future__ import annotations

from typing import Any

__all__ = ["CONDENSATION_METRICS", "layer_condensation", "logged_metric"]

#: How condensed a target's rows are (see :mod:`ko_hf.collision`): logged per target and, with several, aggregated.
CONDENSATION_METRICS = ("weight_correlation", "neuron_similarity")


def logged_metric(entry: dict[str, Any], metric: str) -> float | None:
    """The aggregate ``ko/<metric>`` of a log entry (or ``collision_metrics()``): logged as such with two or more
    targets; with one target it is that target's ``ko/<name>/<metric>``. None when the entry has neither."""
    value = entry.get(f"ko/{metric}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    values = [v for k, v in entry.items() if k.startswith("ko/") and k.endswith(f"/{metric}") and k.count("/") >= 2
              and isinstance(v, (int, float)) and not isinstance(v, bool)]
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
