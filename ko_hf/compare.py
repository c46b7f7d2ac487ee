"""Compare collision settings honestly: the same model and data, several settings, several seeds, intervals.

KO's effects on text classification are small next to seed noise (paper Table 3 reports single runs; a first
measurement here moved test accuracy by less than the spread between two seeds). :func:`run_comparison` trains
every (setting, seed) pair through one runner (:func:`ko_hf.finetune.finetune` by default) into
``<output_dir>/<setting>/seed-<s>/`` and :func:`summarize` reduces the finished runs to

* per setting: mean ± sample standard deviation (n-1) of accuracy and macro-F1 on test (validation when the
  data has no test split);
* the paired difference to the baseline (AdamW: the first setting without collision) over the seeds both ran,
  with a Student-t confidence interval (95% by default);
* the head's weight correlation after training, on the target weights every run measures (with mixed targets,
  e.g. ``head`` against ``head+pooler``, the classifier alone: like is compared with like), and the median step
  time relative to the baseline's run of the same seed.

A run is finished when its ``ko_result.json`` exists; a rerun skips it, and an unfinished run with checkpoints
resumes from its last one. The statistics are small pure functions (:func:`mean_std`,
:func:`paired_difference_ci`, :func:`student_t_quantile`) with no scipy dependency.

Settings syntax (:func:`parse_setting`): ``TYPE[:KEY=VALUE[:KEY=VALUE...]]`` with ``TYPE`` one of ``adamw``
(= ``none``), ``none``, ``soft``, ``hard`` and ``KEY`` one of ``coef``, ``lambda``, ``pairing`` (``dsmc`` or
``all``), ``targets`` (``+``-separated, e.g. ``head+pooler``), ``include_self``. Examples: ``adamw``, ``soft``,
``hard:coef=0.8:lambda=1``, ``hard:pairing=all``, ``soft:targets=head+pooler``. Several settings are joined with ``,``.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = [
    "DEFAULT_SETTINGS",
    "RESULT_FILE",
    "CollisionSetting",
    "Comparison",
    "ComparisonError",
    "MeanStd",
    "PairedDifference",
    "SettingSummary",
    "collect_records",
    "mean_std",
    "paired_difference_ci",
    "parse_seeds",
    "parse_setting",
    "parse_settings",
    "render_markdown",
    "run_comparison",
    "student_t_quantile",
    "summarize",
    "summary_table",
    "write_comparison",
]

RESULT_FILE = "ko_result.json"
DEFAULT_SETTINGS = ("adamw", "soft", "hard")
DEFAULT_SEEDS = (1, 2, 3)


class ComparisonError(ValueError):
    """A bad comparison request (settings, seeds, a run's config, a finished run with another config)."""

# ---------------------------------------------------------------------------------------------- statistics


def _regularized_incomplete_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b) by the continued fraction (modified Lentz), using the symmetry for fast convergence."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _regularized_incomplete_beta(1.0 - x, b, a)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * fraction / a


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    tail = 0.5 * _regularized_incomplete_beta(df / (df + t * t), df / 2.0, 0.5)
    return 1.0 - tail if t >= 0 else tail


def student_t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (e.g. ``(0.975, 2)`` -> 4.3027)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while student_t_cdf(high, df) < p:
        low, high = high, 2.0 * high
    for _ in range(200):  # bisection: the cdf is monotone; 200 halvings reach double precision
        mid = 0.5 * (low + high)
        if student_t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low <= 1e-13 * max(1.0, high):
            break
    return 0.5 * (low + high)


@dataclass(frozen=True)
class MeanStd:
    """Mean and sample standard deviation (n-1 denominator; NaN for n < 2) of ``n`` values."""

    mean: float
    std: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"mean": _finite(self.mean), "std": _finite(self.std), "n": self.n}


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
        return {"mean": _finite(self.mean), "std": _finite(self.std), "low": _finite(self.low),
                "high": _finite(self.high), "n": self.n, "confidence": self.confidence}


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


def _finite(value: float | None) -> float | None:
    """JSON has no NaN: undefined statistics are written as null."""
    return None if value is None or not math.isfinite(value) else value


# ---------------------------------------------------------------------------------------------- settings

COLLISION_ALIASES = {"adamw": "none", "none": "none", "soft": "soft", "hard": "hard"}
SETTING_KEYS = {
    "coef": "coll_coef",
    "lambda": "collision_distance_scale",
    "pairing": "collision_pairing",
    "targets": "collision_targets",
    "include_self": "collision_include_self",
}
SETTING_FORMS = (
    "TYPE[:KEY=VALUE[:KEY=VALUE...]] with TYPE in adamw|none|soft|hard and KEY in "
    "coef|lambda|pairing|targets|include_self, "
    "e.g. 'adamw', 'soft', 'hard:coef=0.8:lambda=1', 'hard:pairing=all', 'soft:targets=head+pooler'"
)
_TRUE, _FALSE = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


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
        keys = {v: k for k, v in SETTING_KEYS.items()}
        parts = [f"{keys[key]}={'+'.join(value) if isinstance(value, list) else value}" for key, value in self.overrides]
        return ", ".join([self.collision, *parts])


def _bad_setting(spec: str, why: str) -> ComparisonError:
    return ComparisonError(f"bad collision setting {spec!r}: {why}; valid forms: {SETTING_FORMS}")


def _setting_value(spec: str, key: str, raw: str) -> Any:
    if key in ("coef", "lambda"):
        try:
            value = float(raw)
        except ValueError:
            raise _bad_setting(spec, f"{key} must be a number, got {raw!r}") from None
        if not math.isfinite(value) or value < 0 or (key == "coef" and value > 1):
            raise _bad_setting(spec, f"{key} must be {'in [0, 1]' if key == 'coef' else 'a finite number >= 0'}, "
                                     f"got {raw!r}")
        return value
    if key == "pairing":
        from .collision import PAIRINGS

        if raw not in PAIRINGS:
            raise _bad_setting(spec, f"pairing must be one of {'|'.join(PAIRINGS)}, got {raw!r}")
        return raw
    if key == "include_self":
        if raw.lower() not in _TRUE | _FALSE:
            raise _bad_setting(spec, f"include_self must be true or false, got {raw!r}")
        return raw.lower() in _TRUE
    targets = [t for t in raw.split("+")]
    if not all(targets):
        raise _bad_setting(spec, f"targets must be '+'-separated names, got {raw!r}")
    return targets


def parse_setting(spec: str) -> CollisionSetting:
    """``"hard:coef=0.8:lambda=1"`` -> ``CollisionSetting`` (see the module docstring for the syntax)."""
    if not isinstance(spec, str) or not spec.strip():
        raise _bad_setting(str(spec), "empty")
    spec = spec.strip()
    if not re.fullmatch(r"[A-Za-z0-9_.+=:\-]+", spec):
        raise _bad_setting(spec, "only letters, digits and _ . + - = : are allowed")
    head, *options = spec.split(":")
    collision = COLLISION_ALIASES.get(head.lower())
    if collision is None:
        raise _bad_setting(spec, f"unknown type {head!r}")
    overrides: dict[str, Any] = {}
    for option in options:
        key, sep, raw = option.partition("=")
        if not sep or not raw:
            raise _bad_setting(spec, f"option {option!r} is not KEY=VALUE")
        if key not in SETTING_KEYS:
            raise _bad_setting(spec, f"unknown key {key!r}")
        if SETTING_KEYS[key] in overrides:
            raise _bad_setting(spec, f"key {key!r} given twice")
        overrides[SETTING_KEYS[key]] = _setting_value(spec, key, raw)
    if collision == "none" and overrides:
        raise _bad_setting(spec, f"{head!r} (no collision) takes no options")
    return CollisionSetting(spec, collision, tuple(overrides.items()))


def parse_settings(specs: str | Iterable[str]) -> list[CollisionSetting]:
    """Comma-separated (or a list of) setting specs -> settings; names and folders must be unique."""
    items = [specs] if isinstance(specs, str) else list(specs)
    parts = [part.strip() for item in items for part in str(item).split(",") if part.strip()]
    if not parts:
        raise ComparisonError(f"no collision settings given; valid forms: {SETTING_FORMS}")
    settings = [parse_setting(part) for part in parts]
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
                return _unique_seeds([int(s) for s in text.split(",") if s.strip()], spec)
            except ComparisonError:
                raise
            except ValueError:
                raise ComparisonError(f"bad seeds {spec!r}: give a count N (seeds 1..N) or a list like 1,2,3") from None
    else:
        return _unique_seeds([int(s) for s in spec], spec)
    if count < 1:
        raise ComparisonError(f"bad seeds {spec!r}: the count must be at least 1")
    return list(range(1, count + 1))


def _unique_seeds(seeds: list[int], spec: Any) -> list[int]:
    if not seeds:
        raise ComparisonError(f"bad seeds {spec!r}: no seed given")
    if len(set(seeds)) != len(seeds):
        raise ComparisonError(f"bad seeds {spec!r}: a seed is given twice")
    return seeds


# ---------------------------------------------------------------------------------------------- records

#: Metric names of :func:`ko_hf.metrics.compute_metrics`, looked up with the split's prefix.
METRICS = ("accuracy", "macro_f1")


def _plain(value: Any) -> Any:
    """A JSON-safe copy (NaN/inf -> None, tuples -> lists, unknown objects -> str)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return _finite(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if hasattr(value, "item"):
        return _plain(value.item())
    return str(value)


def _final_ko_metrics(log_history: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The last logged value of every ``ko/`` metric (the end-of-training log carries them)."""
    final: dict[str, float] = {}
    for entry in log_history or []:
        for key, value in entry.items():
            if key.startswith("ko/") and isinstance(value, (int, float)):
                final[key] = value
    return final


#: The resolved collision settings of a run (defaults filled in by ``KOTrainingArguments``), kept in its record.
COLLISION_ARGS = ("collision", "coll_coef", "collision_distance_scale", "collision_pairing", "collision_targets",
                  "collision_include_self", "collision_seed")


def _changed_collision_args(recorded: Mapping[str, Any], args: Any) -> list[str]:
    """The resolved collision settings that differ between a finished run's record and ``args`` (records of
    ko-hf 0.1 have no ``collision_pairing``: they paired as ``"all"``)."""
    if not recorded or args is None:
        return []
    if recorded.get("collision") == "hard":
        recorded = {"collision_pairing": "all", **{k: v for k, v in recorded.items() if v is not None}}
    changed = []
    for key in COLLISION_ARGS:
        if key in recorded and _comparable({key: recorded[key]}) != _comparable({key: getattr(args, key, None)}):
            if key == "collision_pairing" and recorded.get("collision") != "hard":
                continue  # soft and no collision ignore the pairing
            changed.append(f"{key}: {recorded[key]!r} then, {getattr(args, key, None)!r} now")
    return changed


def _result_record(result: Any, setting: CollisionSetting, seed: int, config: Mapping[str, Any],
                   args: Any = None) -> dict[str, Any]:
    log_history = list(getattr(result, "log_history", None) or [])
    return _plain({
        "setting": setting.name,
        "collision": setting.collision,
        "seed": seed,
        "config": dict(config),
        "collision_args": {key: getattr(args, key, None) for key in COLLISION_ARGS} if args is not None else {},
        "train_metrics": getattr(result, "train_metrics", None) or {},
        "eval_metrics": getattr(result, "eval_metrics", None) or {},
        "test_metrics": getattr(result, "test_metrics", None) or {},
        "label_names": list(getattr(result, "label_names", None) or []),
        "median_step_time": getattr(result, "median_step_time", None),
        "head_metrics": getattr(result, "head_metrics", None) or {},
        "head_layers": getattr(result, "head_layers", None) or {},
        "final_ko_metrics": _final_ko_metrics(log_history),
        "log_history": log_history,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })


def _write_json(path: Path, data: Any) -> None:
    """Write atomically, so an interrupted run never leaves a half-written result that looks finished."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


#: Keys that say where a run lives or how it was started, not what it computes: a comparison folder can be moved.
_LOCATION_KEYS = ("resume_from_checkpoint", "output_dir", "logging_dir")


def _comparable(config: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(_plain({k: v for k, v in config.items() if k not in _LOCATION_KEYS})))


def _split_metrics(record: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """("test", metrics) when the run has test metrics, else ("validation", eval metrics)."""
    if record.get("test_metrics"):
        return "test", record["test_metrics"]
    return "validation", record.get("eval_metrics") or {}


def _metric(metrics: Mapping[str, Any], name: str) -> float | None:
    for key in (f"test_{name}", f"eval_{name}", name):
        value = metrics.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


# ---------------------------------------------------------------------------------------------- summary


@dataclass
class SettingSummary:
    """One row of the comparison."""

    name: str
    description: str
    seeds: list[int]
    metrics: dict[str, MeanStd]
    differences: dict[str, PairedDifference]
    weight_correlation: MeanStd
    step_time_ratio: MeanStd
    is_baseline: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "is_baseline": self.is_baseline,
            "seeds": self.seeds,
            **{name: value.to_dict() for name, value in self.metrics.items()},
            **{f"{name}_diff": value.to_dict() for name, value in self.differences.items()},
            "weight_correlation": self.weight_correlation.to_dict(),
            "step_time_ratio": self.step_time_ratio.to_dict(),
        }


@dataclass
class Comparison:
    """Everything :func:`write_comparison` renders; ``runs`` are the per-run rows."""

    baseline: str
    split: str
    confidence: float
    settings: list[SettingSummary]
    runs: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    figure: str | None = None
    figure_note: str | None = None
    #: The target weights the weight-correlation column averages over (those every run measured); empty when the
    #: runs share none, and each run's own aggregate over its targets is reported.
    correlation_layers: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _plain({
            **self.info,
            "baseline": self.baseline,
            "split": self.split,
            "confidence": self.confidence,
            "units": "accuracy and macro_f1 are fractions in [0, 1]; step_time_ratio is setting / baseline",
            "settings": [s.to_dict() for s in self.settings],
            "runs": self.runs,
            "missing_runs": self.missing,
            "figure": self.figure,
            "figure_note": self.figure_note,
            "weight_correlation_layers": self.correlation_layers,
        })


def summarize(records: Sequence[Mapping[str, Any]], settings: Sequence[str], *, baseline: str | None = None,
              confidence: float = 0.95) -> Comparison:
    """Reduce finished run records (the ``ko_result.json`` contents) to a :class:`Comparison`.

    ``settings``: setting names in display order. ``baseline``: the setting differences are taken against (default:
    the first setting whose records have ``collision == "none"``, else the first setting). Differences and step-time
    ratios pair runs by seed; seeds the baseline lacks are left out of them.
    """
    by_setting: dict[str, dict[int, Mapping[str, Any]]] = {name: {} for name in settings}
    for record in records:
        if record["setting"] in by_setting:
            by_setting[record["setting"]][int(record["seed"])] = record
    if baseline is None:
        plain = [n for n in settings if any(r.get("collision") == "none" for r in by_setting[n].values())]
        baseline = plain[0] if plain else settings[0]
    splits = {_split_metrics(r)[0] for runs in by_setting.values() for r in runs.values()}
    split = "test" if splits == {"test"} else "validation" if splits == {"validation"} else "+".join(sorted(splits))
    if len(splits) > 1:
        logger.warning("runs report metrics on different splits (%s); compare with care", sorted(splits))

    layers = _common_layers(r for runs in by_setting.values() for r in runs.values())

    def values(name: str) -> dict[int, dict[str, float | None]]:
        out = {}
        for seed, record in sorted(by_setting[name].items()):
            metrics = _split_metrics(record)[1]
            out[seed] = {m: _metric(metrics, m) for m in METRICS}
            out[seed]["weight_correlation"] = _final_weight_correlation(record, layers)
            out[seed]["median_step_time"] = record.get("median_step_time")
        return out

    base = values(baseline) if baseline in by_setting else {}
    rows, runs = [], []
    for name in settings:
        own = values(name)
        description = next((_describe_record(r) for r in by_setting[name].values()), name)
        metrics = {m: mean_std(v[m] for v in own.values() if v[m] is not None) for m in METRICS}
        differences = {}
        for m in METRICS:
            seeds = [s for s in own if s in base and own[s][m] is not None and base[s][m] is not None]
            differences[m] = paired_difference_ci([own[s][m] for s in seeds], [base[s][m] for s in seeds], confidence)
        ratios = [own[s]["median_step_time"] / base[s]["median_step_time"] for s in own
                  if s in base and own[s]["median_step_time"] and base[s]["median_step_time"]]
        correlation = mean_std(v["weight_correlation"] for v in own.values() if v["weight_correlation"] is not None)
        rows.append(SettingSummary(name, description, sorted(own), metrics, differences, correlation,
                                   mean_std(ratios), is_baseline=name == baseline))
        for seed, v in own.items():
            runs.append({"setting": name, "seed": seed, **v})
    return Comparison(baseline, split, confidence, rows, runs, correlation_layers=layers)


def _layer_correlations(record: Mapping[str, Any]) -> dict[str, float]:
    """Weight correlation per target weight after training: measured on the final model (``head_layers``), else
    (records written before it existed) the last logged ``ko/<name>/weight_correlation``."""
    from .trainer import layer_condensation

    layers = record.get("head_layers") or layer_condensation(record.get("final_ko_metrics") or {})
    return {name: v["weight_correlation"] for name, v in layers.items() if "weight_correlation" in v}


def _common_layers(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The target weights whose correlation every record has (runs that measured none are left out)."""
    common: set[str] | None = None
    for record in records:
        names = set(_layer_correlations(record))
        if names:
            common = names if common is None else common & names
    return sorted(common or ())


def _final_weight_correlation(record: Mapping[str, Any], layers: Sequence[str] = ()) -> float | None:
    """The head's weight correlation after training: the mean over ``layers`` when the run measured them all,
    else its own aggregate: on the final model (``head_metrics``, the best checkpoint under
    ``load_best_model_at_end``), else the last logged ``ko/weight_correlation``."""
    own = _layer_correlations(record)
    if layers and all(name in own for name in layers):
        return sum(own[name] for name in layers) / len(layers)
    value = (record.get("head_metrics") or {}).get("weight_correlation")
    if value is None:
        from .trainer import logged_metric

        value = logged_metric(record.get("final_ko_metrics") or {}, "weight_correlation")
    return value


def _describe_record(record: Mapping[str, Any]) -> str:
    config = {**(record.get("config") or {}), **{k: v for k, v in (record.get("collision_args") or {}).items()
                                                  if v is not None}}
    collision = record.get("collision") or config.get("collision", "?")
    if collision == "none":
        return "none (AdamW)"
    parts = [collision]
    if config.get("coll_coef") is not None:
        parts.append(f"coef={config['coll_coef']}")
    if collision == "hard" and config.get("collision_distance_scale") is not None:
        parts.append(f"λ={config['collision_distance_scale']}")
    if collision == "hard":  # records of ko-hf 0.1 have no pairing: they paired as "all"
        parts.append(f"pairing={config.get('collision_pairing') or 'all'}")
    if config.get("collision_targets"):
        targets = config["collision_targets"]
        parts.append("targets=" + ("+".join(targets) if isinstance(targets, list) else str(targets)))
    if config.get("collision_include_self"):
        parts.append("include_self")
    return ", ".join(parts)


def _pct(stat: MeanStd) -> str:
    if stat.n == 0:
        return "—"
    return f"{100 * stat.mean:.2f}" + ("" if stat.n < 2 else f" ± {100 * stat.std:.2f}")


def _pct_diff(diff: PairedDifference, is_baseline: bool) -> str:
    if is_baseline:
        return "(baseline)"
    if diff.n == 0:
        return "—"
    text = f"{100 * diff.mean:+.2f}"
    if diff.n >= 2:
        text += f" [{100 * diff.low:+.2f}, {100 * diff.high:+.2f}]"
    return text


def _plain_stat(stat: MeanStd, digits: int, suffix: str = "") -> str:
    if stat.n == 0:
        return "—"
    return f"{stat.mean:.{digits}f}{suffix}" + ("" if stat.n < 2 else f" ± {stat.std:.{digits}f}")


def summary_table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of strings (for markdown and for the CLI's rich table)."""
    level = f"{round(100 * comparison.confidence)}%"
    base = comparison.baseline
    headers = ["setting", "collision", "seeds", f"{comparison.split} accuracy (%)", f"Δ accuracy vs {base} ({level} CI)",
               f"{comparison.split} macro-F1 (%)", f"Δ macro-F1 vs {base} ({level} CI)", "head weight corr.",
               f"step time / {base}"]
    rows = []
    for s in comparison.settings:
        rows.append([
            s.name, s.description, str(len(s.seeds)),
            _pct(s.metrics["accuracy"]), _pct_diff(s.differences["accuracy"], s.is_baseline),
            _pct(s.metrics["macro_f1"]), _pct_diff(s.differences["macro_f1"], s.is_baseline),
            _plain_stat(s.weight_correlation, 4),
            "1.00×" if s.is_baseline and s.step_time_ratio.n else _plain_stat(s.step_time_ratio, 2, "×"),
        ])
    return headers, rows


def _plot_layer(records: Sequence[Mapping[str, Any]]) -> str | None:
    """None when every run has the same targets (their aggregate curves compare); else a target weight they share."""
    targets = {frozenset(_layer_correlations(r)) for r in records} - {frozenset()}
    if len(targets) <= 1:
        return None
    common = _common_layers(records)
    return common[0] if common else None


def _layers_text(layers: Sequence[str]) -> str:
    if not layers:
        return "each run's collision targets"
    names = ", ".join(f"`{name}`" for name in layers)
    return names + (" (the weight every run measures)" if len(layers) == 1 else
                    " (averaged; the weights every run measures)")


def render_markdown(comparison: Comparison) -> str:
    headers, rows = summary_table(comparison)
    info = comparison.info
    level = f"{round(100 * comparison.confidence)}%"
    lines = ["# KO collision settings compared", ""]
    for key, label in (("model", "model"), ("dataset", "dataset"), ("seeds", "seeds"), ("output_dir", "runs in")):
        if info.get(key) is not None:
            value = ", ".join(map(str, info[key])) if isinstance(info[key], list) else info[key]
            lines.append(f"- {label}: `{value}`")
    lines += [f"- metrics on: {comparison.split}", ""]
    lines.append("| " + " | ".join(headers) + " |")
    lines.append("|" + "|".join(["---"] * 3 + ["---:"] * (len(headers) - 3)) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += [
        "",
        f"Mean ± sample standard deviation (n−1) over seeds. Δ: mean of the paired differences to "
        f"`{comparison.baseline}` (same seed), with its {level} Student-t confidence interval (n−1 degrees of "
        f"freedom); an interval that contains 0 means no difference could be detected with these seeds. "
        f"Head weight corr.: mean |cos| between the rows of {_layers_text(comparison.correlation_layers)} at the end "
        f"of training (lower = less condensed). Step time: median seconds per optimizer step relative to "
        f"`{comparison.baseline}` with the same seed, mean over seeds.",
        "",
    ]
    if comparison.missing:
        lines += [f"Missing runs (not finished yet): {', '.join(comparison.missing)}", ""]
    if comparison.figure:
        lines += [f"![condensation of the head]({Path(comparison.figure).name})", ""]
    elif comparison.figure_note:
        lines += [f"Figure: {comparison.figure_note}", ""]
    lines += ["## Runs", "", "| setting | seed | accuracy (%) | macro-F1 (%) | head weight corr. | median step time (s) |",
              "|---|---:|---:|---:|---:|---:|"]
    for run in comparison.runs:
        acc, f1, corr, step = (run.get(k) for k in ("accuracy", "macro_f1", "weight_correlation", "median_step_time"))
        lines.append(f"| {run['setting']} | {run['seed']} | {_opt(acc, 100, 2)} | {_opt(f1, 100, 2)} | "
                     f"{_opt(corr, 1, 4)} | {_opt(step, 1, 4)} |")
    return "\n".join(lines) + "\n"


def _opt(value: float | None, scale: float, digits: int) -> str:
    return "—" if value is None else f"{scale * value:.{digits}f}"


def write_comparison(comparison: Comparison, output_dir: str | os.PathLike) -> tuple[Path, Path]:
    """``comparison.md`` and ``comparison.json`` in ``output_dir``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "comparison.md", out / "comparison.json"
    md.write_text(render_markdown(comparison), encoding="utf-8")
    _write_json(js, comparison.to_dict())
    return md, js


# ---------------------------------------------------------------------------------------------- runner


def _run_dir(output_dir: Path, setting: CollisionSetting, seed: int) -> Path:
    return output_dir / setting.dirname / f"seed-{seed}"


def run_config(base: Mapping[str, Any], setting: CollisionSetting, seed: int, run_dir: Path) -> dict[str, Any]:
    """The config of one run: ``base`` with the setting's collision keys, the seed and the run folder."""
    config = {k: v for k, v in base.items() if k not in ("collision", "coll_coef")}
    config.update(setting.config())
    config["seed"] = seed
    config["output_dir"] = str(run_dir)
    return config


def collect_records(output_dir: str | os.PathLike, settings: Sequence[CollisionSetting],
                    seeds: Sequence[int]) -> tuple[list[dict[str, Any]], list[str]]:
    """The finished runs' records and the names (``setting/seed-s``) of those not finished."""
    records, missing = [], []
    for seed in seeds:
        for setting in settings:
            path = _run_dir(Path(output_dir), setting, seed) / RESULT_FILE
            if path.is_file():
                records.append(json.loads(path.read_text(encoding="utf-8")))
            else:
                missing.append(f"{setting.dirname}/seed-{seed}")
    return records, missing


def run_comparison(
    base_config: Mapping[str, Any],
    output_dir: str | os.PathLike,
    settings: Sequence[str | CollisionSetting] = DEFAULT_SETTINGS,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    *,
    runner: Callable[..., Any] | None = None,
    parse: Callable[[dict], tuple[Any, Any]] | None = None,
    confidence: float = 0.95,
    plot: bool = True,
    progress: Callable[[str], None] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> Comparison:
    """Train every (setting, seed) not finished yet, then write ``comparison.md`` / ``.json`` (and the figure).

    ``base_config``: a ``ko-finetune`` config mapping (FinetuneOptions + KOTrainingArguments keys); each run
    replaces ``collision``/``coll_coef`` with its setting's, ``seed`` with its seed and ``output_dir`` with
    ``<output_dir>/<setting>/seed-<s>``. ``runner(options, args)`` trains one run (default
    :func:`ko_hf.finetune.finetune`); ``parse(mapping)`` turns a config into ``(options, args)`` (default
    :func:`ko_hf.finetune.parse_config`). Every run's config is parsed before the first one trains, so a bad key
    or value fails at once. A run whose ``ko_result.json`` exists is skipped (its recorded config must match);
    an unfinished run resumes from its newest complete checkpoint (none complete: it starts again).

    ``defaults`` (default: :data:`ko_hf.preflight.RUN_DEFAULTS`, those of ``ko-finetune train``) fill in the keys
    a run's config does not set; they do not change results, so they are not part of its recorded config. With the
    default runner, ``progress`` also gets a few progress lines per run (step, ETA). The output folder is locked
    for the comparison (:func:`ko_hf.run_folder.lock_run_folder`).
    """
    from .preflight import RUN_DEFAULTS, is_main_process
    from .run_folder import lock_run_folder

    default_runner = runner is None
    if runner is None or parse is None:
        from .finetune import finetune, parse_config

        runner = runner or finetune
        parse = parse or parse_config
    defaults = dict(RUN_DEFAULTS if defaults is None else defaults)
    say = progress or (lambda message: logger.info("%s", message))
    root = Path(output_dir)
    lock = lock_run_folder(root) if is_main_process() else None
    try:
        return _run_all(base_config, root, settings, seeds, runner=runner, parse=parse, confidence=confidence,
                        plot=plot, say=say, defaults=defaults, progress=progress if default_runner else None)
    finally:
        if lock is not None:
            lock.release()


def _run_all(base_config: Mapping[str, Any], root: Path, settings: Sequence[str | CollisionSetting],
             seeds: Sequence[int], *, runner: Callable[..., Any], parse: Callable[[dict], tuple[Any, Any]],
             confidence: float, plot: bool, say: Callable[[str], None], defaults: Mapping[str, Any],
             progress: Callable[[str], None] | None) -> Comparison:
    from .preflight import is_main_process
    from .run_folder import run_results

    chosen = [s if isinstance(s, CollisionSetting) else parse_setting(s) for s in settings]
    folders = [s.dirname for s in chosen]
    if len(set(folders)) != len(folders):
        raise ComparisonError(f"collision settings given twice: {sorted({f for f in folders if folders.count(f) > 1})}")
    seeds = _unique_seeds([int(s) for s in seeds], seeds)

    plan = []
    for seed in seeds:
        for setting in chosen:
            run_dir = _run_dir(root, setting, seed)
            config = run_config(base_config, setting, seed, run_dir)
            try:
                _, parsed = parse({**defaults, **config})
            except Exception as err:
                raise ComparisonError(f"setting {setting.name!r}, seed {seed}: {err}") from err
            plan.append((setting, seed, run_dir, config, parsed))

    total = len(plan)
    for index, (setting, seed, run_dir, config, parsed) in enumerate(plan, 1):
        result_path = run_dir / RESULT_FILE
        label = f"[{index}/{total}] {setting.name} seed {seed}"
        if result_path.is_file():
            record = json.loads(result_path.read_text(encoding="utf-8"))
            recorded = record.get("config")
            if recorded is not None and _comparable(recorded) != _comparable(config):
                changed = sorted(k for k in set(recorded) | set(config) if k not in _LOCATION_KEYS
                                 and _comparable({k: recorded.get(k)}) != _comparable({k: config.get(k)}))
                raise ComparisonError(f"{result_path} was finished with a different config (keys {changed}); use another "
                                 "--output-dir or delete that run to redo it")
            changed = _changed_collision_args(record.get("collision_args") or {}, parsed)
            if changed:  # the same setting name, but the library's defaults have changed since
                raise ComparisonError(f"{result_path} was finished with other collision settings "
                                      f"({'; '.join(changed)}; the defaults may have changed since); use another "
                                      "--output-dir or delete that run to redo it")
            say(f"{label}: finished earlier, skipped")
            continue
        checkpoint, why_not = _resume_point(run_dir, {**defaults, **config})
        run = dict(config)
        if checkpoint is not None:
            run["resume_from_checkpoint"] = checkpoint
            say(f"{label}: resuming from {checkpoint}")
        else:
            if run_results(run_dir):  # a run killed before its record: this comparison owns the folder
                run["overwrite_output_dir"] = True
            say(f"{label}: training into {run_dir}" + (f" from the start ({why_not})" if why_not else ""))
        options, args = parse({**defaults, **run})
        if progress is not None:  # the default runner, finetune: a few progress lines per run
            result = runner(options, args, progress=progress, progress_label=label)
        else:
            result = runner(options, args)
        if getattr(result, "is_world_process_zero", True) and is_main_process():
            run_dir.mkdir(parents=True, exist_ok=True)
            _write_json(result_path, _result_record(result, setting, seed, {k: v for k, v in config.items()
                                                                            if k != "resume_from_checkpoint"}, args))

    if not is_main_process():  # other ranks of a distributed launch trained along; rank 0 writes the files
        return summarize([], [s.name for s in chosen], confidence=confidence)
    return finish_comparison(base_config, root, chosen, seeds, confidence=confidence, plot=plot)


def finish_comparison(base_config: Mapping[str, Any], output_dir: str | os.PathLike,
                      settings: Sequence[CollisionSetting], seeds: Sequence[int], *, confidence: float = 0.95,
                      plot: bool = True) -> Comparison:
    """Summarize what is finished in ``output_dir`` and write the comparison files (also usable on partial runs)."""
    root = Path(output_dir)
    records, missing = collect_records(root, settings, seeds)
    comparison = summarize(records, [s.name for s in settings], confidence=confidence)
    comparison.missing = missing
    comparison.info = {
        "model": base_config.get("model_name_or_path"),
        "dataset": base_config.get("dataset"),
        "seeds": list(seeds),
        "output_dir": str(root),
        "settings_specs": [s.name for s in settings],
    }
    if plot:
        comparison.figure, comparison.figure_note = _plot(records, settings, seeds, root)
    else:
        comparison.figure_note = "not drawn (plots disabled)"
    write_comparison(comparison, root)
    return comparison


def _resume_point(run_dir: Path, config: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(the newest complete checkpoint of an unfinished run, None) or (None, why none can be used)."""
    from .run_folder import CHECKPOINT_DIR

    if not run_dir.is_dir() or not any(CHECKPOINT_DIR.match(p.name) for p in run_dir.iterdir()):
        return None, None
    from .checkpoints import CheckpointError, find_resume_checkpoint
    from .preflight import truthy

    try:
        allow = truthy(config.get("resume_incomplete_checkpoint", False))
        return find_resume_checkpoint(run_dir, allow_incomplete=allow).path, None
    except CheckpointError as err:
        logger.warning("%s", err)
        return None, "no complete checkpoint"


def _plot(records: Sequence[Mapping[str, Any]], settings: Sequence[CollisionSetting], seeds: Sequence[int],
          root: Path) -> tuple[str | None, str | None]:
    """The condensation figure of the first seed every setting finished; (None, why) when it cannot be drawn."""
    by_key = {(r["setting"], int(r["seed"])): r for r in records}
    names = [s.name for s in settings]
    seed = next((s for s in seeds if all((n, s) in by_key for n in names)), None)
    if seed is None:
        return None, "not drawn: no seed has finished runs of every setting yet"
    try:
        from .plots import matplotlib_available, plot_condensation_comparison
    except ImportError as err:
        return None, f"not drawn: ko_hf.plots is unavailable ({err})"
    if not matplotlib_available():
        return None, "not drawn: matplotlib is not installed (pip install 'ko-hf[plots]')"
    histories = {n: list(by_key[(n, seed)].get("log_history") or []) for n in names}
    layer = _plot_layer([by_key[(n, seed)] for n in names])
    try:
        path = plot_condensation_comparison(histories, root / "comparison.png", layer=layer,
                                            title=f"Condensation of {layer or 'the head'}, seed {seed}")
    except Exception as err:  # the figure is optional: never lose the numbers over it
        logger.warning("comparison figure not drawn: %s", err)
        return None, f"not drawn: {err}"
    return str(path), None
