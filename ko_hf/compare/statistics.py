"""The statistics of a comparison: mean ± sample standard deviation, and paired differences with a Student-t
confidence interval (the quantile from :data:`scipy.stats.t`).

Small pure functions on plain floats; undefined values (a standard deviation of one value, an interval of fewer
than two pairs) are NaN, and written to JSON as null (:func:`finite`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats

__all__ = ["MeanStd", "PairedDifference", "finite", "mean_std", "paired_difference_ci", "student_t_cdf",
           "student_t_quantile"]


def _check_df(df: float) -> None:
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    _check_df(df)
    return float(stats.t.cdf(t, df))


def student_t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (e.g. ``(0.975, 2)`` -> 4.3027)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    _check_df(df)
    return float(stats.t.ppf(p, df))


def finite(value: float | None) -> float | None:
    """JSON has no NaN: undefined statistics are written as null."""
    return None if value is None or not math.isfinite(value) else value


@dataclass(frozen=True)
class MeanStd:
    """Mean and sample standard deviation (n-1 denominator; NaN for n < 2) of ``n`` values."""

    mean: float
    std: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"mean": finite(self.mean), "std": finite(self.std), "n": self.n}


@dataclass(frozen=True)
class PairedDifference:
    """Mean of the paired differences ``a_i - b_i`` with a Student-t interval (NaN bounds for n < 2)."""

    mean: float
    std: float
    low: float
    high: float
    n: int
    confidence: float

    @property
    def excludes_zero(self) -> bool:
        return self.n >= 2 and (self.low > 0 or self.high < 0)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": finite(self.mean), "std": finite(self.std), "low": finite(self.low),
                "high": finite(self.high), "n": self.n, "confidence": self.confidence}


def mean_std(values: Iterable[float]) -> MeanStd:
    """Mean ± sample standard deviation (n-1). Empty input: NaN mean; one value: NaN std."""
    data = [float(v) for v in values]
    n = len(data)
    if n == 0:
        return MeanStd(math.nan, math.nan, 0)
    mean = math.fsum(data) / n
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in data) / (n - 1)) if n > 1 else math.nan
    return MeanStd(mean, std, n)


def paired_difference_ci(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> PairedDifference:
    """Mean of ``a_i - b_i`` and its two-sided Student-t ``confidence`` interval with n-1 degrees of freedom.

    ``a`` and ``b`` are paired (same seed at the same index). With identical differences the interval collapses
    onto the mean; with fewer than two pairs the interval is undefined (NaN).
    """
    if len(a) != len(b):
        raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    summary = mean_std(float(x) - float(y) for x, y in zip(a, b))
    if summary.n < 2:
        return PairedDifference(summary.mean, math.nan, math.nan, math.nan, summary.n, confidence)
    half_width = student_t_quantile(0.5 + confidence / 2.0, summary.n - 1) * summary.std / math.sqrt(summary.n)
    return PairedDifference(summary.mean, summary.std, summary.mean - half_width, summary.mean + half_width,
                            summary.n, confidence)
