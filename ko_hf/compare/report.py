"""The report of a comparison: finished run records -> :class:`Comparison` -> the summary table, ``comparison.md``,
``comparison.json`` and the condensation figure.

:func:`summarize` reduces the records (the ``ko_result.json`` contents) to

* per setting: mean ± sample standard deviation (n-1) of accuracy and macro-F1 on test (validation when the
  data has no test split);
* the paired difference to the baseline (AdamW: the first setting without collision) over the seeds both ran,
  with a Student-t confidence interval (95% by default);
* the head's weight correlation after training, on the target weights every run measures (with mixed targets,
  e.g. ``head`` against ``head+pooler``, the classifier alone: like is compared with like), and the median step
  time relative to the baseline's run of the same seed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers.utils import logging

from ..markdown import markdown_table
from ..card.plots import matplotlib_available, plot_condensation_comparison
from ..logged_metrics import layer_condensation, logged_metric
from ..run.folder import write_text_atomic
from .settings import CollisionSetting, describe_record
from .statistics import MeanStd, PairedDifference, finite, mean_std, paired_difference_ci

logger = logging.get_logger(__name__)

__all__ = ["METRICS", "Comparison", "SettingSummary", "plain", "render_markdown", "summarize", "summary_table",
           "write_comparison", "write_json"]

#: Metric names of :func:`ko_hf.metrics.compute_metrics`, looked up with the split's prefix.
METRICS = ("accuracy", "macro_f1")


def plain(value: Any) -> Any:
    """A JSON-safe copy (NaN/inf -> None, tuples -> lists, unknown objects -> str)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, float):
        return finite(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if hasattr(value, "item"):
        return plain(value.item())
    return str(value)


def write_json(path: Path, data: Any) -> None:
    """Write atomically, so an interrupted run never leaves a half-written result that looks finished."""
    write_text_atomic(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


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
    #: Seeds whose run diverged (a NaN or inf loss or weights): their metrics are what the diverged model scored.
    diverged_seeds: list[int] = field(default_factory=list)

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
            "diverged_seeds": self.diverged_seeds,
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
        return plain({
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

    def diverged(self) -> str | None:
        """``"hard:coef=0.9 (seeds 1, 2)"``: the settings with diverged runs, or ``None``."""
        parts = [f"{s.name} (seed{'s' if len(s.diverged_seeds) > 1 else ''} {', '.join(map(str, s.diverged_seeds))})"
                 for s in self.settings if s.diverged_seeds]
        return "; ".join(parts) or None


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
        plain_runs = [n for n in settings if any(r.get("collision") == "none" for r in by_setting[n].values())]
        baseline = plain_runs[0] if plain_runs else settings[0]
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
        description = next((describe_record(r) for r in by_setting[name].values()), name)
        metrics = {m: mean_std(v[m] for v in own.values() if v[m] is not None) for m in METRICS}
        differences = {}
        for m in METRICS:
            seeds = [s for s in own if s in base and own[s][m] is not None and base[s][m] is not None]
            differences[m] = paired_difference_ci([own[s][m] for s in seeds], [base[s][m] for s in seeds], confidence)
        ratios = [own[s]["median_step_time"] / base[s]["median_step_time"] for s in own
                  if s in base and own[s]["median_step_time"] and base[s]["median_step_time"]]
        correlation = mean_std(v["weight_correlation"] for v in own.values() if v["weight_correlation"] is not None)
        diverged = sorted(seed for seed, record in by_setting[name].items() if record.get("diverged"))
        rows.append(SettingSummary(name, description, sorted(own), metrics, differences, correlation,
                                   mean_std(ratios), is_baseline=name == baseline, diverged_seeds=diverged))
        for seed, v in own.items():
            runs.append({"setting": name, "seed": seed, **v, "diverged": seed in diverged})
    return Comparison(baseline, split, confidence, rows, runs, correlation_layers=layers)


def _layer_correlations(record: Mapping[str, Any]) -> dict[str, float]:
    """Weight correlation per target weight after training: measured on the final model (``head_layers``), else
    (records written before it existed) the last logged ``ko/<name>/weight_correlation``."""
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
        value = logged_metric(record.get("final_ko_metrics") or {}, "weight_correlation")
    return value


# ---------------------------------------------------------------------------------------------- tables


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


#: The summary's text columns (setting, collision, seeds); the others are numbers, aligned right in Markdown.
_TEXT_COLUMNS = 3


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


def _runs_table(runs: Sequence[Mapping[str, Any]]) -> str:
    header = ["setting", "seed", "accuracy (%)", "macro-F1 (%)", "head weight corr.", "median step time (s)"]
    rows = [[run["setting"], f"{run['seed']} (diverged)" if run.get("diverged") else run["seed"], _opt(run.get("accuracy"), 100, 2), _opt(run.get("macro_f1"), 100, 2),
             _opt(run.get("weight_correlation"), 1, 4), _opt(run.get("median_step_time"), 1, 4)] for run in runs]
    return markdown_table(header, rows, align=["left"] + ["right"] * (len(header) - 1))


def _opt(value: float | None, scale: float, digits: int) -> str:
    return "—" if value is None else f"{scale * value:.{digits}f}"


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
    lines.append(markdown_table(headers, rows, align=["left"] * _TEXT_COLUMNS
                                + ["right"] * (len(headers) - _TEXT_COLUMNS)))
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
    if diverged := comparison.diverged():
        lines += [f"**Diverged runs** (a NaN or inf loss or weights; their metrics, averaged above, are what the "
                  f"diverged model scored): {diverged}", ""]
    if comparison.figure:
        lines += [f"![condensation of the head]({Path(comparison.figure).name})", ""]
    elif comparison.figure_note:
        lines += [f"Figure: {comparison.figure_note}", ""]
    lines += ["## Runs", "", _runs_table(comparison.runs)]
    return "\n".join(lines) + "\n"


def write_comparison(comparison: Comparison, output_dir: str | os.PathLike) -> tuple[Path, Path]:
    """``comparison.md`` and ``comparison.json`` in ``output_dir``."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "comparison.md", out / "comparison.json"
    md.write_text(render_markdown(comparison), encoding="utf-8")
    write_json(js, comparison.to_dict())
    return md, js


# ---------------------------------------------------------------------------------------------- figure


def _plot_layer(records: Sequence[Mapping[str, Any]]) -> str | None:
    """None when every run has the same targets (their aggregate curves compare); else a target weight they share."""
    targets = {frozenset(_layer_correlations(r)) for r in records} - {frozenset()}
    if len(targets) <= 1:
        return None
    common = _common_layers(records)
    return common[0] if common else None


def plot_comparison(records: Sequence[Mapping[str, Any]], settings: Sequence[CollisionSetting],
                    seeds: Sequence[int], root: Path) -> tuple[str | None, str | None]:
    """The condensation figure of the first seed every setting finished; (None, why) when it cannot be drawn."""
    by_key = {(r["setting"], int(r["seed"])): r for r in records}
    names = [s.name for s in settings]
    seed = next((s for s in seeds if all((n, s) in by_key for n in names)), None)
    if seed is None:
        return None, "not drawn: no seed has finished runs of every setting yet"
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
