"""Reading back the ``ko/`` entries ``KOTrainer`` logs (pure Python: the card, the plots and reports use it).

With two or more collision targets the trainer logs each target's ``ko/<name>/<metric>`` and the aggregate
``ko/<metric>``; with one target only the per-target value.
"""

from __future__ import annotations

from typing import Any

__all__ = ["logged_metric"]


def logged_metric(entry: dict[str, Any], metric: str) -> float | None:
    """The aggregate ``ko/<metric>`` of a log entry (or ``collision_metrics()``): logged as such with two or more
    targets; with one target it is that target's ``ko/<name>/<metric>``. None when the entry has neither."""
    value = entry.get(f"ko/{metric}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    values = [v for k, v in entry.items() if k.startswith("ko/") and k.endswith(f"/{metric}") and k.count("/") >= 2
              and isinstance(v, (int, float)) and not isinstance(v, bool)]
    return float(values[0]) if len(values) == 1 else None
