"""ko_hf.metrics against sklearn.metrics on random inputs and edge cases."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score
from transformers import EvalPrediction

from ko_hf.metrics import compute_classification_metrics, compute_metrics


def sklearn_metrics(preds, labels, num_labels=None):
    kwargs = {"labels": list(range(num_labels)), "zero_division": 0} if num_labels else {"zero_division": 0}
    return {"accuracy": accuracy_score(labels, preds), "macro_f1": f1_score(labels, preds, average="macro", **kwargs)}


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("use_num_labels", [False, True])
def test_matches_sklearn_on_random_inputs(seed, use_num_labels):
    rng = np.random.default_rng(seed)
    num_labels = int(rng.integers(2, 9))
    n = int(rng.integers(1, 60))
    labels = rng.integers(0, num_labels, n)
    # predictions that are partly right, and may miss or invent classes
    preds = np.where(rng.random(n) < 0.6, labels, rng.integers(0, num_labels, n))
    k = num_labels if use_num_labels else None
    ours = compute_classification_metrics(preds, labels, num_labels=k)
    expected = sklearn_metrics(preds, labels, k)
    assert ours == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("preds, labels, num_labels", [
    ([0, 1, 2], [0, 1, 2], None),          # perfect
    ([1, 1, 1], [0, 0, 0], None),          # all wrong; predicted class never occurs
    ([0, 0, 0], [0, 0, 0], None),          # one class
    ([0, 0, 0], [0, 0, 0], 3),             # absent classes count as 0 with num_labels
    ([2, 2, 0, 0], [0, 2, 0, 2], 4),       # class 1 and 3 absent from both
    ([3], [3], None),
    ([0, 1], [1, 0], 2),
])
def test_edge_cases_match_sklearn(preds, labels, num_labels):
    assert compute_classification_metrics(preds, labels, num_labels) == pytest.approx(
        sklearn_metrics(preds, labels, num_labels), abs=1e-12)


def test_choice_of_classes_is_documented_behaviour():
    # class 2 is in neither labels nor predictions: left out by default, scored 0 with num_labels=3
    assert compute_classification_metrics([0, 1], [0, 1])["macro_f1"] == 1.0
    assert compute_classification_metrics([0, 1], [0, 1], num_labels=3)["macro_f1"] == pytest.approx(2 / 3)


def test_empty_and_bad_inputs():
    assert compute_classification_metrics([], []) == {"accuracy": 0.0, "macro_f1": 0.0}
    with pytest.raises(ValueError, match="differ in length"):
        compute_classification_metrics([0, 1], [0])
    with pytest.raises(ValueError, match="out of range"):
        compute_classification_metrics([0, 5], [0, 1], num_labels=3)
    with pytest.raises(ValueError, match="integer class ids"):
        compute_classification_metrics([0.5, 1.0], [0, 1])
    assert compute_classification_metrics(np.array([0.0, 1.0]), [0, 1])["accuracy"] == 1.0


def test_compute_metrics_takes_logits():
    logits = np.array([[2.0, 0.1, 0.0], [0.0, 3.0, 0.2], [0.3, 0.2, 0.1], [0.0, 0.0, 1.0]])
    labels = np.array([0, 1, 2, 2])
    expected = sklearn_metrics([0, 1, 0, 2], labels)
    assert compute_metrics(EvalPrediction(predictions=logits, label_ids=labels)) == pytest.approx(expected)
    assert compute_metrics(((logits, np.zeros(4)), labels)) == pytest.approx(expected)  # several model outputs
    result = compute_metrics((logits, labels))
    assert set(result) == {"accuracy", "macro_f1"} and all(isinstance(v, float) for v in result.values())
