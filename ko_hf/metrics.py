"""Classification metrics for evaluation: accuracy and macro-F1, pure numpy, offline.

``evaluate.load("accuracy")`` downloads its metric script from the Hugging Face Hub and fails offline, so these are
computed here instead (they agree with ``sklearn.metrics.accuracy_score`` / ``f1_score(average="macro")``; the tests
check that). The condensation metrics of a layer (weight correlation, neuron similarity) live in
:mod:`ko_hf.collision`.

Macro-F1 and the classes it averages over
-----------------------------------------
By default (``num_labels=None``) macro-F1 is the unweighted mean of the per-class F1 over the classes that occur in
``labels`` or in ``predictions`` -- exactly ``sklearn.metrics.f1_score(labels, predictions, average="macro")``. A
class that appears in neither cannot be scored and is left out, so a small evaluation subset that misses a class is
not penalised for it. With ``num_labels=n`` every class ``0..n-1`` counts, and a class absent from both scores 0
(``f1_score(..., labels=range(n), average="macro", zero_division=0)``). A class that is predicted but never occurs
(or occurs but is never predicted) has F1 = 0 in both modes. :func:`compute_metrics` -- what ``KOTrainer`` uses --
takes the default.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["compute_classification_metrics", "compute_metrics"]


def _as_label_array(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        array = array.reshape(-1)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.equal(np.mod(array, 1), 0)):
            raise ValueError(f"{name} must be integer class ids, got values like {array[:3].tolist()}")
        array = array.astype(np.int64)
    return array.astype(np.int64, copy=False)


def compute_classification_metrics(predictions: Any, labels: Any, num_labels: int | None = None) -> dict[str, float]:
    """``{"accuracy", "macro_f1"}`` of predicted class ids against true class ids (see the module docstring).

    ``predictions`` and ``labels`` are 1-D integer sequences of the same length. ``num_labels``: average macro-F1
    over all classes ``0..num_labels-1`` instead of the classes present in labels ∪ predictions. Empty inputs
    give 0.0 for both.
    """
    preds = _as_label_array(predictions, "predictions")
    truth = _as_label_array(labels, "labels")
    if preds.shape != truth.shape:
        raise ValueError(f"predictions and labels differ in length: {preds.shape[0]} vs {truth.shape[0]}")
    if num_labels is not None:
        if num_labels < 1:
            raise ValueError(f"num_labels must be positive, got {num_labels}")
        out_of_range = np.setdiff1d(np.union1d(preds, truth), np.arange(num_labels))
        if out_of_range.size:
            raise ValueError(f"class ids {out_of_range.tolist()} out of range for num_labels={num_labels}")
    if truth.size == 0:
        return {"accuracy": 0.0, "macro_f1": 0.0}

    classes = np.arange(num_labels) if num_labels is not None else np.union1d(preds, truth)
    accuracy = float(np.mean(preds == truth))
    true_positive = np.array([np.sum((preds == c) & (truth == c)) for c in classes], dtype=np.float64)
    predicted = np.array([np.sum(preds == c) for c in classes], dtype=np.float64)
    actual = np.array([np.sum(truth == c) for c in classes], dtype=np.float64)
    # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (predicted + actual); 0 where a class is neither predicted nor present.
    denominator = predicted + actual
    f1 = np.divide(2 * true_positive, denominator, out=np.zeros_like(denominator), where=denominator > 0)
    return {"accuracy": accuracy, "macro_f1": float(np.mean(f1))}


def compute_metrics(eval_pred: Any) -> dict[str, float]:
    """``Trainer(compute_metrics=...)``: argmax of the logits against ``label_ids`` -> accuracy and macro-F1.

    Accepts a ``transformers.EvalPrediction`` or a ``(predictions, label_ids)`` pair; when the model returns
    several outputs, the first is taken as the logits.
    """
    if hasattr(eval_pred, "predictions"):
        logits, labels = eval_pred.predictions, eval_pred.label_ids
    else:
        logits, labels = eval_pred[0], eval_pred[1]
    if isinstance(logits, (tuple, list)):
        logits = logits[0]
    logits = np.asarray(logits)
    predictions = logits.argmax(axis=-1) if logits.ndim > 1 else logits
    return compute_classification_metrics(predictions, labels)
