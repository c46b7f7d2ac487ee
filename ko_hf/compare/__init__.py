"""Compare collision settings honestly: the same model and data, several settings, several seeds, intervals.

KO's effects on text classification are small next to seed noise (paper Table 3 reports single runs; a first
measurement here moved test accuracy by less than the spread between two seeds). :func:`run_comparison` trains
every (setting, seed) pair and reports mean ± sample standard deviation per setting, the paired difference to the
baseline (AdamW) with a Student-t confidence interval, the head's weight correlation after training and the step
time relative to the baseline's.

By concern:

* :mod:`~ko_hf.compare.statistics`: mean ± sd, paired differences and their Student-t interval (scipy's quantile);
* :mod:`~ko_hf.compare.settings`: the setting mini-language ``TYPE[:KEY=VALUE...]`` (``hard:coef=0.8:lambda=1``)
  and the settings a run records, both derived from :mod:`ko_hf.settings`;
* :mod:`~ko_hf.compare.report`: run records -> :class:`Comparison` -> summary table, Markdown, JSON, figure;
* :mod:`~ko_hf.compare.runner`: running, resuming and collecting the runs;
* :mod:`~ko_hf.compare.identity`: whether a finished run's model is the one asked for (the same local model at
  another path is).

Every public name loads on first use (``from ko_hf.compare import parse_setting`` imports neither torch nor
transformers; ``run_comparison`` imports both), so the CLI can build ``compare --help`` from the settings module.
"""

from .._lazy import lazy_exports

_LAZY = {
    **{name: "statistics" for name in (
        "MeanStd", "PairedDifference", "mean_std", "paired_difference_ci", "student_t_cdf", "student_t_quantile",
    )},
    **{name: "settings" for name in (
        "COLLISION_ALIASES", "COLLISION_ARGS", "DEFAULT_SEEDS", "DEFAULT_SETTINGS", "SETTING_FORMS", "SETTING_KEYS",
        "CollisionSetting", "ComparisonError", "parse_seeds", "parse_setting", "parse_settings",
    )},
    **{name: "report" for name in (
        "METRICS", "Comparison", "SettingSummary", "render_markdown", "summarize", "summary_table",
        "write_comparison",
        "_pct", "_pct_diff", "_plain_stat", "_plot_layer",  # used by benchmarks/study and the tests
    )},
    **{name: "runner" for name in (
        "RESULT_FILE", "collect_records", "finish_comparison", "run_comparison", "run_config",
    )},
}

#: Computed from :mod:`ko_hf.settings` each time they are read (not cached: the table may grow).
_COMPUTED = {"COLLISION_ALIASES", "COLLISION_ARGS", "SETTING_FORMS", "SETTING_KEYS"}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, _COMPUTED)


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
    "finish_comparison",
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
